import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { masters } from '../core/clients/redis.ts'
import { startRedis } from '../core/local-services.ts'
import { share, startStack, type Stack } from '../test/stack.ts'
import { advanceMark, redisRunId } from './seq-mark.ts'

let s: Stack
let key: string
const now = Date.now()

/** Every derived key in Redis with its value (TTLs aside), binary-safe. */
async function dumpState(stack: Stack = s): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  for (const r of masters(stack.deps.redis))
  for (const match of ['u:*', 'b:*', 'g:*', 'm:*']) {
    let cursor = '0'
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', match, 'COUNT', 1000)
      cursor = next
      for (const k of keys) {
        const type = await r.type(k)
        if (type === 'hash') {
          const h = await r.hgetallBuffer(k)
          out[k] = Object.fromEntries(Object.entries(h).map(([f, v]) => [Buffer.from(f, 'binary').toString('hex'), v.toString()]).sort())
        } else if (type === 'zset') out[k] = await r.zrange(k, 0, '-1', 'WITHSCORES')
        else out[k] = await r.get(k)
      }
    } while (cursor !== '0')
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)))
}

async function sendAndWait(events: unknown[], stack: Stack = s, app: string = key) {
  const facts = await stack.factCount()
  const r = await stack.postEvents(app, events)
  expect(r.status).toBe(202)
  await stack.waitForFacts(facts + r.json.accepted)
}

/** Communicators and events whose state every rule shapes: caps, streaks, certification, every event type. */
async function workload(s: Stack, key: string) {
  await s.importUsers([
    { id: 'r1', phone: '13600000001', real_name: '甲', region_code: '430623110', institution_id: 'inst-a', certified_at: '2020-01-01' },
    { id: 'r2', phone: '13600000002', real_name: '乙', region_code: '430623101', certified_at: '2020-01-01' },
    { id: 'r3', phone: '13600000003', real_name: '丙', region_code: '110101001', institution_id: 'inst-b', certified_at: '2020-01-01' },
    // Certified only from now on: earlier events of hers do not count.
    { id: 'r4', phone: '13600000004', real_name: '丁', region_code: '430623110', certified_at: now - 3600_000 },
  ])
  const y = now - 86400_000 // yesterday: a sign-in streak
  const events: unknown[] = []
  for (let i = 0; i < 305; i++) events.push(share('r1', now - 10_000 + i))
  for (let i = 0; i < 12; i++) events.push({ id: randomUUID(), type: 'read', user_id: 'r2', ts: now - 5000 + i, content_id: `c${i}` })
  events.push({ id: randomUUID(), type: 'signin', user_id: 'r2', ts: y }, { id: randomUUID(), type: 'signin', user_id: 'r2', ts: now - 100 })
  events.push({ id: randomUUID(), type: 'signin', user_id: 'r2', ts: now - 50 }) // capped: once a day
  for (let i = 0; i < 25; i++) events.push({ id: randomUUID(), type: 'share_view', user_id: 'r3', ts: now - 9000 + i, content_id: 'c1', viewer: `v${i}` })
  for (let i = 0; i < 4; i++) events.push({ id: randomUUID(), type: 'post', user_id: 'r3', ts: y + i })
  events.push(share('r3', y), share('r3', now - 1), share('r4', now - 7200_000), share('r4', now - 1), share('nobody', now - 1))
  // Two batches: ingest takes at most 1,000 events a request anyway.
  await sendAndWait(events.slice(0, 200), s, key)
  await sendAndWait(events.slice(200), s, key)
}

describe('on one Redis server', () => {
  beforeAll(async () => {
    s = await startStack()
    key = await s.createAppKey()
    await workload(s, key)
  })
  afterAll(async () => s?.stop())

  describe('rebuild from facts', () => {
    it('the workload is what the rules say', async () => {
      const r = (q: string) => s.call('GET', q).then((x) => x.json)
      expect((await r('/v1/leaderboards/users/r1?metric=shares&period=day')).score).toBe(300)
      expect((await r('/v1/leaderboards/users/r2?metric=points&period=day')).score).toBe(10 + 3) // 10 reads + sign-in on day 2 of a streak
      expect((await r('/v1/leaderboards/users/r2?metric=points&period=all')).score).toBe(10 + 2 + 3)
      expect((await r('/v1/leaderboards/users/r3?metric=points&period=all')).score).toBe(20 + 9 + 2) // 20 views, 3 posts, 2 shares
      expect((await r('/v1/leaderboards/users/r4?metric=shares&period=all')).score).toBe(1)
      expect(await s.factCount("decision = 'uncertified'")).toBe(1)
    })

    it('flushing Redis and rebuilding from ClickHouse gives back exactly the same state', async () => {
      const live = await dumpState()
      expect(Object.keys(live).length).toBeGreaterThan(50)
      await s.deps.redis.flushall()
      expect(await dumpState()).toEqual({})
      await s.service.aggregator!.rebuild()
      expect(await dumpState()).toEqual(live)
    })

    it('a Redis that comes back empty is detected at start and rebuilt before counting resumes', async () => {
      const live = await dumpState()
      await s.service.stop()
      await s.deps.redis.flushall()
      await s.restart()
      expect(await dumpState()).toEqual(live)
    })

    it('a Redis restored from an older snapshot is detected as stale and rebuilt', async () => {
      const r = s.deps.redis
      // Take a snapshot (DUMP of every key), then count more.
      const keys: string[] = []
      for (const m of ['u:*', 'b:*', 'g:*', 'm:*']) keys.push(...(await r.keys(m)))
      const old = await Promise.all(keys.map(async (k) => [k, await r.dumpBuffer(k)] as const))
      await sendAndWait([share('r2', now - 2), share('r2', now - 3), share('r3', now - 4)])
      const live = await dumpState()
      // The service stops; Redis comes back with the old snapshot.
      await s.service.stop()
      await r.flushall()
      for (const [k, v] of old) await r.restore(k, 0, v!)
      expect(await dumpState()).not.toEqual(live)
      await s.restart()
      expect(await dumpState()).toEqual(live)
      expect((await s.call('GET', '/v1/leaderboards/users/r2?metric=shares&period=day')).json.score).toBe(2)
    })

    it('a Redis restored from an older snapshot while the service runs is noticed at the next batch and rebuilt, losing nothing', async () => {
      const r = s.deps.redis
      const score = async () => (await s.call('GET', '/v1/leaderboards/users/r2?metric=shares&period=all')).json.score as number
      const start = await score()
      const keys: string[] = []
      for (const m of ['u:*', 'b:*', 'g:*', 'm:*']) keys.push(...(await r.keys(m)))
      const old = await Promise.all(keys.map(async (k) => [k, await r.dumpBuffer(k)] as const))
      await sendAndWait([share('r2', now - 6), share('r2', now - 7)])
      expect(await score()).toBe(start + 2)
      // Redis goes back to the snapshot under the running service: those two shares are gone from it.
      await r.flushall()
      for (const [k, v] of old) await r.restore(k, 0, v!)
      expect(await score()).toBe(start)
      // The next batch's mark finds m:seq below one it saw: it rebuilds from the facts, then counts.
      await sendAndWait([share('r2', now - 8)])
      expect(await score()).toBe(start + 3)
      const live = await dumpState()
      await r.flushall()
      await s.service.aggregator!.rebuild()
      expect(await dumpState()).toEqual(live)
    })

    it('a Redis restarted under the running service: the batch that meets it is redelivered, nothing counts twice, nothing is rebuilt', async () => {
      const score = async () => (await s.call('GET', '/v1/leaderboards/users/r3?metric=shares&period=all')).json.score as number
      const start = await score()
      const runId = await redisRunId(s.deps.redis)
      // The mark script tells the restarted server apart by its run id.
      expect(await advanceMark(s.deps.redis, 0, 0, 'not-' + runId)).toBe(-3)

      const port = Number(new URL(s.redisServer.url).port)
      await s.redisServer.stop()
      Object.assign(s.redisServer, await startRedis(s.dir, port)) // same append-only file: nothing lost
      const lines = s.logLines().length
      await sendAndWait([share('r3', now - 11), share('r3', now - 12)])
      expect(await score()).toBe(start + 2)
      expect(await redisRunId(s.deps.redis)).not.toBe(runId)
      const log = s.logLines().slice(lines).join('\n')
      expect(log).toContain('Redis restarted: the batches in flight are redelivered')
      expect(log).not.toContain('rebuilding Redis')
      // The redelivered batch replayed its recorded decisions: the state is what the facts say.
      const live = await dumpState()
      await s.deps.redis.flushall()
      await s.service.aggregator!.rebuild()
      expect(await dumpState()).toEqual(live)
    })

    it('a Redis that loses its state while running is noticed and rebuilt, losing nothing', async () => {
      const before = (await s.call('GET', '/v1/leaderboards/users/r3?metric=shares&period=all')).json.score
      await s.deps.redis.flushall()
      const facts = await s.factCount()
      const r = await s.postEvents(key, [share('r3', now - 5)])
      expect(r.status).toBe(202)
      await s.waitForFacts(facts + 1)
      expect((await s.call('GET', '/v1/leaderboards/users/r3?metric=shares&period=all')).json.score).toBe(before + 1)
    })

    it('rebuilds asked for at once run one after the other while events keep coming: every event counted, none taken for an unknown user', async () => {
      const agg = s.service.aggregator!
      const unknown = await s.factCount("decision = 'unknown_user'")
      const before = (await s.call('GET', '/v1/leaderboards/users/r3?metric=shares&period=all')).json.score
      const facts = await s.factCount()
      const rebuilds: Promise<void>[] = []
      let sent = 0
      for (let b = 0; b < 24; b++) {
        if (b === 4 || b === 6 || b === 8) rebuilds.push(agg.rebuild(), agg.rebuild())
        const batch = Array.from({ length: 5 }, (_, i) => share('r3', now - 20_000 + b * 10 + i))
        expect((await s.postEvents(key, batch)).status).toBe(202)
        sent += batch.length
        await new Promise((r) => setTimeout(r, 30)) // paced like an app, so counting and rebuilds interleave
      }
      await Promise.all(rebuilds)
      await s.waitForFacts(facts + sent)
      expect(await s.factCount("decision = 'unknown_user'")).toBe(unknown)
      expect((await s.call('GET', '/v1/leaderboards/users/r3?metric=shares&period=all')).json.score).toBe(before + sent)
    })
  })
})

describe('rebuild from facts on a Redis Cluster', () => {
  let c: Stack
  beforeAll(async () => {
    c = await startStack({}, { cluster: true })
    await workload(c, await c.createAppKey())
  })
  afterAll(async () => c?.stop())

  it('deleting every derived key on every master and rebuilding gives back exactly the same state', async () => {
    const live = await dumpState(c)
    expect(Object.keys(live).length).toBeGreaterThan(50)
    // Spread over all three masters (hash tags per user and per province).
    const perMaster = await Promise.all(masters(c.deps.redis).map((m) => m.dbsize()))
    expect(perMaster.filter((n) => n > 0)).toHaveLength(3)
    await Promise.all(masters(c.deps.redis).map((m) => m.flushall()))
    expect(await dumpState(c)).toEqual({})
    await c.service.aggregator!.rebuild()
    expect(await dumpState(c)).toEqual(live)
    expect((await c.call('GET', '/v1/leaderboards/users/r1?metric=shares&period=day')).json.score).toBe(300)
  })
})
