import type { EventType } from './events.ts'
import { periodRange, PERIODS, type Period, type PeriodRange } from './time.ts'

/**
 * Counting rules (PRODUCT.md "Counting and points"). `limit` events of a type count per user per
 * Shanghai day; of those, the first `pointsLimit` earn `points` each; share-backs add to share
 * volume (传播量). Every fact records RULE_VERSION.
 */
export interface Rule {
  limit: number
  pointsLimit: number
  points: number
  shares: 0 | 1
}
export const RULE_VERSION = 1
export const RULES: Record<EventType, Rule> = {
  share_back: { limit: 300, pointsLimit: 20, points: 1, shares: 1 },
  share_view: { limit: 20, pointsLimit: 20, points: 1, shares: 0 },
  read: { limit: 10, pointsLimit: 10, points: 1, shares: 0 },
  signin: { limit: 1, pointsLimit: 1, points: 2, shares: 0 }, // +1 per consecutive day, up to +5
  login: { limit: 1, pointsLimit: 1, points: 1, shares: 0 },
  post: { limit: 3, pointsLimit: 3, points: 3, shares: 0 },
  comment: { limit: 10, pointsLimit: 10, points: 1, shares: 0 },
  like: { limit: 10, pointsLimit: 10, points: 1, shares: 0 },
}
export const SIGNIN_MAX_BONUS = 5

export type Metric = 'shares' | 'points'
export const METRICS: readonly Metric[] = ['shares', 'points']
const METRIC_TAG: Record<Metric, string> = { shares: 's', points: 'p' }

/**
 * Board scores pack (count, reached_at) into one double so that a board write is an idempotent,
 * order-free `ZADD … LT` of the user's absolute score: stored = −(count·R + (R−1−slot)), where slot
 * is reached_at's offset from the period start in `res` ms. More counted wins; at equal count the
 * earlier reached_at wins; equal stored scores fall back to member order (user id ascending).
 * Bounded periods use millisecond slots (R = 2^35 ≥ 366 days, counts < 2^18); 'all' uses
 * one-second slots from 2020-01-01 (R = 2^32, counts < 2^21). All values stay below 2^53: exact.
 */
interface Packing { R: number; res: number; maxCount: number }
const BOUNDED: Packing = { R: 2 ** 35, res: 1, maxCount: 2 ** 18 - 1 }
const ALL: Packing = { R: 2 ** 32, res: 1000, maxCount: 2 ** 21 - 1 }
const packing = (p: Period) => (p === 'all' ? ALL : BOUNDED)

export function packScore(period: Period, startMs: number, count: number, reachedAt: number): number {
  const { R, res, maxCount } = packing(period)
  const slot = Math.min(R - 1, Math.max(0, Math.floor((reachedAt - startMs) / res)))
  return -(Math.min(count, maxCount) * R + (R - 1 - slot))
}

export function unpackScore(period: Period, startMs: number, stored: number): { count: number; reachedAt: number } {
  const { R, res } = packing(period)
  const packed = -stored
  const count = Math.floor(packed / R)
  const slot = R - 1 - (packed - count * R)
  return { count, reachedAt: startMs + slot * res }
}

/**
 * Scope of a board: national, a region (any level), an institution, or the communicators registered
 * at a province or city code itself ("own": they belong to no county).
 */
export type BoardScope = { kind: 'national' } | { kind: 'region'; code: string } | { kind: 'institution'; id: string } | { kind: 'own'; code: string }

export function scopeTag(s: BoardScope): string {
  return s.kind === 'national' ? 'n' : s.kind === 'region' ? `r${s.code}` : s.kind === 'own' ? `o${s.code}` : `i${s.id}`
}

/**
 * Which boards hold every member, which only who can be in their top K, and which are not stored
 * (docs/boards.md). Town, county, institution and "own" boards are complete (b:…): every counted
 * communicator, her exact score. Province and national boards are gated (g:…): a write goes up only
 * when it can be in the top K, so their first K entries are exactly the top K; the rest is read by
 * merging their units, the complete boards that partition them (counties and own boards). City
 * boards are virtual: never written, always read by merging their units (≈ 10 counties), so a
 * counted event writes 2 × 5 fewer boards. `isGated` is true for every board that is not one
 * complete sorted set (gated or virtual).
 */
export const isGated = (s: BoardScope): boolean => s.kind === 'national' || (s.kind === 'region' && s.code.length <= 4)

/** A city board: read from its units only (see isGated). */
export const isVirtual = (s: BoardScope): boolean => s.kind === 'region' && s.code.length === 4

/**
 * The Redis Cluster hash tag of a board: county, city and province boards and own boards carry their
 * province's (`{43}`), so that one script can read every unit of a province, and the city and
 * province gated boards above them, on one slot (core/board-group.lua). Town boards carry it too, so
 * that one script per province writes a batch's boards of that province (aggregator/boards.ts):
 * a province's board writes land on one node of a cluster. Institution and national boards carry
 * none: they spread over the slots.
 */
export function slotTag(s: BoardScope): string {
  return s.kind === 'own' || s.kind === 'region' ? `{${s.code.slice(0, 2)}}` : ''
}

/** `b:s:{43}r430623:d20260615` (complete), `g:p:{43}r4306:a`, `g:s:n:w20260615` (gated), `b:s:{43}r430623110:a` (town). */
export function boardKey(metric: Metric, scope: BoardScope, periodKey: string): string {
  return `${isGated(scope) ? 'g' : 'b'}:${METRIC_TAG[metric]}:${slotTag(scope)}${scopeTag(scope)}:${periodKey}`
}

/** How long a board or a user's period totals are kept in Redis after their period starts. */
export const PERIOD_TTL_S: Record<Period, number | null> = {
  day: 40 * 86400,
  week: 120 * 86400,
  month: 400 * 86400,
  year: 800 * 86400,
  all: null,
}

/** The five period ranges an event at `ts` falls into. */
export function periodsOf(ts: number): PeriodRange[] {
  return PERIODS.map((p) => periodRange(p, ts))
}

/**
 * Every board scope an event touches: its region's lineage (town → province), national, institution,
 * and, for a communicator registered at a province or city code, that code's own board (her unit).
 */
export function scopesOf(lineage: string[], institutionId: string): BoardScope[] {
  const out: BoardScope[] = lineage.map((code) => ({ kind: 'region', code }) as BoardScope)
  if (lineage.length && lineage[0].length <= 4) out.push({ kind: 'own', code: lineage[0] })
  out.push({ kind: 'national' })
  if (institutionId) out.push({ kind: 'institution', id: institutionId })
  return out
}

/** The complete board that holds a communicator registered at `lineage[0]` inside every gated board above her. */
export function unitScope(lineage: string[]): BoardScope {
  const county = lineage.find((c) => c.length === 6)
  return county ? { kind: 'region', code: county } : lineage[0]?.length === 9 ? { kind: 'region', code: lineage[0] } : { kind: 'own', code: lineage[0] ?? '' }
}

/** Campaign boards pack like a year (ms slots from the start) or, for windows over 366 days, like 'all'. */
const campaignPacking = (startsAt: number, endsAt: number): Period => (endsAt - startsAt <= 366 * 86_400_000 ? 'year' : 'all')
export function packCampaignScore(c: { starts_at: number; ends_at: number }, count: number, reachedAt: number): number {
  return packScore(campaignPacking(c.starts_at, c.ends_at), c.starts_at, count, reachedAt)
}
export function unpackCampaignScore(c: { starts_at: number; ends_at: number }, stored: number): { count: number; reachedAt: number } {
  return unpackScore(campaignPacking(c.starts_at, c.ends_at), c.starts_at, stored)
}

/** How many entries a gated board keeps exact (BOARD_TOP_K): the top pages every reader asks for. */
export const DEFAULT_TOP_K = 1000
