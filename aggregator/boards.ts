import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { evalFlat, isCluster, sendFlat, type Sink } from '../core/clients/redis.ts'
import type { RegionTree } from '../core/regions.ts'
import { keys } from '../core/keys.ts'
import { boardKey, DEFAULT_TOP_K, METRICS, packCampaignScore, PERIOD_TTL_S, packScore, type BoardScope, type Metric } from '../core/scoring.ts'
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

type Emit = (key: string, period: Period | null, score: number, expireAtS?: number) => void

/**
 * Board keys, computed once per (scope, period, metric) and shared: the hot path builds no key
 * strings per event, and a key used again hashes at no cost in the batch's maps. Scopes are
 * interned (a county is one object for all its towns); the caches start over past a bound.
 */
export function createBoardKeys(tree: RegionTree) {
  const MAX_SCOPES = 200_000
  const lineages = new Map<string, BoardScope[]>()
  const scopes = new Map<string, BoardScope>()
  const keyCache = new Map<BoardScope, Map<string, [string, string]>>()
  const national: BoardScope = { kind: 'national' }
  const intern = (tag: string, make: () => BoardScope) => {
    let sc = scopes.get(tag)
    if (!sc) {
      if (scopes.size >= MAX_SCOPES) {
        scopes.clear()
        lineages.clear()
        keyCache.clear()
      }
      scopes.set(tag, (sc = make()))
    }
    return sc
  }
  return {
    /** The region and national scopes of a communicator's region (town → province, national). */
    regionScopes(regionCode: string): BoardScope[] {
      let sc = lineages.get(regionCode)
      if (!sc) {
        const lineage = tree.lineage(regionCode).map((r) => r.code)
        const codes = lineage.length ? lineage : [regionCode]
        sc = codes.map((code) => intern('r' + code, () => ({ kind: 'region', code })))
        // Registered at a province or city code: her unit is that code's own board.
        if (codes[0].length <= 4) sc.push(intern('o' + codes[0], () => ({ kind: 'own', code: codes[0] })))
        sc.push(national)
        lineages.set(regionCode, sc)
      }
      return sc
    },
    institutionScope(id: string): BoardScope {
      return intern('i' + id, () => ({ kind: 'institution', id }))
    },
    key(scope: BoardScope, periodKey: string, metric: Metric): string {
      let byPeriod = keyCache.get(scope)
      if (!byPeriod) {
        if (keyCache.size >= MAX_SCOPES) keyCache.clear()
        keyCache.set(scope, (byPeriod = new Map()))
      }
      let pair = byPeriod.get(periodKey)
      if (!pair) {
        if (byPeriod.size > 64) byPeriod.clear()
        byPeriod.set(periodKey, (pair = [boardKey('shares', scope, periodKey), boardKey('points', scope, periodKey)]))
      }
      return pair[metric === 'shares' ? 0 : 1]
    },
  }
}
export type BoardKeys = ReturnType<typeof createBoardKeys>

/** Every board write of one decision, as emit(key, period, score, expireAtS). */
function emitBoardWrites(bk: BoardKeys, d: Decision, campaign: (id: string) => Campaign | undefined, emit: Emit): void {
  if (d.decision !== 'counted' || !d.region_code) return
  const regionScopes = bk.regionScopes(d.region_code)
  const inst = d.institution_id ? bk.institutionScope(d.institution_id) : null
  // A new event changes the metrics it added to; a redelivery rewrites every board it touches.
  const shares = d.status === 'repeat' || (d.status === 'new' && d.shares > 0)
  const points = d.status === 'repeat' || (d.status === 'new' && d.points > 0)
  for (const t of d.totals) {
    for (const m of METRICS) {
      if (m === 'shares' ? !shares : !points) continue
      const v = t[m]
      if (!v) continue
      const score = packScore(t.period, t.startMs, v.count, v.reachedAt)
      for (const s of regionScopes) emit(bk.key(s, t.key, m), t.period, score)
      if (inst) emit(bk.key(inst, t.key, m), t.period, score)
    }
  }
  // Each campaign's board holds its metric only.
  for (const ct of d.campaigns) {
    const c = campaign(ct.id)
    if (!c || (c.metric === 'shares' ? !shares : !points)) continue
    const v = ct[c.metric]
    if (!v) continue
    emit(keys.campaignBoard(c.id), null, packCampaignScore(c, v.count, v.reachedAt), Math.ceil(c.cutoff_at / 1000) + CAMPAIGN_KEEP_S)
  }
}

const noCampaign = () => undefined

/** The board writes of one decision, as a list (tests, the benchmark's ceiling). */
export function boardWrites(userId: string, d: Decision, tree: RegionTree | BoardKeys, campaign: (id: string) => Campaign | undefined = noCampaign): BoardWrite[] {
  const bk = 'key' in tree ? tree : createBoardKeys(tree)
  const out: BoardWrite[] = []
  emitBoardWrites(bk, d, campaign, (key, period, score, expireAtS) => out.push(expireAtS === undefined ? { key, score, member: userId, period } : { key, score, member: userId, period, expireAtS }))
  return out
}

/** Adds one decision's board writes to a batch's groups (the aggregator's hot path: no objects per write). */
export function addBoardWrites(groups: BoardGroups, bk: BoardKeys, userId: string, d: Decision, campaign: (id: string) => Campaign | undefined = noCampaign): void {
  emitBoardWrites(bk, d, campaign, (key, period, score, expireAtS) => addToGroup(groups, key, period, expireAtS, userId, score))
}

function addToGroup(groups: BoardGroups, key: string, period: Period | null, expireAtS: number | undefined, member: string, score: number) {
  let g = groups.get(key)
  if (!g) groups.set(key, (g = { period, expireAtS, members: new Map() }))
  const best = g.members.get(member)
  if (best === undefined || score < best) g.members.set(member, score)
}

/** A batch's board writes grouped by board, keeping per user only the best (lowest stored) score. */
export interface BoardGroup {
  period: Period | null
  expireAtS?: number
  members: Map<string, number>
}

export type BoardGroups = Map<string, BoardGroup>

/** Groups writes by board; per (board, user) only the best score is kept, which is all ZADD LT would keep. */
export function groupByBoard(ws: Iterable<BoardWrite>): BoardGroups {
  const groups: BoardGroups = new Map()
  for (const w of ws) addToGroup(groups, w.key, w.period, w.expireAtS, w.member, w.score)
  return groups
}

/** Members per ZADD command: bounds the size of one command (and Redis' time inside it). */
const MEMBERS_PER_ZADD = 1000
/**
 * A board with this many members in a batch gets its own ZADD instead of a place in its province's
 * script: inside a script every argument is made a Lua string and back, ≈ 1 µs of Redis per entry
 * more than a plain ZADD (bench/board-cost.ts), which outweighs one more command for this process.
 */
export const DIRECT_MIN_MEMBERS = 8

/** The hash tag of a key ({…}: what Redis Cluster hashes), or null. */
function hashTag(key: string): string | null {
  const i = key.indexOf('{')
  if (i < 0) return null
  const j = key.indexOf('}', i + 1)
  return j > i + 1 ? key.slice(i + 1, j) : null
}

/**
 * The board writes of one hash tag in one script: per board ZADD LT of its members, its TTL once
 * (EXPIRE NX) and, for a gated board due for it, the trim to K and its K-th score. One command for
 * hundreds of boards: what a board write costs this process is per command, not per board.
 * ARGV[1] K, then per key: member count n, flags (1 expire, 4 refresh), ttl, n × (score, member).
 * Returns the K-th scores of the refreshed boards, in order ('' when a board holds fewer than K).
 */
const BOARD_WRITE = `
local K = tonumber(ARGV[1])
local a = 2
local out = {}
for j = 1, #KEYS do
  local k = KEYS[j]
  local n, flags, ttl = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
  local i = 0
  while i < n do
    local m = math.min(n - i, 1000)
    redis.call('ZADD', k, 'LT', unpack(ARGV, a, a + 2 * m - 1))
    a = a + 2 * m
    i = i + m
  end
  if flags % 2 == 1 then redis.call('EXPIRE', k, ttl, 'NX') end
  if flags >= 4 then
    redis.call('ZREMRANGEBYRANK', k, K, -1)
    local r = redis.call('ZRANGE', k, K - 1, K - 1, 'WITHSCORES')
    out[#out + 1] = r[2] or ''
  end
end
return out
`
const boardWriteScript = { lua: BOARD_WRITE, sha: createHash('sha1').update(BOARD_WRITE).digest('hex') }

/** How often a gated board's K-th score is read again, and the board trimmed to K. */
const THRESHOLD_REFRESH_MS = 1000

/**
 * Writes a batch of board writes: one `ZADD key LT s1 m1 s2 m2 …` per board, however many users of
 * the batch it holds. Each command touches one key, so the same path serves a Redis Cluster, and
 * each write is idempotent and order-free. Grouping matters: a sorted-set command costs Redis
 * several microseconds on top of each member's update, and a county or national board is shared
 * by most users of a batch.
 *
 * Gated boards (g:…, city and above) take a write only when it can be in their top `topK`: its score
 * is at least as good as the board's K-th score, cached here and read again at most once a second.
 * That K-th score can only get better (ZADD LT, and the trim removes only what is below it), so a
 * stale cache lets more through, never less; a skipped communicator has K others ahead of her for
 * the rest of the period. The first K entries of a gated board are therefore exactly its top K
 * (proof and reads in docs/boards.md). `forget()` drops the cache after a rebuild.
 */
export function createBoardWriter(opts: { topK: number; refreshMs?: number } = { topK: DEFAULT_TOP_K }) {
  const K = opts.topK
  const REFRESH_MS = opts.refreshMs ?? THRESHOLD_REFRESH_MS
  // Set each board's TTL once per process rather than on every write, whichever connection writes.
  const expiring = new Set<string>()
  /** Gated board → its K-th stored score (Infinity while it holds fewer than K) and when that was read. */
  const thresholds = new Map<string, { score: number; at: number }>()
  async function write(redis: Redis, ws: Iterable<BoardWrite> | BoardGroups): Promise<void> {
    const ops: Promise<unknown>[] = []
    const now = Date.now()
    // One socket write for the batch's commands (each sent on its own costs a write call and a
    // string copy: most of this process' time at thousands of boards per batch). A Cluster's
    // pipeline must stay in one slot, so there each command goes on its own.
    const pipe = isCluster(redis) ? null : redis.pipeline()
    const out: Sink = (pipe as unknown as Sink | null) ?? redis
    /** Writes of boards that share a hash tag (a province's), sent as one script per tag. */
    const tagged = new Map<string, { keys: string[]; args: (string | number)[]; refresh: { score: number; at: number }[] }>()
    for (const [key, g] of ws instanceof Map ? ws : groupByBoard(ws)) {
      const gated = key.charCodeAt(0) === 103 // 'g'
      const th = gated ? thresholds.get(key) : undefined
      const theta = th ? th.score : Infinity
      const pairs: (string | number)[] = []
      for (const [member, score] of g.members) {
        if (score > theta) continue // K others are ahead of it for good
        pairs.push(score, member)
      }
      const wrote = pairs.length > 0
      const ttl = g.period ? PERIOD_TTL_S[g.period] : null
      let expire = false
      if (wrote && (ttl || g.expireAtS) && !expiring.has(key)) {
        if (expiring.size > 200_000) expiring.clear()
        expiring.add(key)
        expire = true
      }
      let refresh: { score: number; at: number } | null = null
      if (gated && (!th || (wrote && now - th.at >= REFRESH_MS) || now - th.at >= 10 * REFRESH_MS)) {
        if (thresholds.size > 200_000) thresholds.clear()
        refresh = { score: theta, at: now }
        thresholds.set(key, refresh)
      }
      if (!wrote && !refresh) continue
      const tag = hashTag(key)
      if (tag !== null && g.period && pairs.length < 2 * DIRECT_MIN_MEMBERS) {
        let t = tagged.get(tag)
        if (!t) tagged.set(tag, (t = { keys: [], args: [K], refresh: [] }))
        t.keys.push(key)
        t.args.push(pairs.length / 2, (expire ? 1 : 0) + (refresh ? 4 : 0), ttl ?? 0)
        for (const v of pairs) t.args.push(v)
        if (refresh) t.refresh.push(refresh)
        continue
      }
      for (let i = 0; i < pairs.length; i += 2 * MEMBERS_PER_ZADD) ops.push(sendFlat(out, 'zadd', [key, 'LT', ...pairs.slice(i, i + 2 * MEMBERS_PER_ZADD)]))
      // After the ZADD that creates the key, on the same path (EXPIRE NX on no key does nothing).
      if (expire) ops.push(ttl ? sendFlat(out, 'expire', [key, ttl, 'NX']) : sendFlat(out, 'expireat', [key, g.expireAtS!, 'NX']))
      if (refresh) {
        const entry = refresh
        // After this batch's ZADD on the same connection: what lies past rank K now can never come back.
        ops.push(sendFlat(out, 'zremrangebyrank', [key, K, -1]))
        ops.push(
          (sendFlat(out, 'zrange', [key, K - 1, K - 1, 'WITHSCORES']) as Promise<string[]>).then((r) => {
            entry.score = r.length ? Number(r[1]) : Infinity
          }),
        )
      }
    }
    for (const t of tagged.values()) {
      ops.push(
        evalFlat(out, boardWriteScript, t.keys, t.args, redis).then((r) => {
          ;(r as string[]).forEach((v, i) => (t.refresh[i].score = v === '' ? Infinity : Number(v)))
        }),
      )
    }
    if (pipe && ops.length) await pipe.exec()
    await Promise.all(ops)
  }
  return Object.assign(write, {
    topK: K,
    /** Forgets every cached K-th score (after a rebuild, a gated board may hold less than before). */
    forget: () => thresholds.clear(),
  })
}
export type BoardWriter = ReturnType<typeof createBoardWriter>
