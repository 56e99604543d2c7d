// Screenshots of the dashboard's main views for the README: `npx tsx dashboards/screenshots.ts`.
// Starts the real stack on a temp dir (as the tests do), seeds a demo 华容县 with 60 days of history
// and four campaigns (running, final, not started, cancelled),
// logs in as its official in headless Chromium and writes PNGs to docs/screenshots/.
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { startStack } from '../test/stack.ts'
import { launchChromium, loginThroughPage, watchErrors } from './browser.ts'
import { COUNTY_OFFICIAL, PASSWORD, seed, seedCampaigns, TOWN_A } from './seed.ts'

const out = fileURLToPath(new URL('../docs/screenshots/', import.meta.url))
mkdirSync(out, { recursive: true })

const days = 60
const s = await startStack({ EVENT_MAX_AGE_HOURS: String(24 * (days + 1)) })
const browser = await launchChromium()
try {
  await seed(s, { perTown: 6, days, shares: (i) => 3 + ((i * 11) % 23) })
  const campaigns = await seedCampaigns(s)
  const shot = async (page: Page, name: string) => {
    await page.screenshot({ path: `${out}${name}.png`, fullPage: true })
    console.log(`wrote docs/screenshots/${name}.png`)
  }
  const charts = (page: Page) => page.waitForSelector('#chart-certified svg polyline', { state: 'attached', timeout: 60_000 })

  const laptop = await (await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: 'zh-CN' })).newPage()
  const errors = watchErrors(laptop)
  await laptop.goto(`${s.base}/`)
  await laptop.waitForSelector('#login-form')
  await shot(laptop, 'login')
  await loginThroughPage(laptop, s.base, COUNTY_OFFICIAL.phone, PASSWORD)
  await charts(laptop)
  await laptop.waitForSelector('#live[data-state="live"]')
  await shot(laptop, 'overview')

  await laptop.click(`tr[data-region="${TOWN_A}"] a.drill`)
  await laptop.waitForFunction(() => document.querySelector('#region-name')?.textContent === '插旗镇')
  await charts(laptop)
  await shot(laptop, 'drill-down')

  await laptop.evaluate(() => (location.hash = '#/leaders?period=month'))
  await laptop.waitForSelector('table.board tbody tr')
  await laptop.fill('#find input[name=user]', 'hr7')
  await laptop.click('#find button')
  await laptop.waitForSelector('table.board tr.me')
  await shot(laptop, 'leaderboard')

  await laptop.click('nav a[data-nav="tasks"]')
  await laptop.waitForSelector('table.tasks tbody tr')
  await shot(laptop, 'tasks')

  await laptop.click('nav a[data-nav="campaigns"]')
  await laptop.waitForSelector(`table.campaigns tr[data-campaign="${campaigns.running.id}"]`)
  await shot(laptop, 'campaigns')

  await laptop.click(`tr[data-campaign="${campaigns.running.id}"] a.open`)
  await laptop.waitForSelector('table.standings tbody tr.ineligible')
  await laptop.waitForSelector('#live[data-state="live"]')
  await shot(laptop, 'campaign-standings')

  const phone = await (await browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN' })).newPage()
  const phoneErrors = watchErrors(phone)
  await loginThroughPage(phone, s.base, COUNTY_OFFICIAL.phone, PASSWORD)
  await charts(phone)
  await shot(phone, 'phone-overview')
  await phone.evaluate(() => (location.hash = '#/leaders'))
  await phone.waitForSelector('table.board tbody tr')
  await shot(phone, 'phone-leaderboard')
  await phone.evaluate((id) => (location.hash = `#/campaigns/${id}`), campaigns.running.id)
  await phone.waitForSelector('table.standings tbody tr.ineligible')
  await shot(phone, 'phone-campaign')

  if (errors.length || phoneErrors.length) throw new Error(`console errors: ${[...errors, ...phoneErrors].join('\n')}`)
} finally {
  await browser.close()
  await s.stop()
}
