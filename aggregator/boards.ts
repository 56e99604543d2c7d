import type { Redis, Result } from 'ioredis'
import type { RegionTree } from '../core/regions.ts'
import { keys } from '../core/keys.ts'
import { boardKey, packCampaignScore, PERIOD_TTL_S, packScore, scopesOf, type Metric } from '../core/scoring.ts'
import type { Campaign } from '../core/store/campaigns.ts'
import { CAMPAIGN_KEEP_S } from './campaigns.ts'
import type { Period } from '../core/time.ts'
import type { Decision } from './user-step.ts'

/**
 * Board writes: the user's absolute score per board with ZADD … LT (stored scores are negative,
 * lower is better), so replays, redeliveries and out-of-order writes leave a board unchanged.
 * Each board is its own key: on a Redis Cluster every write goes to its own slot.
 */
export interface BoardWrite {
  key: string
  score: number
  member: string
  /** Period boards expire by their period; campaign boards (period null) at expireAtS. */
  period: Period | null
  expireAtS?: number
}

export function boardWrites(userId: string, d: Decision, tree: RegionTree, campaign: (id: string) => Campaign | undefined = () => undefined): BoardWrite[] {
  if (d.decision !== 'counted' || !d.region_code) return []
  const lineage = tree.lineage(d.region_code).map((r) => r.code)
  const scopes = scopesOf(lineage.length ? lineage : [d.region_code], d.institution_id)
  const out: BoardWrite[] = []
  // A new event changes the metrics it added to; a redelivery rewrites every board it touches.
  const metrics: Metric[] = d.status === 'repeat' ? ['shares', 'points'] : []
  if (d.status === 'new') {
    if (d.shares > 0) metrics.push('shares')
    if (d.points > 0) metrics.push('points')
  }
  for (const t of d.totals) {
    for (const m of metrics) {
      const v = t[m]
      if (!v) continue
      const score = packScore(t.period, t.startMs, v.count, v.reachedAt)
      for (const s of scopes) out.push({ key: boardKey(m, s, t.key), score, member: userId, period: t.period })
    }
  }
  // Each campaign's board holds its metric only.
  for (const ct of d.campaigns) {
    const c = campaign(ct.id)
    if (!c || !metrics.includes(c.metric)) continue
    const v = ct[c.metric]
    if (!v) continue
    out.push({ key: keys.campaignBoard(c.id), score: packCampaignScore(c, v.count, v.reachedAt), member: userId, period: null, expireAtS: Math.ceil(c.cutoff_at / 1000) + CAMPAIGN_KEEP_S })
  }
  return out
}

/** Keeps, per (board, user), the write with the best (lowest stored) score: the others change nothing. */
export function coalesce(ws: BoardWrite[]): BoardWrite[] {
  const best = new Map<string, BoardWrite>()
  for (const w of ws) {
    const k = `${w.key}\u0000${w.member}`
    const b = best.get(k)
    if (!b || w.score < b.score) best.set(k, w)
  }
  return [...best.values()]
}

/** One user's board writes in one round trip: every key gets ZADD LT of its score for the member. */
const WRITE_BOARDS = `for i, k in ipairs(KEYS) do redis.call('ZADD', k, 'LT', ARGV[i + 1], ARGV[1]) end
return #KEYS`

declare module 'ioredis' {
  interface RedisCommander<Context> {
    writeBoards(...args: (string | number)[]): Result<number, Context>
  }
}

/**
 * On a single Redis the writes of one event go in one script call (they are still each idempotent,
 * so the script is only a batching of independent writes). On a Redis Cluster (`cluster: true`)
 * every board is written with its own command, routed to its own slot.
 */
export function createBoardWriter(redis: Redis, opts: { cluster?: boolean } = {}) {
  if (!opts.cluster && !(redis as unknown as { writeBoards?: unknown }).writeBoards) redis.defineCommand('writeBoards', { lua: WRITE_BOARDS })
  // Set each board's TTL once per process rather than on every write.
  const expiring = new Set<string>()
  return async function write(ws: BoardWrite[]): Promise<void> {
    const ops: Promise<unknown>[] = []
    if (opts.cluster) for (const w of ws) ops.push(redis.zadd(w.key, 'LT', w.score, w.member))
    else {
      const byMember = new Map<string, BoardWrite[]>()
      for (const w of ws) {
        const list = byMember.get(w.member)
        if (list) list.push(w)
        else byMember.set(w.member, [w])
      }
      for (const [member, list] of byMember) ops.push(redis.writeBoards(list.length, ...list.map((w) => w.key), member, ...list.map((w) => w.score)))
    }
    for (const w of ws) {
      const ttl = w.period ? PERIOD_TTL_S[w.period] : null
      if ((ttl || w.expireAtS) && !expiring.has(w.key)) {
        if (expiring.size > 200_000) expiring.clear()
        expiring.add(w.key)
        ops.push(ttl ? redis.expire(w.key, ttl, 'NX') : redis.expireat(w.key, w.expireAtS!, 'NX'))
      }
    }
    await Promise.all(ops)
  }
}
