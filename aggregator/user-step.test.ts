import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { EventType, StreamEvent } from '../core/events.ts'
import { keys } from '../core/keys.ts'
import { PERIOD_TTL_S } from '../core/scoring.ts'
import { compactDay, DAY_MS, PERIODS, periodRange } from '../core/time.ts'
import { startStepRedis, type StepRedis } from '../test/redis.ts'
import { applyUserStep, dedupeWindow, userStepArgs } from './user-step.ts'

let r: StepRedis
let redis: Redis
const win = dedupeWindow(72 * 3600_000, 600_000)
const now = Date.now()

beforeAll(async () => {
  r = await startStepRedis('user-step', [{ id: 'T1' }, { id: 'T2' }, { id: 'F1' }])
  redis = r.redis
})
afterAll(async () => r?.stop())

const ev = (user: string, type: EventType, ts: number): StreamEvent => ({
  kind: 'event', id: randomUUID(), type, user_id: user, ts, client_ts: ts, sent_at: null, received_at: now, app_id: 't', content_id: type === 'signin' ? '' : 'c', channel: '', viewer: '',
})

/** TTL in seconds of each of the user's period hashes for an event at ts (-1 = none, -2 = no key). */
async function periodTtls(user: string, ts: number) {
  const out: Record<string, number> = {}
  for (const p of PERIODS) out[p] = await redis.ttl(keys.period(user, periodRange(p, ts).key))
  return out
}

describe('the per-user step', () => {
  it('gives every period hash its TTL when it first gets totals, and all-time none; later events keep it', async () => {
    const ts = now - 60_000
    const first = await applyUserStep(redis, ev('T1', 'share_back', ts), 1, win)
    expect(first).toMatchObject({ status: 'new', decision: 'counted', points: 1 })
    const expected = (ttls: Record<string, number>) => {
      for (const p of PERIODS) {
        const want = PERIOD_TTL_S[p]
        if (want) expect(ttls[p], p).toBeGreaterThan(want - 60)
        if (want) expect(ttls[p], p).toBeLessThanOrEqual(want)
        else expect(ttls[p], p).toBe(-1)
      }
    }
    expected(await periodTtls('T1', ts))
    // The dedupe bucket of the receive day keeps the window.
    const bucket = await redis.ttl(keys.dedupe('T1', compactDay(now)))
    expect(bucket).toBeGreaterThan(win.ttlSeconds - 60)
    // More events of all kinds (points, a sign-in streak, a read): the TTLs stay.
    let seq = 2
    for (const type of ['share_back', 'signin', 'read', 'share_back'] as EventType[]) {
      const d = await applyUserStep(redis, ev('T1', type, ts + seq), seq++, win)
      expect(d.decision, type).toBe('counted')
    }
    expected(await periodTtls('T1', ts))
    // A late event (yesterday, still inside the accepted window) creates yesterday's day hash: with its TTL.
    const late = now - DAY_MS
    await applyUserStep(redis, ev('T2', 'signin', late), seq++, win)
    expected(await periodTtls('T2', late))
  })

  it('answers points and streak as the rules give them, and a redelivery repeats them', async () => {
    // Sign-ins on three consecutive days: 2, 3, 4 points (streak 1, 2, 3).
    let seq = 100
    const got: [number, number][] = []
    for (const daysAgo of [2, 1, 0]) {
      const d = await applyUserStep(redis, ev('F1', 'signin', now - daysAgo * DAY_MS - 1000), seq++, win)
      got.push([d.points, d.streak])
    }
    expect(got).toEqual([[2, 1], [3, 2], [4, 3]])
    const e = ev('F1', 'share_back', now - 500)
    const d1 = await applyUserStep(redis, e, 200, win)
    const d2 = await applyUserStep(redis, e, 200, win)
    expect(d1).toMatchObject({ status: 'new', points: 1 })
    expect(d2).toMatchObject({ status: 'repeat', decision: 'counted', points: 1 })
    expect(d2.totals).toEqual(d1.totals)
    expect(d1.totals.find((t) => t.period === 'all')?.points?.count).toBe(10)
  })

  it('stores the fingerprint sent as hex as its 8 bytes, for every byte value', async () => {
    const e = ev('F1', 'read', now - 1000)
    const args = userStepArgs(e, 300, win)
    const at = args.indexOf(args.find((a, i) => i > Number(args[0]) && typeof a === 'string' && /^[0-9a-f]{16}$/.test(a))!)
    expect(at).toBe(Number(args[0]) + 1) // ARGV[1]: right after numkeys and the keys
    const hexes = ['0000000000000000', 'ffffffffffffffff', '00000000ffffffff', 'ffffffff00000000', '80000000000000ff', '0123456789abcdef', 'fedcba9876543210']
    let seq = 400
    for (const hex of hexes) {
      const a = [...args]
      a[at] = hex
      a[at + 1] = String(seq++)
      await redis.userStep(...a)
      expect(await redis.hexists(keys.dedupe('F1', compactDay(now)), Buffer.from(hex, 'hex')), hex).toBe(1)
    }
    expect(await redis.hlen(keys.dedupe('F1', compactDay(now)))).toBeGreaterThanOrEqual(hexes.length)
  })
})
