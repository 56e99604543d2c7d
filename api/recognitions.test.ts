import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isoDay } from '../core/time.ts'
import { createOfficial } from '../test/accounts.ts'
import { share, startStack, type Stack } from '../test/stack.ts'

/**
 * Recognition lists (seed 004) with small thresholds: institutions with ≥ 3 certified communicators
 * and ≥ 10 shares; individuals with ≥ 6 shares. What each list holds is worked out by hand below.
 */
let s: Stack
let key: string
const now = Date.now()
const day = isoDay(now)
const people = [
  // id, town, institution, shares sent today
  ['r1', '430623101', 'inst-a', 8],
  ['r2', '430623110', 'inst-a', 5],
  ['r3', '430623101', 'inst-a', 0],
  ['r4', '430623110', 'inst-b', 12],
  ['r5', '430623101', 'inst-b', 2],
  ['r6', '430624101', 'inst-c', 30], // next county: outside 430623
] as const

beforeAll(async () => {
  s = await startStack()
  key = await s.createAppKey()
  await s.importUsers(people.map(([id, town, inst], i) => ({ id, phone: `1360000${String(i).padStart(4, '0')}`, real_name: `表彰${i}`, region_code: town, institution_id: inst, certified_at: '2021-01-01' })))
  const events = people.flatMap(([id, , , n]) => Array.from({ length: n }, (_, i) => share(id, now - 1000 - i)))
  expect((await s.postEvents(key, events)).status).toBe(202)
  await s.waitForFacts(events.length)
})
afterAll(async () => s?.stop())

describe('recognition lists', () => {
  it('lists institutions meeting every threshold within the region', async () => {
    const r = await s.call('GET', `/v1/recognitions/institutions?region=430623&from=${day}&to=${day}&min_certified=3&min_shares=10`)
    expect(r.status).toBe(200)
    // inst-a: 3 certified, 13 shares → in; inst-b: 2 certified → out; inst-c: another county.
    expect(r.json.entries).toEqual([{ rank: 1, institution_id: 'inst-a', certified: 3, shares: 13, active: 2, points: 13 }])
    const all = await s.call('GET', `/v1/recognitions/institutions?region=430623&from=${day}&to=${day}&min_shares=1`)
    expect(all.json.entries.map((e: any) => [e.institution_id, e.shares])).toEqual([['inst-a', 13], ['inst-b', 14]].sort((a, b) => (b[1] as number) - (a[1] as number)))
  })
  it('lists communicators with enough shares, ranked, and exports CSV with masked phones', async () => {
    const r = await s.call('GET', `/v1/recognitions/communicators?region=430623&from=${day}&to=${day}&min_shares=6`)
    expect(r.json.entries.map((e: any) => [e.rank, e.user_id, e.shares])).toEqual([[1, 'r4', 12], [2, 'r1', 8]])
    const csv = await s.call('GET', `/v1/recognitions/communicators?region=430623&from=${day}&to=${day}&min_shares=6&format=csv`)
    expect(csv.headers.get('content-type')).toMatch(/text\/csv/)
    const raw = new Uint8Array(await (await fetch(`${s.base}/v1/recognitions/communicators?region=430623&from=${day}&to=${day}&min_shares=6&format=csv`, { headers: { authorization: 'Bearer test-admin-token-0123456789abcdef' } })).arrayBuffer())
    expect([...raw.slice(0, 3)]).toEqual([0xef, 0xbb, 0xbf]) // BOM, so Excel reads UTF-8
    expect(csv.text.split('\r\n')[0]).toBe('名次,姓名,单位,地区,手机号,转发量')
    expect(csv.text).toContain('136****0003')
    expect(csv.text).not.toMatch(/1360000\d{4}/)
  })
  it('pages both lists with keyset cursors, the same entries and ranks as one page, total over the whole list', async () => {
    for (const [path, q] of [['communicators', 'min_shares=1'], ['institutions', 'min_shares=1']]) {
      const base = `/v1/recognitions/${path}?region=43&from=${day}&to=${day}&${q}`
      const whole = (await s.call('GET', `${base}&limit=1000`)).json
      expect(whole.entries.length).toBeGreaterThan(2)
      expect(whole).toMatchObject({ total: whole.entries.length, next: null })
      const walked: any[] = []
      let after: string | null = null
      do {
        const page: any = (await s.call('GET', `${base}&limit=2${after ? `&after=${after}` : ''}`)).json
        expect(page.total).toBe(whole.total)
        expect(page.entries.length).toBeLessThanOrEqual(2)
        walked.push(...page.entries)
        after = page.next
      } while (after)
      expect(walked).toEqual(whole.entries)
      expect(walked.map((e) => e.rank)).toEqual(whole.entries.map((_: unknown, i: number) => i + 1))
      expect((await s.call('GET', `${base}&after=bm9wZQ`)).json.error.code).toBe('invalid_cursor')
      expect((await s.call('GET', `${base}&limit=1001`)).status).toBe(400)
    }
    // The default page is 100 entries; the CSV is the whole list whatever the page size.
    const csv = await s.call('GET', `/v1/recognitions/communicators?region=43&from=${day}&to=${day}&min_shares=1&limit=1&format=csv`)
    const total = (await s.call('GET', `/v1/recognitions/communicators?region=43&from=${day}&to=${day}&min_shares=1`)).json.total
    expect(csv.text.trim().split('\r\n')).toHaveLength(total + 1)
  })
  it('checks scope and input', async () => {
    const login = (phone: string, scope: Record<string, string>) => createOfficial(s, { phone, name: 'n', scope })
    const neighbour = await login('15200000001', { region_code: '430624' })
    expect((await s.call('GET', `/v1/recognitions/communicators?region=430623&from=${day}&to=${day}`, { token: neighbour })).status).toBe(403)
    expect((await s.call('GET', `/v1/recognitions/institutions?region=430623&from=${day}&to=${day}`, { token: key })).status).toBe(403)
    expect((await s.call('GET', `/v1/recognitions/institutions?region=430623&from=${day}&to=2020-01-01`)).status).toBe(400)
    expect((await s.call('GET', `/v1/recognitions/communicators?region=430623&from=x&to=${day}`)).status).toBe(400)
  })
})
