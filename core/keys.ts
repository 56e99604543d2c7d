import type { Redis } from 'ioredis'
import { isCluster, pipelineFor } from './clients/redis.ts'
import type { User } from './store/users.ts'

/**
 * Redis key names. Everything about one communicator carries the hash tag {<user id>}, so the
 * per-user step touches a single hash slot and runs as one script on a Redis Cluster too.
 * Boards (b:… complete, g:… gated top K) are one key each and are written idempotently (see core/scoring.ts).
 *
 * A communicator's state is one hash, `u:{U}` (small: a listpack), with
 *   n r i c x          name, region, institution, certified_at ms, dense index (the import's cache)
 *   <period key>       her totals of that period, "s,sr,p,pr" (shares, their reached-at, points,
 *                      theirs; '' when none), for d<YYYYMMDD>, w<Monday>, m<YYYYMM>, y<YYYY> and a
 *   n<YYYYMMDD>:<type> events of that type counted that day (the daily caps)
 *   q<YYYYMMDD>        the sign-in streak reached that day
 *   z                  the Shanghai day its old fields were last pruned
 * Only what a new event can still change is kept (the accepted age window: periods reaching into the
 * last PRUNE_DAYS days, and all-time); older periods live on the boards. Dedupe entries live apart,
 * in generation keys `u:{U}:x<gen>` of DedupeWindow.genDays receive days each (see user-step.ts).
 */
export const keys = {
  user: (u: string) => `u:{${u}}`,
  dedupe: (u: string, gen: number) => `u:{${u}}:x${gen}`,
  seq: 'm:seq',
  /** Set while a rebuild deletes and restores the derived keys (not itself derived: it outlives the deletion). */
  rebuilding: 'r:rebuilding',
  /** A communicator's totals in one campaign (in her hash slot). */
  campaignUser: (u: string, campaignId: string) => `u:{${u}}:k:${campaignId}`,
  /** A campaign's live board (sorted set of packed scores of its metric). */
  campaignBoard: (campaignId: string) => `k:${campaignId}`,
  /** Users fed live while a campaign's backfill was pending (they need an event-by-event backfill). */
  campaignLive: (campaignId: string) => `k:${campaignId}:live`,
}
/** Fields of a communicator's hash that hold one day: counted events per type, and the streak. */
export const counterField = (compactDay: string, type: string) => `n${compactDay}:${type}`
export const streakField = (compactDay: string) => `q${compactDay}`
/** Days back from today whose periods a communicator's hash keeps (events older than the age window are refused). */
export const PRUNE_DAYS = 4

export interface Totals {
  shares: number
  sharesAt: number
  points: number
  pointsAt: number
}
/** A totals field "s,sr,p,pr" (null or '' parts: nothing). */
export function parseTotals(v: string | null | undefined): Totals {
  const [s, sr, p, pr] = (v ?? '').split(',')
  return { shares: Number(s || 0), sharesAt: Number(sr || 0), points: Number(p || 0), pointsAt: Number(pr || 0) }
}
export const formatTotals = (s: string | number, sr: string | number, p: string | number, pr: string | number) => `${s},${sr},${p},${pr}`

/** A communicator's totals of one period (periodKey as in core/time.ts: d…, w…, m…, y…, a). */
export async function readTotals(redis: Redis, user: string, periodKey: string): Promise<Totals> {
  return parseTotals(await redis.hget(keys.user(user), periodKey))
}

/** Key patterns rebuilt from facts (and so deleted before a rebuild). */
export const DERIVED_PATTERNS = ['u:*', 'b:*', 'g:*', 'm:*', 'k:*']

export function infoFields(u: User): Record<string, string> {
  return { n: u.real_name, r: u.region_code, i: u.institution_id, c: String(u.certified_at), x: String(u.ix ?? 0) }
}

export async function cacheUsers(redis: Redis, users: User[]): Promise<void> {
  if (!users.length) return
  const p = pipelineFor(redis)
  for (const u of users) p.hset(keys.user(u.id), infoFields(u))
  const res = await p.exec()
  for (const [err] of res ?? []) if (err) throw err
}

export interface UserInfo {
  name: string
  region_code: string
  institution_id: string | null
}

/** How long a board read reuses a communicator's name, region and institution: inside the one-second freshness promise. */
export const INFO_CACHE_MS = 1000

/**
 * readInfos for board pages, with each communicator's info reused for up to `ttlMs` (and at most
 * `max` of them kept, oldest dropped first). A page of 100 otherwise costs 100 HMGETs, whose command
 * building and reply decoding were ~30 % of a top-page read's CPU in a profile; names, regions and institutions change by imports and
 * moves, rarely, and a page then shows the new ones within `ttlMs`. Scores and ranks are never cached.
 */
export function createInfoReader(deps: { redis: Redis; ttlMs?: number; max?: number; now?: () => number }) {
  const ttl = deps.ttlMs ?? INFO_CACHE_MS
  const max = deps.max ?? 50_000
  const now = deps.now ?? Date.now
  const cache = new Map<string, { at: number; info: UserInfo }>()
  return async function read(ids: string[]): Promise<Map<string, UserInfo>> {
    const t = now()
    const out = new Map<string, UserInfo>()
    const missing: string[] = []
    for (const id of ids) {
      const hit = cache.get(id)
      if (hit && t - hit.at < ttl) out.set(id, hit.info)
      else missing.push(id)
    }
    if (!missing.length) return out
    const got = await readInfos(deps.redis, missing)
    for (const id of missing) if (!got.has(id)) cache.delete(id) // gone from Redis: nothing stale left behind
    for (const [id, info] of got) {
      cache.delete(id) // re-inserted last: the Map's order is the eviction order
      cache.set(id, { at: t, info })
      out.set(id, info)
    }
    for (const id of cache.keys()) {
      if (cache.size <= max) break
      cache.delete(id)
    }
    return out
  }
}
export type InfoReader = ReturnType<typeof createInfoReader>

/**
 * n, r, i of each id's hash. On one server as one pipeline (one write, one reply batch: cheaper for
 * this process than a command and a promise per id); a Cluster's pipeline must stay in one slot.
 */
async function hmgetEach(redis: Redis, ids: string[]): Promise<(string | null)[][]> {
  if (isCluster(redis)) return Promise.all(ids.map((id) => redis.hmget(keys.user(id), 'n', 'r', 'i')))
  const p = pipelineFor(redis)
  for (const id of ids) p.hmget(keys.user(id), 'n', 'r', 'i')
  return ((await p.exec()) ?? []).map(([err, v]) => {
    if (err) throw err
    return v as (string | null)[]
  })
}

export async function readInfos(redis: Redis, ids: string[]): Promise<Map<string, UserInfo>> {
  const out = new Map<string, UserInfo>()
  if (!ids.length) return out
  const rows = await hmgetEach(redis, ids)
  ids.forEach((id, i) => {
    const [n, r, inst] = rows[i]
    if (r !== null) out.set(id, { name: n ?? '', region_code: r, institution_id: inst || null })
  })
  return out
}
