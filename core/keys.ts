import type { Redis } from 'ioredis'
import type { User } from './store/users.ts'

/**
 * Redis key names. Everything about one communicator carries the hash tag {<user id>}, so the
 * per-user step touches a single hash slot and runs as one script on a Redis Cluster too.
 * Boards (b:… complete, g:… gated top K) are one key each and are written idempotently (see core/scoring.ts).
 */
export const keys = {
  info: (u: string) => `u:{${u}}:i`,
  period: (u: string, periodKey: string) => `u:{${u}}:${periodKey}`,
  dedupe: (u: string, compactDay: string) => `u:{${u}}:x:${compactDay}`,
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
/** Key patterns rebuilt from facts (and so deleted before a rebuild). */
export const DERIVED_PATTERNS = ['u:*', 'b:*', 'g:*', 'm:*', 'k:*']

export function infoFields(u: User): Record<string, string> {
  return { n: u.real_name, r: u.region_code, i: u.institution_id, c: String(u.certified_at), x: String(u.ix ?? 0) }
}

export async function cacheUsers(redis: Redis, users: User[]): Promise<void> {
  if (!users.length) return
  const p = redis.pipeline()
  for (const u of users) p.hset(keys.info(u.id), infoFields(u))
  const res = await p.exec()
  for (const [err] of res ?? []) if (err) throw err
}

export interface UserInfo {
  name: string
  region_code: string
  institution_id: string | null
}

export async function readInfos(redis: Redis, ids: string[]): Promise<Map<string, UserInfo>> {
  const out = new Map<string, UserInfo>()
  const rows = await Promise.all(ids.map((id) => redis.hmget(keys.info(id), 'n', 'r', 'i')))
  ids.forEach((id, i) => {
    const [n, r, inst] = rows[i]
    if (r !== null) out.set(id, { name: n ?? '', region_code: r, institution_id: inst || null })
  })
  return out
}
