import { chromium, type Browser, type Page } from 'playwright-core'

/**
 * Headless Chromium for the dashboard's end-to-end test and screenshots: Debian's `chromium`
 * (`scripts/ensure.mjs --browser` installs it) driven by playwright-core. Playwright gives every
 * launch a fresh temporary profile (its own `--user-data-dir`, removed on close).
 */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--lang=zh-CN',
    ],
  })
}

/** Collects console errors and uncaught page errors; a test fails on any. */
export function watchErrors(page: Page): string[] {
  const errors: string[] = []
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`)
  })
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`))
  return errors
}

/** Logs in through the page's own form. */
export async function loginThroughPage(page: Page, base: string, phone: string, password: string) {
  await page.goto(`${base}/`)
  await page.fill('input[name=phone]', phone)
  await page.fill('input[name=password]', password)
  await page.click('#login-form button[type=submit]')
  await page.waitForSelector('[data-kpi="shares-day"] .value')
}

/** Bytes of the page's first load (HTML + its static files), from the Resource Timing entries. */
export async function firstLoadBytes(page: Page) {
  return page.evaluate(() => {
    const all = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')] as PerformanceResourceTiming[]
    const own = all.filter((e) => e.entryType === 'navigation' || new URL(e.name).pathname.startsWith('/ui/'))
    return {
      files: own.map((e) => new URL(e.name).pathname),
      transferred: own.reduce((a, e) => a + e.transferSize, 0),
      encoded: own.reduce((a, e) => a + e.encodedBodySize, 0),
      decoded: own.reduce((a, e) => a + e.decodedBodySize, 0),
    }
  })
}
