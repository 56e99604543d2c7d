import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import calculateSlot from 'cluster-key-slot'
import type { Redis } from 'ioredis'
import { evalFlat, isCluster } from '../core/clients/redis.ts'
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

/** Events per script call: bounds Redis' time inside one call (~60 µs an event) to a few milliseconds. */
export const STEPS_PER_CALL = 32

const stepScript = { lua: SCRIPT, sha: createHash('sha1').update(SCRIPT).digest('hex') }

/** One event for the step: its place in the stream (message sequence, index inside it) and its candidate campaigns. */
export interface StepInput {
  ev: StreamEvent
  seq: number
  idx?: number
  campaigns?: CampaignArg[]
}

/** An event's place in the stream: its message's sequence, and its index when past the first item of a batch. */
export const placeOf = (seq: number, idx = 0) => (idx ? `${seq}.${idx}` : String(seq))

/** The fields of periods a communicator's hash drops on a receive day (see core/keys.ts): below these. */
// periodRange caches its ranges per day: nothing to keep here.
function pruneCuts(receivedAt: number): string[] {
  const cut = receivedAt - PRUNE_DAYS * DAY_MS
  return (['day', 'week', 'month', 'year'] as Period[]).map((p) => periodRange(p, cut).key)
}

type Ranges = ReturnType<typeof periodRange>[]

/**
 * Keys and arguments of one script call for `steps` (their keys in one slot on a Cluster), in the
 * layout user-step.lua describes; and the period ranges of each event, for reading the replies.
 */
export function userStepsCall(steps: StepInput[], win: DedupeWindow): { keys: string[]; args: (string | number)[]; ranges: Ranges[] } {
  const keyList: string[] = []
  const rules: (string | number)[] = []
  const ruleIx = new Map<string, number>()
  const ctx: (string | number)[] = []
  const ctxIx = new Map<number, { ix: number; ranges: Ranges }>()
  const evArgs: (string | number)[] = []
  const ranges: Ranges[] = []
  for (const { ev, seq, idx = 0, campaigns = [] } of steps) {
    let r = ruleIx.get(ev.type)
    if (r === undefined) {
      const rule = RULES[ev.type]
      ruleIx.set(ev.type, (r = ruleIx.size))
      rules.push(ev.type, rule.limit, rule.pointsLimit, rule.points, rule.shares, ev.type === 'signin' ? '1' : '0', SIGNIN_MAX_BONUS)
    }
    // What an event shares with the others of its event day and receive day.
    const eventDay = shanghaiDayNo(ev.ts)
    const today = shanghaiDayNo(ev.received_at)
    const gen = dedupeGen(ev.received_at, win)
    let c = ctxIx.get(eventDay * 1e6 + today)
    if (!c) {
      const rs = PERIODS.map((p) => periodRange(p, ev.ts))
      const day = compactDay(ev.ts)
      c = { ix: ctxIx.size, ranges: rs }
      ctxIx.set(eventDay * 1e6 + today, c)
      ctx.push(dedupeExpireAt(gen, win), ...rs.map((x) => x.key), counterField(day, ''), streakField(day), streakField(compactDay(rs[0].startMs - DAY_MS)), String(today), ...pruneCuts(ev.received_at))
    }
    ranges.push(c.ranges)
    keyList.push(keys.user(ev.user_id), keys.dedupe(ev.user_id, gen), keys.dedupe(ev.user_id, gen - 1))
    for (const cp of campaigns) keyList.push(keys.campaignUser(ev.user_id, cp.id))
    evArgs.push(fingerprintHex(ev.id), placeOf(seq, idx), ev.ts, r, c.ix, campaigns.length)
    for (const cp of campaigns) evArgs.push(cp.prefix, cp.institution, cp.pending ? '1' : '0', cp.expireAtS)
  }
  return { keys: keyList, args: [steps.length, ruleIx.size, ctxIx.size, ...rules, ...ctx, ...evArgs], ranges }
}

/** Runs one call of userStepsCall: one reply string per event. */
export function sendUserSteps(redis: Redis, call: { keys: string[]; args: (string | number)[] }): Promise<string[]> {
  return evalFlat(redis, stepScript, call.keys, call.args) as Promise<string[]>
}

/**
 * The per-user step of every event, in order (atomic per event, user-step.lua): a few script calls
 * on one Redis, one per hash slot (and STEPS_PER_CALL) on a Cluster. Decisions in the order given.
 */
export async function applyUserSteps(redis: Redis, steps: StepInput[], win: DedupeWindow): Promise<Decision[]> {
  const out: Decision[] = new Array(steps.length)
  const calls: Promise<void>[] = []
  const run = (ix: number[]) => {
    const part = ix.map((i) => steps[i])
    const call = userStepsCall(part, win)
    const { ranges } = call
    calls.push(
      sendUserSteps(redis, call).then((replies) => {
        replies.forEach((r, j) => (out[ix[j]] = parseReply(r.split(','), part[j].ev, part[j].campaigns ?? [], ranges[j])))
      }),
    )
  }
  // Runs of events in one slot (every slot on one Redis), in order; at most STEPS_PER_CALL a call.
  const bySlot = new Map<number, number[]>()
  const cluster = isCluster(redis)
  steps.forEach((s, i) => {
    const slot = cluster ? calculateSlot(keys.user(s.ev.user_id)) : 0
    let ix = bySlot.get(slot)
    if (!ix) bySlot.set(slot, (ix = []))
    ix.push(i)
    if (ix.length === STEPS_PER_CALL) {
      run(ix)
      bySlot.delete(slot)
    }
  })
  for (const ix of bySlot.values()) run(ix)
  await Promise.all(calls)
  return out
}

/** The step of one event (tests, the live check-in path): applyUserSteps with one. */
export async function applyUserStep(redis: Redis, ev: StreamEvent, seq: number, win: DedupeWindow, campaigns: CampaignArg[] = [], idx = 0): Promise<Decision> {
  return (await applyUserSteps(redis, [{ ev, seq, idx, campaigns }], win))[0]
}

const total = (count: string, reached: string) => (count ? { count: Number(count), reachedAt: Number(reached) } : null)

function parseReply(r: string[], ev: StreamEvent, campaigns: CampaignArg[], ranges: Ranges): Decision {
  const [status, code, pts, streak, region, inst, ix] = r
  const decision: DecisionCode = status === 'dup' ? 'duplicate' : CODES[code]
  const counted = decision === 'counted'
  const totals: PeriodTotals[] = []
  if (counted) {
    PERIODS.forEach((p, i) => {
      const [s, sr, pp, pr] = r.slice(7 + i * 4, 11 + i * 4)
      const range = ranges[i]
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
