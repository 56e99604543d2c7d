import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Redis, Result } from 'ioredis'
import type { StreamEvent } from '../core/events.ts'
import { counterField, keys, PRUNE_DAYS, streakField } from '../core/keys.ts'
import { RULES, SIGNIN_MAX_BONUS } from '../core/scoring.ts'
import { compactDay, DAY_MS, PERIODS, periodRange, SHANGHAI_OFFSET_MS, type Period } from '../core/time.ts'

const SCRIPT = readFileSync(new URL('./user-step.lua', import.meta.url), 'utf8')

export type DecisionCode = 'counted' | 'capped' | 'unknown_user' | 'uncertified' | 'duplicate'
const CODES: Record<string, DecisionCode> = { c: 'counted', x: 'capped', u: 'unknown_user', n: 'uncertified' }

export interface PeriodTotals {
  period: Period
  key: string
  startMs: number
  shares: { count: number; reachedAt: number } | null
  points: { count: number; reachedAt: number } | null
}

/** A campaign the event may count in (its window holds the event, its cutoff is after the receipt). */
export interface CampaignArg {
  id: string
  /** Region prefix ('' = any region). */
  prefix: string
  /** Institution ('' = any). */
  institution: string
  /** While the campaign's backfill is pending, live feeds mark the event in the user's campaign hash. */
  pending: boolean
  /** Expiry of the user's campaign hash (epoch s). */
  expireAtS: number
}

export interface CampaignTotals {
  id: string
  shares: { count: number; reachedAt: number } | null
  points: { count: number; reachedAt: number } | null
}

export interface Decision {
  /** new: first time; repeat: a redelivery of the same message (same decision, no new effect). */
  status: 'new' | 'repeat' | 'dup'
  decision: DecisionCode
  points: number
  shares: number
  streak: number
  region_code: string
  institution_id: string
  /** The communicator's dense numeric index (0 when unknown), for the KPI rollups' bitmaps. */
  user_ix: number
  /** The user's absolute totals after this event, for the board writes (counted events only). */
  totals: PeriodTotals[]
  /** The user's absolute totals in the campaigns that hold her (counted events only). */
  campaigns: CampaignTotals[]
}

/**
 * Dedupe entries are kept by receive day in generations of `genDays` Shanghai days; a lookup checks
 * the current generation and the one before, which together reach at least genDays back: the widest
 * gap between two acceptances of one event (max age + max future). A generation's key expires at the
 * end of the generation after it (plus a day), when no lookup reaches it any more.
 */
export interface DedupeWindow {
  genDays: number
}

export function dedupeWindow(maxAgeMs: number, maxFutureMs: number): DedupeWindow {
  return { genDays: Math.max(1, Math.ceil((maxAgeMs + maxFutureMs) / DAY_MS)) }
}

/** The Shanghai day number of an instant (days since 1970-01-01 in UTC+8). */
export const shanghaiDayNo = (ms: number) => Math.floor((ms + SHANGHAI_OFFSET_MS) / DAY_MS)
/** The dedupe generation of a receive time. */
export const dedupeGen = (receivedAt: number, win: DedupeWindow) => Math.floor(shanghaiDayNo(receivedAt) / win.genDays)
/** When a generation's key may go (epoch seconds). */
export const dedupeExpireAt = (gen: number, win: DedupeWindow) => ((gen + 2) * win.genDays + 1) * 86400 - SHANGHAI_OFFSET_MS / 1000

/** 64-bit fingerprint of an event id as 16 hex digits, as the user step takes it. */
export function fingerprintHex(id: string): string {
  return createHash('sha1').update(id).digest('hex').slice(0, 16)
}

/** The same fingerprint as its 8 bytes: the dedupe field the user step stores (instead of the id). */
export function fingerprint(id: string): Buffer {
  return Buffer.from(fingerprintHex(id), 'hex')
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    userStep(...args: (string | number)[]): Result<string, Context>
  }
}

export function defineUserStep(redis: Redis): void {
  if (!(redis as unknown as { userStep?: unknown }).userStep) redis.defineCommand('userStep', { lua: SCRIPT })
}

/** Keys and arguments of the per-user step, exported for the benchmark's raw ceiling. */
/** An event's place in the stream: its message's sequence, and its index when past the first item of a batch. */
export const placeOf = (seq: number, idx = 0) => (idx ? `${seq}.${idx}` : String(seq))

/** The fields of periods a communicator's hash drops on a receive day (see core/keys.ts): below these. */
// periodRange caches its ranges per day: nothing to keep here.
function pruneCuts(receivedAt: number): string[] {
  const cut = receivedAt - PRUNE_DAYS * DAY_MS
  return (['day', 'week', 'month', 'year'] as Period[]).map((p) => periodRange(p, cut).key)
}

export function userStepArgs(ev: StreamEvent, seq: number, win: DedupeWindow, campaigns: CampaignArg[] = [], idx = 0): (string | number)[] {
  const ranges = PERIODS.map((p) => periodRange(p, ev.ts))
  const day = compactDay(ev.ts)
  const gen = dedupeGen(ev.received_at, win)
  const today = shanghaiDayNo(ev.received_at)
  const k: string[] = [keys.user(ev.user_id), keys.dedupe(ev.user_id, gen), keys.dedupe(ev.user_id, gen - 1)]
  for (const c of campaigns) k.push(keys.campaignUser(ev.user_id, c.id))
  const rule = RULES[ev.type]
  return [
    k.length,
    ...k,
    fingerprintHex(ev.id),
    placeOf(seq, idx),
    ev.type,
    ev.ts,
    rule.limit,
    rule.pointsLimit,
    rule.points,
    rule.shares,
    ev.type === 'signin' ? '1' : '0',
    SIGNIN_MAX_BONUS,
    dedupeExpireAt(gen, win),
    ...ranges.map((r) => r.key),
    counterField(day, ev.type),
    streakField(day),
    streakField(compactDay(ranges[0].startMs - DAY_MS)),
    String(today),
    ...pruneCuts(ev.received_at),
    campaigns.length,
    ...campaigns.flatMap((c) => [c.prefix, c.institution, c.pending ? '1' : '0', c.expireAtS]),
  ]
}

export async function applyUserStep(redis: Redis, ev: StreamEvent, seq: number, win: DedupeWindow, campaigns: CampaignArg[] = [], idx = 0): Promise<Decision> {
  const r = await redis.userStep(...userStepArgs(ev, seq, win, campaigns, idx))
  return parseReply(r.split(','), ev, campaigns)
}

const total = (count: string, reached: string) => (count ? { count: Number(count), reachedAt: Number(reached) } : null)

function parseReply(r: string[], ev: StreamEvent, campaigns: CampaignArg[]): Decision {
  const [status, code, pts, streak, region, inst, ix] = r
  const decision: DecisionCode = status === 'dup' ? 'duplicate' : CODES[code]
  const counted = decision === 'counted'
  const totals: PeriodTotals[] = []
  if (counted) {
    PERIODS.forEach((p, i) => {
      const [s, sr, pp, pr] = r.slice(7 + i * 4, 11 + i * 4)
      const range = periodRange(p, ev.ts)
      totals.push({
        period: p,
        key: range.key,
        startMs: range.startMs,
        shares: s ? { count: Number(s), reachedAt: Number(sr) } : null,
        points: pp ? { count: Number(pp), reachedAt: Number(pr) } : null,
      })
    })
  }
  const camp: CampaignTotals[] = []
  if (counted) {
    campaigns.forEach((c, j) => {
      const [s, sr, p, pr] = r.slice(27 + j * 4, 31 + j * 4)
      if (s || p) camp.push({ id: c.id, shares: total(s, sr), points: total(p, pr) })
    })
  }
  return {
    status: status as Decision['status'],
    decision,
    points: counted ? Number(pts) : 0,
    shares: counted ? RULES[ev.type].shares : 0,
    streak: counted ? Number(streak) : 0,
    region_code: region,
    institution_id: inst,
    user_ix: Number(ix) || 0,
    totals,
    campaigns: camp,
  }
}
