import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBoardReader, encodeCursor, type BoardReader, type BoardRef } from '../core/board-reads.ts'
import { createRedis } from '../core/clients/redis.ts'
import type { StreamEvent } from '../core/events.ts'
import { cacheUsers } from '../core/keys.ts'
import { startRedis, type LocalService } from '../core/local-services.ts'
import { buildRegionTree } from '../core/regions.ts'
import { boardKey, packScore, RULES, unitScope, type BoardScope, type Metric } from '../core/scoring.ts'
import { periodRange, PERIODS, type Period } from '../core/time.ts'
import { freePort } from '../test/stack.ts'
import { createBoardKeys, createBoardWriter, groupByBoard, boardWrites, type BoardWrite } from './boards.ts'
import { applyUserStep, dedupeWindow } from './user-step.ts'

/**
 * The board design against a brute-force recount, on real Redis: random share-backs and reads
 * (ties to the millisecond, late events, redeliveries, a crash between the user step and the board
 * writes, two writers with their own K-th-score caches, a day and a week boundary), then every read
 * of every board of every scope and period (total, every page to the end, every communicator's rank
 * and neighbours) compared with a recount from the events. K is small so that most reads of the
 * gated boards go past their exact top K and through their units; five provinces, so that a
 * national read merges several groups (core/board-group.lua), and pages and ranks both narrower
 * and wider than K, so that a city's or province's gated board sometimes stands in for its units
 * and sometimes cannot.
 */
const tree = buildRegionTree([
  { code: '11', name: 'P1' }, { code: '12', name: 'P2' }, { code: '13', name: 'P3' }, { code: '14', name: 'P4' }, { code: '15', name: 'P5' },
  { code: '1101', name: 'C1' }, { code: '1102', name: 'C2' }, { code: '1201', name: 'C3' }, { code: '1301', name: 'C4' }, { code: '1302', name: 'C5' },
  { code: '1401', name: 'C6' }, { code: '1501', name: 'C7' },
  { code: '110101', name: 'X1' }, { code: '110102', name: 'X2' }, { code: '110201', name: 'X3' }, { code: '120101', name: 'X4' },
  { code: '130101', name: 'X5' }, { code: '130201', name: 'X6' }, { code: '140101', name: 'X7' }, { code: '150101', name: 'X8' }, { code: '150102', name: 'X9' },
  { code: '110101001', name: 'T1' }, { code: '110101002', name: 'T2' }, { code: '110102001', name: 'T3' },
  { code: '110201001', name: 'T4' }, { code: '120101001', name: 'T5' }, { code: '120101002', name: 'T6' },
  { code: '130101001', name: 'T7' }, { code: '130201001', name: 'T8' }, { code: '140101001', name: 'T9' },
  { code: '150101001', name: 'T10' }, { code: '150102001', name: 'T11' },
])
const TOWNS = ['110101001', '110101002', '110102001', '110201001', '120101001', '120101002', '130101001', '130201001', '140101001', '150101001', '150102001']
const GATED = ['11', '12', '13', '14', '15', '1101', '1102', '1201', '1301', '1302', '1401', '1501']
const COUNTIES = ['110101', '110102', '110201', '120101', '130101', '130201', '140101', '150101', '150102']
const K = 4
const win = dedupeWindow(72 * 3600_000, 600_000)

let server: LocalService
let redis: Redis
let dir: string
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kepu-board-reads-'))
  server = await startRedis(dir, await freePort())
  redis = createRedis(server.url)
})
afterAll(async () => {
  await redis?.quit().catch(() => {})
  await server?.stop()
  rmSync(dir, { recursive: true, force: true })
})

function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface U { id: string; region: string; inst: string }

/** The expected board: every member's packed score from a recount of the events in arrival order. */
function recount(users: U[], arrived: StreamEvent[]) {
  const seen = new Set<string>()
  const perDay = new Map<string, number>()
  // (user, period key) → totals
  const totals = new Map<string, { s: number; sr: number; p: number; pr: number; period: Period; startMs: number }>()
  for (const e of arrived) {
    if (seen.has(e.id)) continue
    seen.add(e.id)
    const day = periodRange('day', e.ts).key
    const n = (perDay.get(`${e.user_id}|${day}|${e.type}`) ?? 0) + 1
    perDay.set(`${e.user_id}|${day}|${e.type}`, n)
    const rule = RULES[e.type]
    if (n > rule.limit) continue
    const pts = n <= rule.pointsLimit ? rule.points : 0
    for (const p of PERIODS) {
      const r = periodRange(p, e.ts)
      const k = `${e.user_id}|${r.key}`
      const t = totals.get(k) ?? { s: 0, sr: 0, p: 0, pr: 0, period: p, startMs: r.startMs }
      if (rule.shares) (t.s += 1), (t.sr = Math.max(t.sr, e.ts))
      if (pts) (t.p += pts), (t.pr = Math.max(t.pr, e.ts))
      totals.set(k, t)
    }
  }
  const byUser = new Map(users.map((u) => [u.id, u]))
  return (metric: Metric, inScope: (u: U) => boolean, periodKey: string): [number, string][] => {
    const out: [number, string][] = []
    for (const [k, t] of totals) {
      const [id, pk] = k.split('|')
      if (pk !== periodKey || !inScope(byUser.get(id)!)) continue
      const [count, at] = metric === 'shares' ? [t.s, t.sr] : [t.p, t.pr]
      if (count > 0) out.push([packScore(t.period, t.startMs, count, at), id])
    }
    return out.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : 1))
  }
}

async function run(seed: number) {
  await redis.flushall()
  const rand = rng(seed)
  const pick = <T,>(xs: T[]) => xs[Math.floor(rand() * xs.length)]
  // Most in towns; some registered at a county, a city or a province code (own boards). Ids of
  // mixed case and punctuation: equal scores order by member bytes, in Redis, Lua and here alike.
  const users: U[] = Array.from({ length: 48 }, (_, i) => ({
    id: `${['u', 'U', 'u_', 'u-', 'uA'][i % 5]}${String(i).padStart(2, '0')}`,
    region: i < 40 ? pick(TOWNS) : ['110102', '1101', '1101', '12', '1102', '110201', '13', '1401'][i - 40],
    inst: rand() < 0.5 ? pick(['i1', 'i2', 'i3']) : '',
  }))
  await cacheUsers(redis, users.map((u) => ({ id: u.id, phone: '', real_name: u.id, region_code: u.region, kind: '个人用户', institution_id: u.inst, certified_at: 0, ix: 1, created_at: 0, updated_at: 0 })))

  // Monday 2026-11-30 09:00 Shanghai: events from Saturday to Monday cross a day and a week boundary.
  const now = Date.UTC(2026, 10, 30, 1, 0, 0)
  const stamps = Array.from({ length: 12 }, () => now - Math.floor(rand() * 50 * 3600_000)) // shared ms: ties
  const events: StreamEvent[] = Array.from({ length: 500 }, (_, i) => {
    const u = rand() < 0.3 ? pick(users.slice(0, 5)) : pick(users) // a heavy tail
    const ts = rand() < 0.4 ? pick(stamps) : now - Math.floor(rand() * 50 * 3600_000)
    return { kind: 'event', id: `e${seed}-${i}`, type: rand() < 0.7 ? 'share_back' : 'read', user_id: u.id, ts, client_ts: ts, sent_at: null, received_at: now, app_id: 't', content_id: 'c', channel: 'wechat', viewer: '' } as StreamEvent
  })

  const writers = [createBoardWriter({ topK: K, refreshMs: 0 }), createBoardWriter({ topK: K, refreshMs: 0 })]
  const bk = createBoardKeys(tree)
  const arrived: StreamEvent[] = []
  const crashed: [StreamEvent, number][] = []
  let seq = 1
  for (let i = 0; i < events.length; ) {
    const batch = events.slice(i, (i += 1 + Math.floor(rand() * 20)))
    const ws: BoardWrite[] = []
    for (const e of batch) {
      const s = seq++
      arrived.push(e)
      const d = await applyUserStep(redis, e, s, win)
      if (rand() < 0.05) {
        crashed.push([e, s]) // the process dies after the step, before the board writes
        continue
      }
      ws.push(...boardWrites(e.user_id, d, bk))
      if (rand() < 0.05) ws.push(...boardWrites(e.user_id, await applyUserStep(redis, e, s, win), bk)) // a redelivery
    }
    if (rand() < 0.1 && i > 0) {
      // A resend of an earlier event under a new sequence: a duplicate.
      const e = pick(arrived)
      ws.push(...boardWrites(e.user_id, await applyUserStep(redis, e, seq++, win), bk))
    }
    await pick(writers)(redis, groupByBoard(ws))
    if (crashed.length && rand() < 0.3) {
      // Redelivered after the restart: the step repeats its decision and the writes go up again.
      const redo: BoardWrite[] = []
      for (const [e, s] of crashed.splice(0)) redo.push(...boardWrites(e.user_id, await applyUserStep(redis, e, s, win), bk))
      await pick(writers)(redis, redo)
    }
  }
  for (const [e, s] of crashed) await pick(writers)(redis, boardWrites(e.user_id, await applyUserStep(redis, e, s, win), bk))

  const expected = recount(users, arrived)
  const reader = createBoardReader({ redis, tree, topK: K })
  const askOne = createBoardReader({ redis, tree, topK: K, askOne: true })
  const lineage = (u: U) => tree.lineage(u.region).map((r) => r.code)
  const scopes: [BoardScope, (u: U) => boolean][] = [
    [{ kind: 'national' }, () => true],
    ...[...GATED, ...COUNTIES, ...TOWNS].map(
      (code) => [{ kind: 'region', code }, (u: U) => lineage(u).includes(code)] as [BoardScope, (u: U) => boolean],
    ),
    ...['i1', 'i2', 'i3'].map((id) => [{ kind: 'institution', id }, (u: U) => u.inst === id] as [BoardScope, (u: U) => boolean]),
  ]
  const periodKeys = [...new Set(events.flatMap((e) => PERIODS.map((p) => periodRange(p, e.ts).key)))]
  let deep = 0
  for (const [scope, inScope] of scopes)
    for (const pk of periodKeys)
      for (const metric of ['shares', 'points'] as Metric[]) {
        const ref: BoardRef = reader.ref(metric, scope, pk)
        const want = expected(metric, inScope, pk)
        const label = `${metric} ${JSON.stringify(scope)} ${pk}`
        expect(await reader.total(ref), label).toBe(want.length)
        // Every page to the end, three at a time and ten at a time (more than K: no gated board
        // answers for its children), then one page of 7 from the top.
        // On the national board also with every group asked for one entry at first (the second round).
        for (const [size, r] of [[3, reader], [10, reader], ...(scope.kind === 'national' ? [[3, askOne], [10, askOne]] : [])] as [number, BoardReader][]) {
          const pages: [number, string, number][] = []
          let after: string | undefined
          for (;;) {
            const { flat, firstRank } = await r.page(ref, size, after)
            for (let i = 0; i < flat.length; i += 2) pages.push([firstRank + i / 2, flat[i], Number(flat[i + 1])])
            if (flat.length < 2 * size) break
            after = encodeCursor(Number(flat.at(-1)), flat.at(-2)!, ref.key)
          }
          expect(pages, `${label} by ${size}`).toEqual(want.map(([s, m], i) => [i + 1, m, s]))
        }
        const top7 = await reader.page(ref, 7)
        expect(top7.flat, label).toEqual(want.slice(0, 7).flatMap(([s, m]) => [m, String(s)]))
        // Rank and two neighbours each side of every communicator (on gated boards also none and
        // five, more than K allows inside its first K); none for those not on the board.
        const gated = scope.kind === 'national' || (scope.kind === 'region' && scope.code.length <= 4)
        for (const u of users) {
          const unit = scope.kind === 'institution' ? scope : scope.kind === 'national' || inScope(u) ? unitScope(lineage(u)) : null
          for (const n of gated ? [2, 0, 5] : [2]) {
            const got = await reader.around(ref, u.id, unit, n)
            // A complete board is also read in one call (what the route does), with its total.
            const one = gated ? null : await reader.aroundComplete(ref, u.id, n)
            if (one) expect(one, `${label} ${u.id} in one call`).toEqual({ ...got, total: want.length })
            const at = want.findIndex(([, m]) => m === u.id)
            if (at < 0) {
              expect(got.rank, `${label} ${u.id}`).toBeNull()
              continue
            }
            if (at + n >= K) deep++
            const from = Math.max(0, at - n)
            expect([got.rank, got.firstRank, got.flat], `${label} ${u.id} ±${n}`).toEqual([at + 1, from + 1, want.slice(from, at + n + 1).flatMap(([s, m]) => [m, String(s)])])
          }
        }
      }
  // The gated boards were read past their top K (the unit merge), and they hold no more than K.
  expect(deep).toBeGreaterThan(100)
  for (const k of await redis.keys('g:*')) expect(await redis.zcard(k), k).toBeLessThanOrEqual(K)
}

describe('board keys', () => {
  it('region boards (town to province) and own boards carry their province hash tag; institution and national boards none', () => {
    // A group script reads a province's units and gated boards at once, and one script writes a
    // batch's boards of a province: on a cluster they must share a slot.
    const tag = (key: string) => /\{([^}]*)\}/.exec(key)?.[1] ?? null
    for (const m of ['shares', 'points'] as Metric[]) {
      for (const code of [...GATED, ...COUNTIES, ...TOWNS]) expect(tag(boardKey(m, { kind: 'region', code }, 'a'))).toBe(code.slice(0, 2))
      for (const code of ['11', '1101']) expect(tag(boardKey(m, { kind: 'own', code }, 'd20261130'))).toBe(code.slice(0, 2))
      for (const scope of [{ kind: 'national' }, { kind: 'institution', id: 'i1' }] as BoardScope[]) expect(tag(boardKey(m, scope, 'a'))).toBeNull()
    }
    expect(boardKey('shares', { kind: 'region', code: '430623' }, 'd20260615')).toBe('b:s:{43}r430623:d20260615')
    expect(boardKey('points', { kind: 'region', code: '4306' }, 'a')).toBe('g:p:{43}r4306:a')
  })
})

describe('boards: every read equals a brute-force recount from the events', () => {
  for (const seed of [1, 2, 3]) it(`seed ${seed}`, () => run(seed), 120_000)
})
