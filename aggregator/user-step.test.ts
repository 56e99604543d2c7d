import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { EventType, StreamEvent } from '../core/events.ts'
import { counterField, keys, streakField } from '../core/keys.ts'
import { compactDay, DAY_MS, PERIODS, periodRange } from '../core/time.ts'
import { startStepRedis, type StepRedis } from '../test/redis.ts'
import { applyUserStep, applyUserSteps, dedupeExpireAt, dedupeGen, dedupeWindow, fingerprintHex, sendUserSteps, shanghaiDayNo, userStepsCall } from './user-step.ts'

let r: StepRedis
let redis: Redis
const win = dedupeWindow(72 * 3600_000, 600_000)
const now = Date.now()

beforeAll(async () => {
  r = await startStepRedis('user-step', [{ id: 'T1' }, { id: 'T2' }, { id: 'F1' }, { id: 'S1' }, { id: 'S2' }, { id: 'M1' }, { id: 'M2' }])
  redis = r.redis
})
afterAll(async () => r?.stop())

const ev = (user: string, type: EventType, ts: number): StreamEvent => ({
  kind: 'event', id: randomUUID(), type, user_id: user, ts, client_ts: ts, sent_at: null, received_at: now, app_id: 't', content_id: type === 'signin' ? '' : 'c', channel: '', viewer: '',
})

describe('the per-user step', () => {
  it('keeps a communicator in one hash: totals of every period of the event, counters, streak; dedupe apart, expiring', async () => {
    const ts = now - 60_000
    const first = await applyUserStep(redis, ev('T1', 'share_back', ts), 1, win)
    expect(first).toMatchObject({ status: 'new', decision: 'counted', points: 1 })
    const h = await redis.hgetall(keys.user('T1'))
    for (const p of PERIODS) expect(h[periodRange(p, ts).key], p).toBe(`1,${ts},1,${ts}`)
    expect(h[counterField(compactDay(ts), 'share_back')]).toBe('1')
    expect(h.r).toBe('430623110') // the import's fields are the same hash's
    // The hash has no TTL (its old fields are pruned instead); the dedupe generation key has one.
    expect(await redis.ttl(keys.user('T1'))).toBe(-1)
    const gen = dedupeGen(now, win)
    const ttl = await redis.ttl(keys.dedupe('T1', gen))
    expect(ttl).toBeGreaterThan(dedupeExpireAt(gen, win) - Date.now() / 1000 - 60)
    // Covering the age window: a generation is at least max age + max future long.
    expect(win.genDays * DAY_MS).toBeGreaterThanOrEqual(72 * 3600_000 + 600_000)
    // A late event (yesterday, inside the accepted window) adds yesterday's day field.
    const late = now - DAY_MS
    let seq = 2
    await applyUserStep(redis, ev('T2', 'signin', late), seq++, win)
    expect(await redis.hget(keys.user('T2'), periodRange('day', late).key)).toBe(`,,2,${late}`)
    expect(await redis.hget(keys.user('T2'), streakField(compactDay(late)))).toBe('1')
  })

  it('drops, once a receive day, the fields of periods no new event can reach, and keeps the rest', async () => {
    const old = now - 40 * DAY_MS
    const yesterday = now - DAY_MS
    const stale = ['day', 'week', 'month'].map((p) => periodRange(p as 'day', old).key)
    const keep = periodRange('day', yesterday).key
    await redis.hset(keys.user('T1'), ...stale.flatMap((k) => [k, '5,1,5,1']), counterField(compactDay(old), 'read'), '3', streakField(compactDay(old)), '7', keep, '1,2,3,4', 'z', '1')
    await applyUserStep(redis, ev('T1', 'read', now - 1000), 50, win)
    const h = await redis.hgetall(keys.user('T1'))
    for (const k of stale) expect(h[k], k).toBeUndefined()
    expect(h[counterField(compactDay(old), 'read')]).toBeUndefined()
    expect(h[streakField(compactDay(old))]).toBeUndefined()
    expect(h[keep]).toBe('1,2,3,4')
    expect(h.a).toBeDefined()
    expect(h.n).toBe('T1')
    expect(h.z).toBe(String(shanghaiDayNo(now)))
    // Pruned today: fields written again are left alone until the next receive day.
    await redis.hset(keys.user('T1'), stale[0], '5,1,5,1')
    await applyUserStep(redis, ev('T1', 'read', now - 900), 51, win)
    expect(await redis.hget(keys.user('T1'), stale[0])).toBe('5,1,5,1')
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
    const call = userStepsCall([{ ev: e, seq: 300 }], win)
    const at = call.args.indexOf(fingerprintHex(e.id))
    expect(at).toBeGreaterThan(3)
    const hexes = ['0000000000000000', 'ffffffffffffffff', '00000000ffffffff', 'ffffffff00000000', '80000000000000ff', '0123456789abcdef', 'fedcba9876543210']
    let seq = 400
    for (const hex of hexes) {
      const args = [...call.args]
      args[at] = hex
      args[at + 1] = String(seq++)
      await sendUserSteps(redis, { keys: call.keys, args })
      expect(await redis.hexists(keys.dedupe('F1', dedupeGen(now, win)), Buffer.from(hex, 'hex')), hex).toBe(1)
    }
    expect(await redis.hlen(keys.dedupe('F1', dedupeGen(now, win)))).toBeGreaterThanOrEqual(hexes.length)
  })

  it('decides a run of events in one call exactly as one call each, in the order given', async () => {
    // The same events for two pairs of communicators: S* one call per event, M* all in one call.
    // Repeats of a user, a resend (dup), a redelivery at the same place (repeat), caps, sign-in
    // streaks across days and late events, in one run.
    const types: EventType[] = ['share_back', 'read', 'signin', 'share_view', 'login']
    const base = Array.from({ length: 60 }, (_, i) => ({ u: i % 3 ? '1' : '2', type: types[i % 5], ts: now - ((i * 7919) % 3) * DAY_MS - i * 1000, id: `id${i}`, place: 900 + i }))
    const resent = (i: number) => ({ ...base[i], place: 2000 + i }) // the same event under a new place: dup
    const redelivered = (i: number) => base[i] // the same event at the same place: repeat
    const plan = [...base.slice(0, 30), ...[0, 1, 2, 3, 4].map(resent), ...[5, 6, 7, 8, 9].map(redelivered), ...base.slice(30), ...[35, 36, 37].map(redelivered)]
    const events = (who: string) => plan.map((p) => ({ ...ev(who + p.u, p.type, p.ts), id: p.id }))
    const places = plan.map((p) => p.place)
    const single: unknown[] = []
    for (const [i, e] of events('S').entries()) single.push(await applyUserStep(redis, e, places[i], win))
    const batched = await applyUserSteps(redis, events('M').map((e, i) => ({ ev: e, seq: places[i] })), win)
    expect(batched).toEqual(single)
    expect(new Set(batched.map((d) => d.status))).toEqual(new Set(['new', 'dup', 'repeat']))
    expect(batched.some((d) => d.decision === 'capped')).toBe(true)
    for (const u of ['1', '2']) {
      const { n: _n, ...s } = await redis.hgetall(keys.user('S' + u))
      const { n: _m, ...m } = await redis.hgetall(keys.user('M' + u))
      expect(m).toEqual(s)
    }
  })
})
