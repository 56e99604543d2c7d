import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadRegionTree } from '../core/regions.ts'
import { isoDay } from '../core/time.ts'
import { share, startStack, type Stack } from '../test/stack.ts'

/**
 * KPIs against an independent recount: three counties of 岳阳市 (4306), communicators in their
 * towns, populations set, events sent; the test computes what every level must show from the raw
 * events it sent (with the counting rules), and compares at city, county and town level.
 */
let s: Stack
let key: string
const tree = loadRegionTree()
const now = Date.now()
const CITY = '4306'
const TOWNS = ['430623101', '430623110', '430624101', tree.children('430624')[1].code, tree.children('430626')[0].code]
type U = { id: string; town: string; recent: boolean; shares: number; reads: number; signin: boolean; inst: string }
const users: U[] = []
const POP: Record<string, number> = { '4306': 5_000_000, '430623': 720_000, '430624': 650_000, [TOWNS[0]]: 40_000, [TOWNS[1]]: 52_000 }

beforeAll(async () => {
  s = await startStack()
  key = await s.createAppKey()
  let n = 0
  for (const town of TOWNS)
    for (let i = 0; i < 3; i++) {
      n++
      users.push({ id: `k${n}`, town, recent: n % 3 === 0, shares: (n * 7) % 25, reads: n % 4 === 0 ? 12 : n % 3, signin: n % 2 === 0, inst: ['', 'inst-a', 'inst-b', 'inst-c'][n % 4] })
    }
  users.push({ id: 'k-big', town: TOWNS[1], recent: false, shares: 305, reads: 0, signin: false, inst: 'inst-c' })
  await s.importUsers(users.map((u, i) => ({ id: u.id, phone: `1390000${String(i).padStart(4, '0')}`, real_name: `人${i}`, region_code: u.town, ...(u.inst ? { institution_id: u.inst } : {}), certified_at: u.recent ? now - 60_000 : '2020-01-01' })))
  for (const [code, population] of Object.entries(POP)) expect((await s.call('PUT', `/v1/regions/${code}/population`, { body: { population, year: 2020 } })).status).toBe(200)
  const events: unknown[] = [share('nobody', now - 10)]
  for (const u of users) {
    for (let i = 0; i < u.shares; i++) events.push(share(u.id, now - 1000 - i))
    for (let i = 0; i < u.reads; i++) events.push({ id: randomUUID(), type: 'read', user_id: u.id, ts: now - 2000 - i, content_id: `c${i}` })
    if (u.signin) events.push({ id: randomUUID(), type: 'signin', user_id: u.id, ts: now - 3000 })
  }
  const facts = await s.factCount()
  for (let i = 0; i < events.length; i += 1000) expect((await s.postEvents(key, events.slice(i, i + 1000))).status).toBe(202)
  await s.waitForFacts(facts + events.length)
})
afterAll(async () => s?.stop())

/** What a region (and optionally one institution in it) must show, recounted from the events sent. */
function expected(prefix: string, inst?: string) {
  const mine = users.filter((u) => u.town.startsWith(prefix) && (inst === undefined || u.inst === inst))
  const certified = mine.length
  const active = mine.filter((u) => u.shares || u.reads || u.signin).length
  const shares = mine.reduce((a, u) => a + Math.min(u.shares, 300), 0)
  const points = mine.reduce((a, u) => a + Math.min(u.shares, 20) + Math.min(u.reads, 10) + (u.signin ? 2 : 0), 0)
  const population = POP[prefix] ?? null
  return {
    region: prefix,
    population,
    certified,
    registration_ratio: population ? certified / population : null,
    new_registrations: mine.filter((u) => u.recent).length,
    shares,
    active,
    activity_rate: certified ? active / certified : null,
    points,
  }
}

describe('GET /v1/kpis equals an independent recount', () => {
  const from = isoDay(now - 2 * 86400_000)
  const to = isoDay(now)
  for (const region of [CITY, '430623', '430624', '430626', TOWNS[1]]) {
    it(`at ${region} and each of its children`, async () => {
      const r = await s.call('GET', `/v1/kpis?region=${region}&from=${from}&to=${to}`)
      expect(r.status).toBe(200)
      expect(r.json).toMatchObject({ ...expected(region), name: tree.get(region)!.name, from, to })
      expect(r.json.children.length).toBe(tree.children(region).length)
      for (const child of r.json.children) expect(child, child.region).toMatchObject(expected(child.region))
    })
  }
  it('counts nothing outside the range, and a later registration not yet', async () => {
    const old = (await s.call('GET', `/v1/kpis?region=${CITY}&from=2021-01-01&to=2021-12-31`)).json
    expect(old).toMatchObject({ shares: 0, active: 0, points: 0, new_registrations: 0, certified: users.filter((u) => !u.recent).length })
    const y2020 = (await s.call('GET', `/v1/kpis?region=${CITY}&from=2020-01-01&to=2020-12-31`)).json
    expect(y2020.new_registrations).toBe(users.filter((u) => !u.recent).length)
  })
  it('validates its parameters', async () => {
    expect((await s.call('GET', '/v1/kpis?region=4306&from=2021-02-30')).status).toBe(400)
    expect((await s.call('GET', '/v1/kpis?region=4306&from=2022-01-02&to=2022-01-01')).status).toBe(400)
    expect((await s.call('GET', '/v1/kpis?region=999999')).status).toBe(404)
    expect((await s.call('GET', '/v1/kpis?region=4306', { token: key })).status).toBe(403)
  })
})

describe('GET /v1/rankings/regions', () => {
  it('ranks the counties of the city by shares, registration ratio and activity rate, as the recount says', async () => {
    const counties = tree.children(CITY).map((r) => r.code)
    for (const metric of ['shares', 'registration_ratio', 'activity_rate'] as const) {
      const r = await s.call('GET', `/v1/rankings/regions?parent=${CITY}&metric=${metric}&period=day&date=${isoDay(now)}`)
      expect(r.status).toBe(200)
      const want = counties
        .map((c) => ({ c, v: expected(c)[metric] }))
        .sort((a, b) => (a.v === null || b.v === null ? (a.v === b.v ? a.c.localeCompare(b.c) : a.v === null ? 1 : -1) : b.v - a.v || a.c.localeCompare(b.c)))
      expect(r.json.entries.map((e: any) => [e.rank, e.region, e.value])).toEqual(want.map((w, i) => [i + 1, w.c, w.v]))
    }
    // The days a ranking reports: a closed period's own, all-time's up to today (not tomorrow).
    const day = (await s.call('GET', `/v1/rankings/regions?parent=${CITY}&period=day&date=${isoDay(now)}`)).json
    expect([day.from, day.to]).toEqual([isoDay(now), isoDay(now)])
    const all = (await s.call('GET', `/v1/rankings/regions?parent=${CITY}&period=all`)).json
    expect(all.to).toBe(isoDay(Date.now()))
    expect((await s.call('GET', `/v1/rankings/institutions?region=${CITY}&period=all`)).json.to).toBe(isoDay(Date.now()))
    expect((await s.call('GET', `/v1/rankings/regions?parent=430623110`)).status).toBe(400)
    expect((await s.call('GET', `/v1/rankings/regions?parent=${CITY}`, { token: key })).status).toBe(403)
  })
})

describe('GET /v1/rankings/institutions', () => {
  it('ranks the institutions of a region by their communicators there, as the recount says', async () => {
    for (const [region, metric] of [[CITY, 'shares'], ['430623', 'activity_rate'], [CITY, 'certified']] as const) {
      const r = await s.call('GET', `/v1/rankings/institutions?region=${region}&metric=${metric}&period=day&date=${isoDay(now)}`)
      expect(r.status).toBe(200)
      const insts = [...new Set(users.filter((u) => u.inst && u.town.startsWith(region)).map((u) => u.inst))]
      const want = insts
        .map((i) => ({ i, e: expected(region, i) }))
        .map(({ i, e }) => ({ i, e, v: e[metric] }))
        .sort((a, b) => (b.v ?? -1) - (a.v ?? -1) || a.i.localeCompare(b.i))
      expect(r.json.total).toBe(want.length)
      expect(r.json.entries.map((x: any) => [x.rank, x.institution_id, x.value, x.shares, x.active, x.certified, x.points])).toEqual(
        want.map((w, k) => [k + 1, w.i, w.v, w.e.shares, w.e.active, w.e.certified, w.e.points]),
      )
    }
    // Keyset pages of one walk the same ranking.
    const base = `/v1/rankings/institutions?region=${CITY}&metric=shares&period=day&date=${isoDay(now)}`
    const whole = (await s.call('GET', base)).json
    expect(whole.next).toBeNull()
    expect(whole.entries.length).toBeGreaterThan(1)
    const walked: any[] = []
    let after: string | null = null
    do {
      const page: any = (await s.call('GET', `${base}&limit=1${after ? `&after=${after}` : ''}`)).json
      walked.push(...page.entries)
      after = page.next
    } while (after)
    expect(walked).toEqual(whole.entries)
    expect((await s.call('GET', `${base}&after=junk`)).json.error.code).toBe('invalid_cursor')
    expect((await s.call('GET', '/v1/rankings/institutions?region=4306&metric=points')).status).toBe(400)
    expect((await s.call('GET', '/v1/rankings/institutions?region=4306', { token: key })).status).toBe(403)
  })
})

describe('registration facts', () => {
  it('moves a communicator re-imported into another county, retracting what was recorded', async () => {
    const day = isoDay(now)
    const kpi = async (region: string) => (await s.call('GET', `/v1/kpis?region=${region}&from=${day}&to=${day}`)).json
    const before = { a: await kpi('430623'), b: await kpi('430626') }
    const u = users.find((x) => x.town.startsWith('430623') && !x.recent)!
    const target = TOWNS[4] // a town of 430626
    const i = users.indexOf(u)
    expect(await s.importUsers([{ id: u.id, phone: `1390000${String(i).padStart(4, '0')}`, real_name: `人${i}`, region_code: target, certified_at: '2020-01-01' }])).toMatchObject({ created: 0, updated: 1 })
    const after = { a: await kpi('430623'), b: await kpi('430626') }
    expect(after.a.certified).toBe(before.a.certified - 1)
    expect(after.b.certified).toBe(before.b.certified + 1)
    expect((await kpi(CITY)).certified).toBe(users.length)
    // The same roster again records nothing new.
    const rows = async () => (await (await s.deps.ch.query({ query: `SELECT delta, region_code FROM registrations WHERE user_id = {id:String} ORDER BY recorded_at, delta`, query_params: { id: u.id }, format: 'JSONEachRow' })).json()) as { delta: number; region_code: string }[]
    const facts = await rows()
    expect(facts).toEqual([{ delta: 1, region_code: u.town }, { delta: -1, region_code: u.town }, { delta: 1, region_code: target }])
    await s.importUsers([{ id: u.id, phone: `1390000${String(i).padStart(4, '0')}`, real_name: `人${i}`, region_code: target, certified_at: '2020-01-01' }])
    expect(await rows()).toEqual(facts)
  })
})

describe('GET /v1/kpis/trend', () => {
  it('gives per day and per month what /v1/kpis gives for that day or month', async () => {
    const day = isoDay(now)
    const month = day.slice(0, 8) + '01'
    for (const region of [CITY, '430623', TOWNS[1]]) {
      const days = (await s.call('GET', `/v1/kpis/trend?region=${region}&by=day&from=${isoDay(now - 3 * 86400_000)}&to=${day}`)).json
      const months = (await s.call('GET', `/v1/kpis/trend?region=${region}&by=month&from=${isoDay(now - 70 * 86400_000)}&to=${day}`)).json
      for (const [p, from, to] of [[days.points.at(-1), day, day], [days.points[0], days.points[0].from, days.points[0].to], [months.points.at(-1), month, months.points.at(-1).to], [months.points[0], months.points[0].from, months.points[0].to]]) {
        const k = (await s.call('GET', `/v1/kpis?region=${region}&from=${from}&to=${to}`)).json
        for (const f of ['certified', 'new_registrations', 'shares', 'active', 'points', 'population', 'registration_ratio', 'activity_rate']) expect(p[f], `${region} ${from} ${f}`).toBe(k[f])
      }
      expect(days.points.at(-1).shares).toBe(expected(region).shares)
    }
  })
})
