import { readFile } from 'node:fs/promises'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { share, startStack, type Stack } from '../test/stack.ts'
import { launchChromium, loginThroughPage, watchErrors } from './browser.ts'
import { CITY, CITY_OFFICIAL, createCampaign, PASSWORD, seed, type Seeded } from './seed.ts'

/**
 * The campaigns view (issue 6, point 5) end to end, in headless Chromium against the real stack:
 * an official of 岳阳市 opens a city campaign whose window started two days ago and ended an hour
 * ago (its grace keeps it running), reads the standings with their prizes and the row of someone
 * below the basic task, watches a row climb as events are posted (no reload: the live stream),
 * finds a person, pages with the cursor, downloads the CSV (BOM, masked phones) and the XLSX, settles it through
 * the confirm step and sees it final; creates a campaign through the form, with the API's 400
 * shown first; and the view at phone width. Any console error or page error fails the test.
 */
let s: Stack
let data: Seeded
let browser: Browser
let camp: any

const HOUR = 3_600_000
const inWindow = (user: string, n: number, at: number) => Array.from({ length: n }, (_, i) => share(user, at + i * 1000))

beforeAll(async () => {
  ;[s, browser] = await Promise.all([startStack(), launchChromium()])
  data = await seed(s, { perTown: 2 })
  const now = Date.now()
  camp = await createCampaign(s, {
    name: '岳阳市科普转发竞赛',
    region_code: CITY,
    starts_at: now - 48 * HOUR,
    ends_at: now - HOUR,
    grace_seconds: 24 * 3600,
    metric: 'shares',
    min_score: 3,
    top_n: 3,
    tiers: [
      { from_rank: 1, to_rank: 1, prize: '一等奖' },
      { from_rank: 2, to_rank: 3, prize: '二等奖' },
    ],
  })
  // Inside the window, sent after the campaign exists (counted live): hr2 stays below the basic task.
  const events = [...inWindow('hr1', 6, now - 5 * HOUR), ...inWindow('yy1', 5, now - 5 * HOUR), ...inWindow('hr3', 4, now - 4 * HOUR), ...inWindow('hr5', 3, now - 4 * HOUR), ...inWindow('hr2', 1, now - 4 * HOUR)]
  const before = await s.factCount()
  const r = await s.postEvents(data.key, events)
  if (r.status !== 202 || r.json.rejected.length) throw new Error(`events: ${r.status} ${JSON.stringify(r.json)}`)
  await s.waitForFacts(before + events.length)
}, 120_000)
afterAll(async () => {
  await browser?.close()
  await s?.stop()
})

const standings = async () => (await s.call('GET', `/v1/campaigns/${camp.id}/standings?limit=100`)).json
const text = (page: Page, sel: string) => page.locator(sel).first().innerText()
const waitText = (page: Page, sel: string, want: string, timeout = 10_000) =>
  page.waitForFunction(([sel, want]) => document.querySelector(sel)?.textContent?.trim() === want, [sel, want] as const, { timeout })
const rowUsers = (page: Page) => page.locator('table.standings tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-user')))

describe('the campaigns view of a city official (1366×768)', () => {
  let ctx: BrowserContext
  let page: Page
  let errors: string[]
  beforeAll(async () => {
    ctx = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: 'zh-CN', acceptDownloads: true })
    page = await ctx.newPage()
    errors = watchErrors(page)
  })
  afterAll(async () => {
    await ctx?.close()
  })

  it('lists the campaigns of her scope and opens the standings with prize tiers and the rows below the basic task', async () => {
    expect(camp.status).toBe('running')
    const want = await standings()
    expect(want.entries.map((e: any) => [e.user_id, e.score, e.eligible, e.prize])).toEqual([
      ['hr1', 6, true, '一等奖'],
      ['yy1', 5, true, '二等奖'],
      ['hr3', 4, true, '二等奖'],
      ['hr5', 3, true, null],
      ['hr2', 1, false, null],
    ])
    await loginThroughPage(page, s.base, CITY_OFFICIAL.phone, PASSWORD)
    await page.click('nav a[data-nav="campaigns"]')
    const row = page.locator(`table.campaigns tr[data-campaign="${camp.id}"]`)
    await row.waitFor()
    expect(await row.locator('.badge').innerText()).toBe('进行中')
    expect(await row.innerText()).toContain('传播量')
    expect(await row.innerText()).toContain(`${camp.starts_at.slice(0, 16).replace('T', ' ')} 至 ${camp.ends_at.slice(0, 16).replace('T', ' ')}`)
    expect(await row.innerText()).toContain('岳阳市')

    await row.locator('a.open').click()
    await page.waitForSelector('table.standings tbody tr')
    expect(await text(page, '#campaign-name')).toBe('岳阳市科普转发竞赛')
    expect(await text(page, '#campaign-status .badge')).toBe('进行中')
    expect(await rowUsers(page)).toEqual(want.entries.map((e: any) => e.user_id))
    expect(await text(page, 'tr[data-user="hr1"] td.prize')).toBe('一等奖')
    expect(await text(page, 'tr[data-user="yy1"] td.prize')).toBe('二等奖')
    expect(await text(page, 'tr[data-user="hr5"] td.prize')).toBe('—')
    expect(await page.locator('tr.ineligible[data-user="hr2"]').count()).toBe(1)
    expect(await text(page, 'tr[data-user="hr2"] td.prize')).toBe('未完成基础任务')
    expect(await text(page, 'tr[data-user="hr1"] td.score')).toBe('6')
    expect(await text(page, '#campaign-facts')).toContain('第 2–3 名：二等奖')
    // Her scope covers it and its window has ended: she may settle it.
    expect(await page.locator('#settle').isVisible()).toBe(true)
    expect(errors).toEqual([])
  })

  it('moves a standings row live, without reloading, when events inside the window are counted', async () => {
    await page.waitForSelector('#live[data-state="live"]')
    await page.evaluate(() => ((window as unknown as { __sameDocument: number }).__sameDocument = 1))
    const t0 = Date.now()
    // hr5 (3, fourth, no prize) gets 4 more: 7, first, 一等奖.
    expect((await s.postEvents(data.key, inWindow('hr5', 4, Date.now() - 3 * HOUR))).status).toBe(202)
    await waitText(page, 'table.standings tbody tr:first-child td.score', '7')
    console.log(`[campaigns] 202 → standings row moved in the browser in ${Date.now() - t0} ms`)
    expect(await page.locator('table.standings tbody tr').first().getAttribute('data-user')).toBe('hr5')
    expect(await text(page, 'tr[data-user="hr5"] td.prize')).toBe('一等奖')
    expect(await text(page, 'tr[data-user="hr1"] td.prize')).toBe('二等奖')
    expect(await text(page, 'tr[data-user="hr3"] td.prize')).toBe('—')
    expect(await rowUsers(page)).toEqual((await standings()).entries.map((e: any) => e.user_id))
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: number }).__sameDocument)).toBe(1)
    expect(errors).toEqual([])
  })

  it('finds a person with “around me” and pages the standings with the cursor', async () => {
    await page.fill('#find input[name=user]', 'hr3')
    await page.click('#find button')
    await page.waitForSelector('table.standings tr.me[data-user="hr3"]')
    expect(await text(page, '#standings-meta')).toContain('第 4 名')
    await page.click('#back-top')
    await page.waitForFunction(() => !document.querySelector('table.standings tr.me') && document.querySelectorAll('table.standings tbody tr').length === 5)

    await page.evaluate((id) => (location.hash = `#/campaigns/${id}?limit=2`), camp.id)
    await page.waitForFunction(() => document.querySelectorAll('table.standings tbody tr').length === 2)
    await page.click('#next')
    await waitText(page, 'table.standings tbody tr:first-child td.rank', '3')
    await page.click('#next')
    await waitText(page, 'table.standings tbody tr:first-child td.rank', '5')
    expect(await page.locator('table.standings tbody tr').count()).toBe(1)
    expect(await page.locator('#next').isDisabled()).toBe(true)
    await page.click('#prev')
    await waitText(page, 'table.standings tbody tr:first-child td.rank', '3')
    expect(errors).toEqual([])
  })

  it('downloads the CSV (token in the header, not the URL): BOM, masked phones, no full phone number; and the XLSX', async () => {
    const requests: string[] = []
    page.on('request', (r) => requests.push(r.url()))
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#csv')])
    expect(dl.suggestedFilename()).toMatch(/\.csv$/)
    const bytes = await readFile((await dl.path())!)
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf])
    const csv = bytes.toString('utf8').replace(/^\uFEFF/, '')
    const lines = csv.trim().split('\r\n')
    expect(lines[0]).toBe('名次,姓名,单位,地区,手机号,转发量,达成时间,完成基础任务,奖项')
    expect(lines.length).toBe(1 + 5)
    expect(csv).toMatch(/1\d{2}\*{4}\d{4}/)
    expect(lines[1]).toContain('138****0005') // hr5, first
    expect(csv).not.toMatch(/1\d{10}/)
    const csvRequest = requests.find((u) => u.includes('/standings.csv'))
    expect(csvRequest).toBeDefined()
    expect(csvRequest).not.toMatch(/token|bearer/i)

    // The same standings as an Excel workbook (a ZIP: "PK\x03\x04").
    const [xl] = await Promise.all([page.waitForEvent('download'), page.click('#xlsx')])
    expect(xl.suggestedFilename()).toMatch(/\.xlsx$/)
    const book = await readFile((await xl.path())!)
    expect([...book.subarray(0, 4)]).toEqual([0x50, 0x4b, 0x03, 0x04])
    expect(errors).toEqual([])
  })

  it('settles through the confirm step and shows 已结束, with the standings frozen', async () => {
    const before = (await standings()).entries.map((e: any) => [e.user_id, e.score, e.prize])
    await page.click('#settle')
    await page.waitForSelector('#settle-confirm')
    expect(await text(page, '#settle-box')).toContain('确认立即结算')
    // Nothing happens before the confirmation.
    expect((await s.call('GET', `/v1/campaigns/${camp.id}`)).json.status).toBe('running')
    await page.click('#settle-confirm')
    await waitText(page, '#campaign-status .badge', '已结束', 30_000)
    expect(await text(page, '#settle-result')).toContain('已结束')
    expect(await page.locator('#settle').isHidden()).toBe(true)
    await waitText(page, '#standings-title', '最终排名（已冻结）')
    const api = await s.call('GET', `/v1/campaigns/${camp.id}`)
    expect(api.json.status).toBe('final')
    expect(await text(page, '#campaign-facts')).toContain(api.json.settled_at.slice(0, 16).replace('T', ' '))
    const frozen = await standings()
    expect(frozen.status).toBe('final')
    expect(frozen.entries.map((e: any) => [e.user_id, e.score, e.prize])).toEqual(before)
    await page.waitForFunction(() => document.querySelector('#standings-meta')?.textContent?.includes('已冻结'))
    expect(await page.locator('table.standings tbody tr').first().getAttribute('data-user')).toBe('hr5')
    // The list shows it final too.
    await page.click('nav a[data-nav="campaigns"]')
    await waitText(page, `tr[data-campaign="${camp.id}"] .badge`, '已结束')
    expect(errors).toEqual([])
  })

  it('creates a campaign through the form: region defaults to her scope, the API’s 400 is shown, then it is created', async () => {
    await page.click('#new-campaign')
    await page.waitForSelector('#campaign-form')
    expect(await page.locator('select[name=region_code]').inputValue()).toBe(CITY)
    await page.fill('input[name=name]', '岳阳市暑期积分赛')
    await page.selectOption('select[name=metric]', 'points')
    // Top 2, but the default tiers reach rank 10: the API refuses with 400.
    await page.fill('input[name=top_n]', '2')
    await page.click('#campaign-form button[type=submit]')
    await page.waitForFunction(() => (document.querySelector('#form-error')?.textContent ?? '').includes('400'))
    const message = await text(page, '#form-error')
    expect(message).toContain('输入有误（400）')
    expect(message).toContain('top_n 2')
    // The only console messages are the browser's own notes of that 400.
    expect(errors.length).toBeGreaterThan(0)
    for (const e of errors) expect(e).toMatch(/status of 400/)
    errors.length = 0

    await page.fill('input[name=top_n]', '10')
    await page.click('#add-tier')
    expect(await page.locator('#tier-rows tr').count()).toBe(4)
    await page.locator('#tier-rows tr').last().locator('.remove').click()
    await page.click('#campaign-form button[type=submit]')
    await waitText(page, '#campaign-name', '岳阳市暑期积分赛')
    expect(await text(page, '#campaign-status .badge')).toBe('未开始')
    expect(await page.locator('#settle').isHidden()).toBe(true)
    const id = await page.evaluate(() => location.hash.split('/')[2])
    const created = (await s.call('GET', `/v1/campaigns/${id}`)).json
    expect(created).toMatchObject({ name: '岳阳市暑期积分赛', region_code: CITY, metric: 'points', top_n: 10, status: 'scheduled' })
    expect(created.tiers.map((t: any) => t.prize)).toEqual(['一等奖', '二等奖', '三等奖'])
    expect(errors).toEqual([])
  })
})

describe('the campaigns view at phone width (375 px)', () => {
  it('renders the list, the standings and the form without console errors and without sideways scrolling', async () => {
    const ctx = await browser.newContext({ viewport: { width: 375, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN' })
    const page = await ctx.newPage()
    const errors = watchErrors(page)
    await loginThroughPage(page, s.base, CITY_OFFICIAL.phone, PASSWORD)
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    for (const [hash, sel] of [
      ['#/campaigns', `table.campaigns tr[data-campaign="${camp.id}"]`],
      [`#/campaigns/${camp.id}`, 'table.standings tbody tr'],
      ['#/campaigns/new', '#campaign-form #tier-rows tr'],
    ] as const) {
      await page.evaluate((h) => (location.hash = h), hash)
      await page.waitForSelector(sel)
      expect(await overflow(), hash).toBeLessThanOrEqual(0)
    }
    expect(await page.locator('#campaign-form button[type=submit]').isVisible()).toBe(true)
    expect(errors).toEqual([])
    await ctx.close()
  })
})
