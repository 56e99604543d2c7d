import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import ExcelJS from 'exceljs'
import { createCampaignJobs } from './campaign-jobs.ts'
import { share, startStack, type Stack } from '../test/stack.ts'

/**
 * Seed 003's scenario in small: a city campaign (岳阳市 4306) and a county campaign nested in it
 * (华容县 430623) over the same window, which started before the campaigns were created. Events
 * before, inside and after the window; some sent before the campaigns existed (backfilled), some
 * while the backfill runs, some after (fed live); a day over the cap; communicators below the basic
 * task; a tie decided by event time. Standings, prizes, the CSV and the settled result must be what
 * a recount by hand says.
 */
let s: Stack
let key: string
const HOUR = 3_600_000
const now = Date.now()
const T0 = now - 50 * HOUR // window start
const T1 = now - 10 * HOUR // window end (exclusive)
const HR = ['430623101', '430623110'] // towns of 华容县
const XY = '430624101' // a town of 湘阴县 (in the city, not the county)
const OUT = '430102001' // 长沙 (outside both)

type Sent = { user: string; ts: number; type: string }
const sent: Sent[] = []
const users = [
  { id: 'c-a', town: HR[0] },
  { id: 'c-b', town: HR[1] },
  { id: 'c-c', town: HR[0] },
  { id: 'c-d', town: XY },
  { id: 'c-e', town: XY },
  { id: 'c-f', town: OUT },
  { id: 'c-g', town: HR[1] },
]

async function send(events: { user: string; ts: number; type?: string }[]) {
  const batch = events.map((e) => (e.type && e.type !== 'share_back' ? { id: randomUUID(), type: e.type, user_id: e.user, ts: e.ts, content_id: 'c-read' } : share(e.user, e.ts)))
  for (let i = 0; i < batch.length; i += 1000) {
    const r = await s.postEvents(key, batch.slice(i, i + 1000))
    expect(r.status).toBe(202)
    expect(r.json.rejected).toEqual([])
  }
  for (const e of events) sent.push({ user: e.user, ts: e.ts, type: e.type ?? 'share_back' })
}
const many = (user: string, n: number, ts: number) => Array.from({ length: n }, (_, i) => ({ user, ts: ts + i }))

/** Hand recount: counted share-backs (≤ 300 per user and Shanghai day) in the window, per user in the region. */
function recount(prefix: string, minScore: number, tiers: [number, number, string][]) {
  const perDay = new Map<string, number>()
  const score = new Map<string, { n: number; reached: number }>()
  for (const e of [...sent].sort((a, b) => a.ts - b.ts)) {
    if (e.type !== 'share_back') continue
    const day = `${e.user}:${new Date(e.ts + 8 * HOUR).toISOString().slice(0, 10)}`
    const n = (perDay.get(day) ?? 0) + 1
    perDay.set(day, n)
    if (n > 300) continue
    const u = users.find((x) => x.id === e.user)!
    if (!u.town.startsWith(prefix) || e.ts < T0 || e.ts >= T1) continue
    const cur = score.get(e.user) ?? { n: 0, reached: 0 }
    score.set(e.user, { n: cur.n + 1, reached: Math.max(cur.reached, e.ts) })
  }
  return [...score]
    .sort(([ua, a], [ub, b]) => b.n - a.n || a.reached - b.reached || ua.localeCompare(ub))
    .map(([user_id, v], i) => {
      const eligible = v.n >= minScore
      const tier = tiers.find(([f, t]) => i + 1 >= f && i + 1 <= t)
      return { rank: i + 1, user_id, score: v.n, eligible, prize: eligible && tier ? tier[2] : null }
    })
}

const CITY_TIERS: [number, number, string][] = [[1, 1, '一等奖'], [2, 3, '二等奖'], [4, 5, '三等奖']]
const COUNTY_TIERS: [number, number, string][] = [[1, 2, '优秀奖']]
const tiersJson = (t: [number, number, string][]) => t.map(([from_rank, to_rank, prize]) => ({ from_rank, to_rank, prize }))
let city: any
let county: any

const standings = async (id: string) => (await s.call('GET', `/v1/campaigns/${id}/standings?limit=100`)).json
const pick = (es: any[]) => es.map(({ rank, user_id, score, eligible, prize }: any) => ({ rank, user_id, score, eligible, prize }))

beforeAll(async () => {
  s = await startStack()
  key = await s.createAppKey()
  await s.importUsers(users.map((u, i) => ({ id: u.id, phone: `1370000${String(i).padStart(4, '0')}`, real_name: `参赛${i}`, region_code: u.town, institution_id: 'inst-1', certified_at: '2020-01-01' })))
  // Before the campaigns exist: before, inside and after the window; c-a goes over the daily cap.
  await send([
    ...many('c-a', 305, T0 + 2 * HOUR),
    ...many('c-b', 20, T0 - 3 * HOUR), // before the window
    ...many('c-b', 12, T0 + 5 * HOUR),
    ...many('c-c', 12, T0 + 1 * HOUR), // ties with c-b's window count, reached earlier
    ...many('c-d', 40, T0 + 6 * HOUR),
    ...many('c-e', 3, T1 + HOUR), // after the window
    ...many('c-f', 50, T0 + 7 * HOUR), // outside the region
    { user: 'c-g', ts: T0 + 8 * HOUR, type: 'read' },
  ])
  await s.waitForFacts(sent.length)
}, 120_000)
afterAll(async () => s?.stop())

describe('seed 003: nested city and county campaigns', () => {
  it('creates both over a window that started before, backfills them, feeds what arrives meanwhile and after', async () => {
    const agg = s.service.aggregator!
    const backfilled = new Set<string>()
    let wake = () => {}
    agg.jobs.events.on('backfilled', (id: string) => (backfilled.add(id), wake()))
    const bothBackfilled = () => new Promise<void>((res) => {
      wake = () => backfilled.has(city.id) && backfilled.has(county.id) && res()
      wake()
    })
    const grace = 24 * 3600
    const body = { starts_at: T0, ends_at: T1, metric: 'shares', grace_seconds: grace }
    city = (await s.call('POST', '/v1/campaigns', { body: { ...body, name: '岳阳市转发竞赛', region_code: '4306', min_score: 10, top_n: 5, tiers: tiersJson(CITY_TIERS) } })).json
    county = (await s.call('POST', '/v1/campaigns', { body: { ...body, name: '华容县转发竞赛', region_code: '430623', min_score: 13, top_n: 2, tiers: tiersJson(COUNTY_TIERS) } })).json
    expect(city.status).toBe('running')
    // Meanwhile: events while the backfill is pending.
    await send([...many('c-c', 1, T0 + 9 * HOUR), ...many('c-e', 5, T0 + 9 * HOUR), ...many('c-g', 2, T1 - HOUR)])
    await bothBackfilled()
    const facts = sent.length
    await s.waitForFacts(facts)
    // After the backfill: fed live, and an event after the window.
    await send([...many('c-b', 1, T0 + 4 * HOUR), ...many('c-d', 1, T1 + 2 * HOUR), ...many('c-g', 11, T0 + 10 * HOUR)])
    await s.waitForFacts(sent.length)
    expect((await s.call('GET', `/v1/campaigns/${city.id}`)).json.backfill).toBe('done')

    const wantCity = recount('4306', 10, CITY_TIERS)
    const wantCounty = recount('430623', 13, COUNTY_TIERS)
    // The hand recount itself, so that the scenario tests what it means to.
    // c-b, c-c and c-g tie at 13: c-b reached it first in event time though its last event arrived last.
    expect(wantCounty.map((e) => [e.user_id, e.score, e.prize])).toEqual([['c-a', 300, '优秀奖'], ['c-b', 13, '优秀奖'], ['c-c', 13, null], ['c-g', 13, null]])
    expect(wantCity.map((e) => [e.user_id, e.score, e.eligible, e.prize])).toEqual([
      ['c-a', 300, true, '一等奖'], ['c-d', 40, true, '二等奖'], ['c-b', 13, true, '二等奖'], ['c-c', 13, true, '三等奖'], ['c-g', 13, true, '三等奖'], ['c-e', 5, false, null],
    ])
    const c1 = await standings(city.id)
    expect(c1).toMatchObject({ status: 'running', total: wantCity.length })
    expect(pick(c1.entries)).toEqual(wantCity)
    const c2 = await standings(county.id)
    expect(pick(c2.entries)).toEqual(wantCounty)
    // Outside the region: nowhere; the neighbouring county's communicator only in the city's.
    expect(c1.entries.find((e: any) => e.user_id === 'c-f')).toBeUndefined()
    expect(c2.entries.find((e: any) => e.user_id === 'c-d')).toBeUndefined()
    // A communicator's own standing with neighbours.
    const me = (await s.call('GET', `/v1/campaigns/${city.id}/standings/users/c-c?around=1`)).json
    expect(me.rank).toBe(wantCity.find((e) => e.user_id === 'c-c')!.rank)
    expect(me.entries.length).toBe(3)
    // A communicator with nothing in the window has no rank; an unknown id is a 404, as on leaderboards.
    expect((await s.call('GET', `/v1/campaigns/${city.id}/standings/users/c-f`)).json).toMatchObject({ rank: null, score: 0, entries: [] })
    const nobody = await s.call('GET', `/v1/campaigns/${city.id}/standings/users/no-such-user`)
    expect([nobody.status, nobody.json.error.code]).toEqual([404, 'not_found'])
  })

  it('exports the standings as CSV with a BOM and masked phones', async () => {
    const r = await fetch(`${s.base}/v1/campaigns/${city.id}/standings.csv`, { headers: { authorization: 'Bearer test-admin-token-0123456789abcdef' } })
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toMatch(/text\/csv/)
    const bytes = new Uint8Array(await r.arrayBuffer())
    expect([...bytes.slice(0, 3)]).toEqual([0xef, 0xbb, 0xbf])
    const lines = new TextDecoder().decode(bytes).replace(/^\uFEFF/, '').trim().split('\r\n')
    expect(lines[0]).toBe('名次,姓名,单位,地区,手机号,转发量,达成时间,完成基础任务,奖项')
    const want = recount('4306', 10, CITY_TIERS)
    expect(lines.length).toBe(want.length + 1)
    const first = lines[1].split(',')
    expect(first.slice(0, 6)).toEqual(['1', '参赛0', 'inst-1', first[3], '137****0000', '300'])
    expect(first[3]).toMatch(/^湖南省岳阳市华容县./)
    expect(first.slice(7)).toEqual(['是', '一等奖'])
    expect(lines.join('\n')).not.toMatch(/1370000\d{4}/)

    // The same rows as an Excel workbook.
    const x = await fetch(`${s.base}/v1/campaigns/${city.id}/standings.xlsx`, { headers: { authorization: 'Bearer test-admin-token-0123456789abcdef' } })
    expect(x.headers.get('content-type')).toMatch(/spreadsheetml/)
    const book = new ExcelJS.Workbook()
    await book.xlsx.load(Buffer.from(await x.arrayBuffer()) as never)
    const sheet = book.worksheets[0]
    const cells: string[][] = []
    sheet.eachRow((row) => cells.push((row.values as unknown[]).slice(1).map((v) => String(v ?? ''))))
    expect(cells).toEqual(lines.map((l) => l.split(',')))
  })

  it('settles on request once, freezes the result, and late events change nothing', async () => {
    const want = recount('430623', 13, COUNTY_TIERS)
    // Two settlers at once (as two processes would): one result, settled once.
    const jobs = () => createCampaignJobs({ redis: s.deps.redis, ch: s.deps.ch, jsm: s.deps.jsm, campaigns: s.deps.campaigns, log: s.deps.log, stream: s.config.nats.stream })
    const [a, b] = await Promise.all([s.call('POST', `/v1/campaigns/${county.id}/settle`), jobs().settle(county.id, { now: true })])
    expect([200, 409]).toContain(a.status)
    const final = (await s.call('GET', `/v1/campaigns/${county.id}`)).json
    expect(final.status).toBe('final')
    if (b) expect(new Date(b.settled_at!).toISOString()).toBe(new Date(final.settled_at).toISOString())
    const again = await s.call('POST', `/v1/campaigns/${county.id}/settle`)
    expect(again.json.settled_at).toBe(final.settled_at)
    const frozen = await standings(county.id)
    expect(frozen.status).toBe('final')
    expect(pick(frozen.entries)).toEqual(want)
    const rows = await (await s.deps.ch.query({ query: `SELECT count() AS n FROM campaign_results WHERE campaign_id = {id:String}`, query_params: { id: county.id }, format: 'JSONEachRow' })).json()
    // Both settlers may have written; folded, they are one result.
    const folded = await (await s.deps.ch.query({ query: `SELECT count() AS n FROM campaign_results FINAL WHERE campaign_id = {id:String}`, query_params: { id: county.id }, format: 'JSONEachRow' })).json()
    expect(Number((folded as any)[0].n)).toBe(want.length)
    expect(Number((rows as any)[0].n) % want.length).toBe(0)

    // A late event inside the window, after settlement: a fact, but the result stays.
    const before = sent.length
    await send([...many('c-b', 5, T1 - 2 * HOUR)])
    await s.waitForFacts(before + 5)
    expect(pick((await standings(county.id)).entries)).toEqual(want)
    // The city campaign, still running, counts them.
    const city1 = await standings(city.id)
    expect(city1.entries.find((e: any) => e.user_id === 'c-b').score).toBe(18)
  })

  it('refuses to settle before the end, and settles by itself after end + grace', async () => {
    const soon = Date.now() + 3600_000
    const future = (await s.call('POST', '/v1/campaigns', { body: { name: '未开始', region_code: '430623', starts_at: soon, ends_at: soon + 3600_000 } })).json
    expect((await s.call('POST', `/v1/campaigns/${future.id}/settle`)).status).toBe(409)
    const agg = s.service.aggregator!
    const settled = new Promise<string>((res) => agg.jobs.events.on('settled', (id: string) => id !== county.id && res(id)))
    // A record whose job cannot run (an end no date can print, stored before times were checked)
    // is logged and skipped: it does not hold up the settlement of the others.
    const kv = await new (await import('@nats-io/kv')).Kvm(s.deps.nc).open('campaigns')
    const bad = { ...(await s.deps.campaigns.get(future.id))!, id: 'cp-broken', name: '坏记录', starts_at: T0, ends_at: 1e30 }
    await kv.put('c.cp-broken', JSON.stringify(bad))
    // Its grace ends in 3 s: what was received until then counts (everything sent so far).
    const grace = Math.ceil((Date.now() - T1) / 1000) + 3
    const ended = (await s.call('POST', '/v1/campaigns', { body: { name: '已结束', region_code: '4306', starts_at: T0, ends_at: T1, grace_seconds: grace, min_score: 10, top_n: 5, tiers: tiersJson(CITY_TIERS) } })).json
    expect(await settled).toBe(ended.id)
    await kv.delete('c.cp-broken')
    const got = await standings(ended.id)
    expect(got.status).toBe('final')
    expect(pick(got.entries)).toEqual(recount('4306', 10, CITY_TIERS))
  })

  it('comes back equal after Redis is flushed and rebuilt from the facts', async () => {
    const before = await standings(city.id)
    expect(before.status).toBe('running')
    await s.deps.redis.flushall()
    expect((await s.call('POST', '/v1/admin/rebuild')).status).toBe(200)
    expect(await standings(city.id)).toEqual(before)
    // And counting goes on from there.
    const n = sent.length
    await send([...many('c-e', 5, T0 + 20 * HOUR)])
    await s.waitForFacts(n + 5)
    const after = await standings(city.id)
    expect(pick(after.entries)).toEqual(recount('4306', 10, CITY_TIERS))
    expect(after.entries.find((e: any) => e.user_id === 'c-e')).toMatchObject({ score: 10, eligible: true })
  })
})
