import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SUBJECT_EVENTS } from '../core/stream.ts'
import { periodRange } from '../core/time.ts'
import { share, startStack, type Stack } from '../test/stack.ts'

let s: Stack
let key: string
const TOWN = '430623110'

beforeAll(async () => {
  s = await startStack()
  key = await s.createAppKey()
  await s.importUsers([
    { id: 'd1', phone: '13700000001', real_name: '赵一', region_code: TOWN, certified_at: '2020-01-01' },
    { id: 'd2', phone: '13700000002', real_name: '钱二', region_code: TOWN, certified_at: '2020-01-01' },
  ])
})
afterAll(async () => s?.stop())

/** Everything a reader can see: both users' scores on every period of the county board, both metrics. */
async function snapshot() {
  const out: Record<string, unknown> = {}
  for (const metric of ['shares', 'points'])
    for (const period of ['day', 'week', 'month', 'year', 'all']) {
      const b = (await s.call('GET', `/v1/leaderboards?metric=${metric}&period=${period}&region=430623`)).json
      out[`${metric}/${period}`] = b.entries.map((e: any) => [e.user_id, e.score, e.reached_at])
    }
  out.counted = await s.factCount("decision = 'counted'")
  return out
}

describe('idempotence by event id', () => {
  const t = Date.now() - 120_000
  const batch = [
    ...Array.from({ length: 30 }, (_, i) => share('d1', t + i * 10)),
    ...Array.from({ length: 5 }, (_, i) => share('d2', t + i * 10)),
    { id: 'read-1', type: 'read', user_id: 'd2', ts: t, content_id: 'c9' },
    { id: 'signin-1', type: 'signin', user_id: 'd2', ts: t },
  ]

  it('sending the same batch twice changes nothing', async () => {
    const first = await s.postEvents(key, batch)
    expect(first.json).toMatchObject({ accepted: batch.length, duplicates: 0 })
    await s.waitForFacts(batch.length)
    const before = await snapshot()
    expect(before['shares/day']).toEqual([['d1', 30, expect.any(String)], ['d2', 5, expect.any(String)]])

    const again = await s.postEvents(key, batch)
    expect(again.status).toBe(202)
    // Inside the stream's duplicate window the server itself drops them.
    expect(again.json).toMatchObject({ accepted: 0, duplicates: batch.length })
    expect(await snapshot()).toEqual(before)
  })

  it('a resend after a full restart, past the stream duplicate window, changes nothing', async () => {
    const before = await snapshot()
    const facts = await s.factCount()
    await s.restart()
    // Publish straight to the stream without a message id: what a resend days later looks like
    // once the stream's own window has passed. Only the aggregator's dedupe stands in the way.
    const enc = new TextEncoder()
    const now = Date.now()
    for (const e of batch) {
      const ev = { kind: 'event', id: e.id, type: e.type, user_id: e.user_id, ts: e.ts, client_ts: e.ts, sent_at: null, received_at: now, app_id: 'resend', content_id: (e as any).content_id ?? '', channel: (e as any).channel ?? '', viewer: '' }
      await s.deps.js.publish(SUBJECT_EVENTS(s.config.nats.stream), enc.encode(JSON.stringify(ev)))
    }
    await s.waitForFacts(facts + batch.length)
    expect(await s.factCount("decision = 'duplicate'")).toBe(batch.length)
    expect(await snapshot()).toEqual(before)
    // And through the HTTP API after the restart as well.
    const third = await s.postEvents(key, batch)
    expect(third.status).toBe(202)
    expect(await snapshot()).toEqual(before)
  })

  it('takes one id sent by two users as two events (an id is unique within its user), while a user’s own resend stays a duplicate', async () => {
    const REGION = '430623102'
    await s.importUsers([
      { id: 'twin-a', phone: '13700000021', real_name: '甲', region_code: REGION, certified_at: '2020-01-01' },
      { id: 'twin-b', phone: '13700000022', real_name: '乙', region_code: REGION, certified_at: '2020-01-01' },
    ])
    const facts = await s.factCount()
    const t = Date.now() - 60_000
    // Inside the stream's duplicate window: the second user's event is not dropped as the first's resend.
    expect((await s.postEvents(key, [share('twin-a', t, { id: 'same-id' })])).json).toMatchObject({ accepted: 1, duplicates: 0 })
    expect((await s.postEvents(key, [share('twin-b', t, { id: 'same-id' })])).json).toMatchObject({ accepted: 1, duplicates: 0 })
    expect((await s.postEvents(key, [share('twin-b', t, { id: 'same-id' })])).json).toMatchObject({ accepted: 0, duplicates: 1 })
    await s.waitForFacts(facts + 2)
    expect(await s.factCount("event_id = 'same-id' AND decision = 'counted'")).toBe(2)
    const b = (await s.call('GET', `/v1/leaderboards?metric=shares&period=day&region=${REGION}`)).json
    expect(b.entries.map((e: any) => [e.user_id, e.score])).toEqual([['twin-a', 1], ['twin-b', 1]])
  })
})

describe('ranking', () => {
  it('ranks equal scores by event time even when the later one’s events arrive first', async () => {
    await s.importUsers([
      { id: 'early', phone: '13700000011', real_name: '早', region_code: '430623101', certified_at: '2020-01-01' },
      { id: 'late', phone: '13700000012', real_name: '晚', region_code: '430623101', certified_at: '2020-01-01' },
    ])
    // Inside today (Shanghai) even just after midnight: the day board read below is today's.
    const t = Math.max(Date.now() - 600_000, periodRange('day', Date.now()).startMs + 1000)
    const facts = await s.factCount()
    // 'late' reaches 3 at t+300s, but its events are sent (and counted) first.
    expect((await s.postEvents(key, [share('late', t + 100_000), share('late', t + 200_000), share('late', t + 300_000)])).status).toBe(202)
    await s.waitForFacts(facts + 3)
    expect((await s.postEvents(key, [share('early', t + 3000), share('early', t + 1000), share('early', t + 2000)])).status).toBe(202)
    await s.waitForFacts(facts + 6)
    for (const period of ['day', 'all']) {
      const b = (await s.call('GET', `/v1/leaderboards?metric=shares&period=${period}&region=430623101`)).json
      expect(b.entries.map((e: any) => [e.rank, e.user_id, e.score])).toEqual([[1, 'early', 3], [2, 'late', 3]])
      expect(Date.parse(b.entries[0].reached_at)).toBe(period === 'day' ? t + 3000 : Math.floor((t + 3000) / 1000) * 1000)
    }
    // Keyset paging walks the same order.
    const p1 = (await s.call('GET', '/v1/leaderboards?metric=shares&period=day&region=430623101&limit=1')).json
    expect(p1.entries[0].user_id).toBe('early')
    const p2 = (await s.call('GET', `/v1/leaderboards?metric=shares&period=day&region=430623101&limit=1&after=${p1.next}`)).json
    expect(p2.entries.map((e: any) => [e.rank, e.user_id])).toEqual([[2, 'late']])
    expect(p2.next).toBeNull()
    // A cursor belongs to its board: on another period or metric it is refused, not read as an empty page.
    for (const other of ['metric=shares&period=all', 'metric=points&period=day']) {
      const r = await s.call('GET', `/v1/leaderboards?${other}&region=430623101&limit=1&after=${p1.next}`)
      expect([r.status, r.json.error?.code], other).toEqual([400, 'invalid_cursor'])
    }
    // A cursor cut before boards were tagged (score and user only) still pages.
    const untagged = Buffer.from(JSON.stringify(JSON.parse(Buffer.from(p1.next, 'base64url').toString()).slice(0, 2))).toString('base64url')
    expect((await s.call('GET', `/v1/leaderboards?metric=shares&period=day&region=430623101&limit=1&after=${untagged}`)).json.entries).toEqual(p2.entries)
    const me = (await s.call('GET', '/v1/leaderboards/users/late?metric=shares&period=day&region=430623101&around=1')).json
    expect(me).toMatchObject({ rank: 2, score: 3, total: 2 })
    expect(me.entries.map((e: any) => e.user_id)).toEqual(['early', 'late'])
  })
})
