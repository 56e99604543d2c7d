import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { share, startStack, type Stack } from '../test/stack.ts'
import { firstLoadBytes, launchChromium, loginThroughPage, watchErrors } from './browser.ts'
import { COUNTY, COUNTY_OFFICIAL, NEIGHBOUR_OFFICIAL, PASSWORD, seed, TOWN_A, TOWN_B, type Seeded } from './seed.ts'

/**
 * The dashboard end to end, in headless Chromium against the real stack (Redis, NATS JetStream,
 * embedded ClickHouse): an official of 华容县 logs in through the page, sees her county, watches a
 * KPI card and a leaderboard row change as events are posted (no reload, no polling: server-sent
 * events), drills down to a town and back, reads the task breakdown; an official of the
 * neighbouring county cannot see 华容县 by editing the URL; the page works at phone width. Any
 * console error or page error fails the test.
 */
let s: Stack
let data: Seeded
let browser: Browser

beforeAll(async () => {
  ;[s, browser] = await Promise.all([startStack(), launchChromium()])
  data = await seed(s, { perTown: 2 })
}, 120_000)
afterAll(async () => {
  await browser?.close()
  await s?.stop()
})

const text = (page: Page, sel: string) => page.locator(sel).first().innerText()
const int = (s: string) => Number(s.replace(/[^\d]/g, ''))
/** Waits until the element's text equals `want` (Playwright's own waiting; no fixed sleeps). */
const waitText = (page: Page, sel: string, want: string, timeout = 10_000) =>
  page.waitForFunction(([sel, want]) => document.querySelector(sel)?.textContent?.trim() === want, [sel, want] as const, { timeout })
const kpis = async (region: string) => (await s.call('GET', `/v1/kpis?region=${region}`)).json

describe('the dashboard of a county official (1366×768)', () => {
  let ctx: BrowserContext
  let page: Page
  let errors: string[]
  beforeAll(async () => {
    ctx = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: 'zh-CN' })
    page = await ctx.newPage()
    errors = watchErrors(page)
  })
  afterAll(async () => {
    await ctx?.close()
  })

  it('logs in through the page and shows her county: KPI cards, trends, towns ranked', async () => {
    await loginThroughPage(page, s.base, COUNTY_OFFICIAL.phone, PASSWORD)
    const bundle = await firstLoadBytes(page)
    const want = await kpis(COUNTY)
    expect(await text(page, '#region-name')).toBe('华容县')
    expect(int(await text(page, '[data-kpi="certified"] .value'))).toBe(want.certified)
    expect(int(await text(page, '[data-kpi="shares-day"] .value'))).toBe(want.shares)
    expect(await text(page, '[data-kpi="ratio"] .value')).toBe(`${(want.registration_ratio * 100).toFixed(4)}%`)
    // Every town of the county is in the table, the busiest first.
    await page.waitForSelector('table.children tbody tr')
    expect(await page.locator('table.children tbody tr').count()).toBe(want.children.length)
    const busiest = [...want.children].sort((a: any, b: any) => b.shares - a.shares || a.region.localeCompare(b.region))[0]
    expect(await page.locator('table.children tbody tr').first().getAttribute('data-region')).toBe(busiest.region)
    // Trend charts drawn from /v1/kpis/trend.
    await page.waitForSelector('#chart-days svg polyline')
    await page.waitForSelector('#chart-months svg rect', { state: 'attached' })
    await page.waitForSelector('#chart-certified svg polyline', { state: 'attached' })

    // First render with a session (reload): navigation start → KPI cards filled.
    await page.reload()
    await page.waitForSelector('[data-kpi="shares-day"] .value')
    const timing = await page.evaluate(() => ({
      kpis: performance.getEntriesByName('kpis-rendered')[0]?.startTime ?? null,
      fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null,
    }))
    console.log(
      `[dashboard] first load: ${bundle.transferred} bytes transferred (${bundle.files.length} files: ${bundle.files.join(', ')}; ` +
        `${bundle.encoded} bytes of bodies on the wire, ${bundle.decoded} bytes uncompressed); ` +
        `first render (reload, logged in): first contentful paint ${Math.round(timing.fcp ?? -1)} ms, KPI cards filled ${Math.round(timing.kpis ?? -1)} ms`,
    )
    expect(bundle.files.some((f) => f === '/ui/app.js')).toBe(true)
    expect(errors).toEqual([])
  })

  it('updates a KPI card live, without reloading, when events are counted', async () => {
    await page.waitForSelector('#live[data-state="live"]')
    await page.evaluate(() => ((window as unknown as { __sameDocument: number }).__sameDocument = 1))
    const before = int(await text(page, '[data-kpi="shares-day"] .value'))
    const townBefore = int(await text(page, `tr[data-region="${TOWN_A}"] td:nth-child(5)`))
    const t0 = Date.now()
    const r = await s.postEvents(data.key, [share('hr1', Date.now() - 3000), share('hr1', Date.now() - 2000), share('hr1', Date.now() - 1000)])
    expect(r.status).toBe(202)
    await waitText(page, '[data-kpi="shares-day"] .value', (before + 3).toLocaleString('zh-CN'))
    console.log(`[dashboard] 202 → KPI card changed in the browser in ${Date.now() - t0} ms`)
    await waitText(page, `tr[data-region="${TOWN_A}"] td:nth-child(5)`, String(townBefore + 3))
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: number }).__sameDocument)).toBe(1)
    expect(errors).toEqual([])
  })

  it('shows the leaderboard, moves a row live, finds a person with “around me” and pages with the cursor', async () => {
    await page.click('nav a[data-nav="leaders"]')
    await page.waitForSelector('table.board tbody tr')
    await page.waitForSelector('#live[data-state="live"]')
    const board = (await s.call('GET', `/v1/leaderboards?metric=shares&region=${COUNTY}&period=day`)).json
    expect(await page.locator('table.board tbody tr').count()).toBe(board.entries.length)
    expect(await page.locator('table.board tbody tr').first().getAttribute('data-user')).toBe(board.entries[0].user_id)
    // The last of the board overtakes everyone: its row climbs to rank 1 by itself.
    const last = board.entries[board.entries.length - 1]
    const lead = board.entries[0].score
    const events = Array.from({ length: lead - last.score + 2 }, (_, i) => share(last.user_id, Date.now() - 5000 + i))
    await page.evaluate(() => ((window as unknown as { __sameDocument: number }).__sameDocument = 2))
    expect((await s.postEvents(data.key, events)).status).toBe(202)
    await waitText(page, 'table.board tbody tr:first-child td.score', String(lead + 2))
    expect(await page.locator('table.board tbody tr').first().getAttribute('data-user')).toBe(last.user_id)
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: number }).__sameDocument)).toBe(2)

    // Around me: the person, highlighted, with neighbours.
    const someone = board.entries[2].user_id
    await page.fill('#find input[name=user]', someone)
    await page.click('#find button')
    await page.waitForSelector(`table.board tr.me[data-user="${someone}"]`)
    expect(await text(page, '#board-meta')).toContain('名')
    await page.click('#back-top')
    await page.waitForSelector('table.board tbody tr')

    // Keyset paging (`after` = the previous page's `next`), here 4 a page over the county's 6.
    await page.evaluate(() => (location.hash = '#/leaders?limit=4'))
    await page.waitForFunction(() => document.querySelectorAll('table.board tbody tr').length === 4)
    await page.click('#next')
    await waitText(page, 'table.board tbody tr:first-child td.rank', '5')
    expect(await page.locator('table.board tbody tr').count()).toBe(board.total - 4)
    expect(await page.locator('#next').isDisabled()).toBe(true)
    await page.click('#prev')
    await waitText(page, 'table.board tbody tr:first-child td.rank', '1')
    // Periods and a child region.
    await page.click('#periods a[data-period="month"]')
    await page.waitForFunction(() => location.hash.includes('period=month'))
    await page.waitForSelector('table.board tbody tr')
    await page.selectOption('#child', TOWN_B)
    await page.waitForFunction((t) => location.hash.startsWith(`#/leaders/${t}`), TOWN_B)
    await page.waitForSelector('table.board tbody tr')
    const townBoard = (await s.call('GET', `/v1/leaderboards?metric=shares&region=${TOWN_B}&period=month`)).json
    expect(await page.locator('table.board tbody tr').count()).toBe(townBoard.entries.length)
    expect(errors).toEqual([])
  })

  it('drills down to a town and back up by the breadcrumb', async () => {
    await page.click('nav a[data-nav="overview"]')
    await page.waitForSelector(`tr[data-region="${TOWN_A}"] a.drill`)
    await page.click(`tr[data-region="${TOWN_A}"] a.drill`)
    await waitText(page, '#region-name', '插旗镇')
    const town = await kpis(TOWN_A)
    await waitText(page, '[data-kpi="shares-day"] .value', town.shares.toLocaleString('zh-CN'))
    expect(int(await text(page, '[data-kpi="certified"] .value'))).toBe(town.certified)
    expect(await page.locator('table.children').count()).toBe(0)
    await page.click(`.crumbs a[data-crumb="${COUNTY}"]`)
    await waitText(page, '#region-name', '华容县')
    await page.waitForSelector(`tr[data-region="${TOWN_A}"]`)
    expect(errors).toEqual([])
  })

  it('shows the task breakdown with progress bars and the units behind schedule', async () => {
    await page.click('nav a[data-nav="tasks"]')
    await page.waitForSelector('table.tasks tbody tr')
    expect(await page.locator('table.tasks tbody tr').count()).toBe(3)
    expect(await page.locator(`tr.behind[data-unit="${TOWN_A}"]`).count()).toBe(1)
    expect(await page.locator(`tr[data-unit="${TOWN_B}"]:not(.behind)`).count()).toBe(1)
    await page.check('#behind')
    await page.waitForFunction(() => document.querySelectorAll('table.tasks tbody tr').length === 1)
    expect(await page.locator(`tr.behind[data-unit="${TOWN_A}"] .badge.late`).innerText()).toBe('落后')
    expect(errors).toEqual([])
  })
})

describe('an official of another county', () => {
  it('cannot see 华容县’s numbers by editing the URL: the page shows the 403 message and nothing else', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 } })
    const page = await ctx.newPage()
    const errors = watchErrors(page)
    await loginThroughPage(page, s.base, NEIGHBOUR_OFFICIAL.phone, PASSWORD)
    expect(await text(page, '#region-name')).toBe('岳阳县')
    expect(errors).toEqual([])
    for (const hash of [`#/overview/${COUNTY}`, `#/overview/${TOWN_A}`, '#/overview/4306', `#/leaders/${COUNTY}?period=year`]) {
      await page.evaluate((h) => (location.hash = h), hash)
      await page.waitForSelector('[data-error="403"]')
      expect(await page.locator('[data-kpi]').count(), hash).toBe(0)
      expect(await page.locator('table').count(), hash).toBe(0)
      const body = await page.locator('#view').innerText()
      expect(body, hash).toContain('无权查看')
      for (const secret of ['华容', '插旗', '三封寺']) expect(body, hash).not.toContain(secret)
    }
    // The only console messages are the browser's own notes of the API's 403 answers.
    expect(errors.length).toBeGreaterThan(0)
    for (const e of errors) expect(e).toMatch(/status of 403/)
    await ctx.close()
  })
})

describe('at phone width (375 px)', () => {
  it('renders every view without console errors and without sideways scrolling of the page', async () => {
    const ctx = await browser.newContext({ viewport: { width: 375, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
    const page = await ctx.newPage()
    const errors = watchErrors(page)
    await loginThroughPage(page, s.base, COUNTY_OFFICIAL.phone, PASSWORD)
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    await page.waitForSelector('#chart-days svg')
    expect(await overflow()).toBeLessThanOrEqual(0)
    for (const [hash, sel] of [
      ['#/leaders', 'table.board tbody tr'],
      ['#/tasks', 'table.tasks tbody tr'],
      [`#/overview/${TOWN_A}`, '[data-kpi="shares-day"] .value'],
    ] as const) {
      await page.evaluate((h) => (location.hash = h), hash)
      await page.waitForSelector(sel)
      expect(await overflow(), hash).toBeLessThanOrEqual(0)
    }
    expect(errors).toEqual([])
    await ctx.close()
  })
})
