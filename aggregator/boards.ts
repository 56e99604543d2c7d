import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { evalFlat, isCluster, sendFlat, type Sink } from '../core/clients/redis.ts'
import type { RegionTree } from '../core/regions.ts'
import { keys } from '../core/keys.ts'
import { boardKey, DEFAULT_TOP_K, isGated, packCampaignScore, PERIOD_TTL_S, packScore, scopeTag, slotTag, type BoardScope, type Metric } from '../core/scoring.ts'
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

type Emit = (key: string, tag: string | null, period: Period | null, score: number, text: string, expireAtS?: number) => void

/** The hash tag of a key ({…}: what Redis Cluster hashes), or null. */
function hashTag(key: string): string | null {
  const i = key.indexOf('{')
  if (i < 0) return null
  const j = key.indexOf('}', i + 1)
  return j > i + 1 ? key.slice(i + 1, j) : null
}

/**
 * Board keys, computed once per (scope, period, metric) and shared: the hot path builds no key
 * strings per event, and a key used again hashes at no cost in the batch's maps. Scopes are
 * interned (a county is one object for all its towns); the caches start over past a bound.
 */
export function createBoardKeys(tree: RegionTree) {
  const MAX_SCOPES = 200_000
  const lineages = new Map<string, BoardScope[]>()
  const scopes = new Map<string, BoardScope>()
  /** Per scope and period key: [shares key, points key, their hash tag]. */
  const keyCache = new Map<BoardScope, Map<string, [string, string, string | null]>>()
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
  const entry = (scope: BoardScope, periodKey: string) => {
    let byPeriod = keyCache.get(scope)
    if (!byPeriod) {
      if (keyCache.size >= MAX_SCOPES) keyCache.clear()
      keyCache.set(scope, (byPeriod = new Map()))
    }
    let e = byPeriod.get(periodKey)
    if (!e) {
      if (byPeriod.size > 64) byPeriod.clear()
      const sharesKey = boardKey('shares', scope, periodKey)
      byPeriod.set(periodKey, (e = [sharesKey, boardKey('points', scope, periodKey), hashTag(sharesKey)]))
    }
    return e
  }
  const unitCache = new Map<string, Units | null>()
  const restCache = new Map<string, BoardScope[]>()
  function regionScopes(regionCode: string): BoardScope[] {
    let sc = lineages.get(regionCode)
    if (!sc) {
      const lineage = tree.lineage(regionCode).map((r) => r.code)
      const codes = lineage.length ? lineage : [regionCode]
      // City boards are virtual (read from their counties): nothing to write.
      sc = codes.filter((code) => code.length !== 4).map((code) => intern('r' + code, () => ({ kind: 'region', code })))
      // Registered at a province or city code: her unit is that code's own board.
      if (codes[0].length <= 4) sc.push(intern('o' + codes[0], () => ({ kind: 'own', code: codes[0] })))
      sc.push(national)
      lineages.set(regionCode, sc)
    }
    return sc
  }
  return {
    /**
     * A region's complete province-tagged boards (town and county, or the own board), as what their
     * keys hold between `b:<metric>:` and `:<period>` (`{43}r430623110`), for the fan-out; null when it
     * has none (an unknown code).
     */
    units(regionCode: string): Units | null {
      let u = unitCache.get(regionCode)
      if (u === undefined) {
        const scopes = regionScopes(regionCode).filter(isFannedOut)
        u = scopes.length ? { id: regionCode, tag: slotTag(scopes[0]), scopes: scopes.map((sc) => scopeTag(sc)) } : null
        if (unitCache.size >= MAX_SCOPES) unitCache.clear()
        unitCache.set(regionCode, u)
      }
      return u
    },
    /** The stored boards of a communicator's region: town and county (or her own board), province, national. */
    regionScopes,
    /** The same but the fanned-out ones (see `units`): the gated province and national boards. */
    restScopes(regionCode: string): BoardScope[] {
      let sc = restCache.get(regionCode)
      if (!sc) {
        if (restCache.size >= MAX_SCOPES) restCache.clear()
        restCache.set(regionCode, (sc = regionScopes(regionCode).filter((x) => !isFannedOut(x))))
      }
      return sc
    },
    institutionScope(id: string): BoardScope {
      return intern('i' + id, () => ({ kind: 'institution', id }))
    },
    key(scope: BoardScope, periodKey: string, metric: Metric): string {
      return entry(scope, periodKey)[metric === 'shares' ? 0 : 1]
    },
    /** The key's hash tag (its province's, or null), computed once with the key. */
    tag(scope: BoardScope, periodKey: string): string | null {
      return entry(scope, periodKey)[2]
    },
    entry,
  }
}
export type BoardKeys = ReturnType<typeof createBoardKeys>

/** The boards whose writes a batch hands to Redis as scores per event (`UnitFanout`): complete and province-tagged. */
const isFannedOut = (s: BoardScope): boolean => s.kind === 'own' || (s.kind === 'region' && !isGated(s))

/** A region's fanned-out boards: their hash tag and each one's `{tag}scope` part of the key. */
export interface Units {
  id: string
  tag: string
  scopes: string[]
}

/** Every board write of one decision, as emit(key, tag, period, score, score as text, expireAtS). With `fan`, the
 * fanned-out boards (town, county, own) go to it as one score per (period, metric) instead. */
function emitBoardWrites(bk: BoardKeys, d: Decision, campaign: (id: string) => Campaign | undefined, emit: Emit, fan?: { to: UnitFanout; member: string }): void {
  if (d.decision !== 'counted' || !d.region_code) return
  const units = fan ? bk.units(d.region_code) : null
  const regionScopes = units ? bk.restScopes(d.region_code) : bk.regionScopes(d.region_code)
  const inst = d.institution_id ? bk.institutionScope(d.institution_id) : null
  // A new event changes the metrics it added to; a redelivery rewrites every board it touches.
  const shares = d.status === 'repeat' || (d.status === 'new' && d.shares > 0)
  const points = d.status === 'repeat' || (d.status === 'new' && d.points > 0)
  if (units) fan!.to.begin(units, fan!.member)
  for (const t of d.totals) {
    for (let mi = 0; mi < 2; mi++) {
      if (mi === 0 ? !shares : !points) continue
      const v = mi === 0 ? t.shares : t.points
      if (!v) continue
      const score = packScore(t.period, t.startMs, v.count, v.reachedAt)
      // One text per score, however many boards it goes to (what ioredis would make of the number).
      const text = String(score)
      if (units) fan!.to.score(t.key, t.period, mi, text)
      for (const s of regionScopes) {
        const e = bk.entry(s, t.key)
        emit(mi === 0 ? e[0] : e[1], e[2], t.period, score, text)
      }
      if (inst) {
        const e = bk.entry(inst, t.key)
        emit(mi === 0 ? e[0] : e[1], e[2], t.period, score, text)
      }
    }
  }
  if (units) fan!.to.end()
  // Each campaign's board holds its metric only.
  for (const ct of d.campaigns) {
    const c = campaign(ct.id)
    if (!c || (c.metric === 'shares' ? !shares : !points)) continue
    const v = ct[c.metric]
    if (!v) continue
    const key = keys.campaignBoard(c.id)
    const score = packCampaignScore(c, v.count, v.reachedAt)
    emit(key, hashTag(key), null, score, String(score), Math.ceil(c.cutoff_at / 1000) + CAMPAIGN_KEEP_S)
  }
}

const noCampaign = () => undefined

/** The board writes of one decision, as a list (tests, the benchmark's ceiling). */
export function boardWrites(userId: string, d: Decision, tree: RegionTree | BoardKeys, campaign: (id: string) => Campaign | undefined = noCampaign): BoardWrite[] {
  const bk = 'key' in tree ? tree : createBoardKeys(tree)
  const out: BoardWrite[] = []
  emitBoardWrites(bk, d, campaign, (key, _tag, period, score, _text, expireAtS) => out.push(expireAtS === undefined ? { key, score, member: userId, period } : { key, score, member: userId, period, expireAtS }))
  return out
}

/** Adds one decision's board writes to a batch (the aggregator's hot path): town, county and own boards to its fan-out. */
export function addBoardWrites(batch: BoardBatch, bk: BoardKeys, userId: string, d: Decision, campaign: (id: string) => Campaign | undefined = noCampaign): void {
  emitBoardWrites(bk, d, campaign, (key, tag, period, score, text, expireAtS) => batch.add(key, tag, period, expireAtS ?? 0, userId, score, text), { to: batch.fan, member: userId })
}

/** A province's fanned-out writes of one batch: the script's arguments, built as the events come. */
interface FanGroup {
  codes: Map<string, number>
  /** Per region code (in index order): how many boards, then their scope parts. */
  units: string[]
  slots: Map<string, number>
  /** Per slot (in index order): period key, TTL ('' for none). */
  periods: string[]
  /** Per event: member, code index, n, then n × (slot × 2 + metric, score). */
  events: string[]
}

/**
 * The writes of a batch to the complete province-tagged boards (town, county, own), held as what they
 * are: per event one score per (period, metric), which the fan-out script writes to each of the
 * event's boards. A counted share's 20 such entries cost this process 13 arguments instead of 60
 * (key, score and member each), and Redis builds the keys itself (all in the province's slot).
 * Nothing is merged here: ZADD LT keeps the best score whatever comes twice.
 */
export class UnitFanout {
  readonly groups = new Map<string, FanGroup>()
  /** (board, member) entries written, before any dedupe. */
  entries = 0
  private g: FanGroup | null = null
  private at = 0
  private n = 0
  private width = 0

  begin(u: Units, member: string): void {
    let g = this.groups.get(u.tag)
    if (!g) this.groups.set(u.tag, (g = { codes: new Map(), units: [], slots: new Map(), periods: [], events: [] }))
    let c = g.codes.get(u.id)
    if (c === undefined) {
      c = g.codes.size
      g.codes.set(u.id, c)
      g.units.push(String(u.scopes.length), ...u.scopes)
    }
    g.events.push(member, String(c), '')
    this.g = g
    this.at = g.events.length - 1
    this.n = 0
    this.width = u.scopes.length
  }

  score(periodKey: string, period: Period, metric: number, text: string): void {
    const g = this.g!
    let s = g.slots.get(periodKey)
    if (s === undefined) {
      s = g.slots.size
      g.slots.set(periodKey, s)
      const ttl = PERIOD_TTL_S[period]
      g.periods.push(periodKey, ttl ? String(ttl) : '')
    }
    g.events.push(String(s * 2 + metric), text)
    this.n++
    this.entries += this.width
  }

  end(): void {
    const g = this.g!
    if (this.n) g.events[this.at] = String(this.n)
    else g.events.length -= 3
    this.g = null
  }
}

/**
 * The fan-out: KEYS[1] `b:{43}` (never written: it names the slot), then ARGV as UnitFanout builds
 * them. Every key it writes carries the same hash tag, so on a Cluster it stays on the slot's node.
 * A ZADD that adds a member may have made the key: then its TTL (EXPIRE NX leaves an existing one).
 */
const FAN_OUT = `
local tag = string.sub(KEYS[1], 3)
local call = redis.call
local a = 1
local units = {}
local nc = tonumber(ARGV[a])
a = a + 1
for c = 0, nc - 1 do
  local n = tonumber(ARGV[a])
  local u = {}
  for j = 1, n do u[j] = tag .. ARGV[a + j] end
  units[c] = u
  a = a + n + 1
end
local ns = tonumber(ARGV[a])
a = a + 1
local suffix, ttl = {}, {}
for s = 0, ns - 1 do
  suffix[s] = ':' .. ARGV[a]
  ttl[s] = tonumber(ARGV[a + 1])
  a = a + 2
end
local prefix = { [0] = 'b:s:', [1] = 'b:p:' }
local last = #ARGV
while a <= last do
  local m, u, n = ARGV[a], units[tonumber(ARGV[a + 1])], tonumber(ARGV[a + 2])
  a = a + 3
  for i = 1, n do
    local h = tonumber(ARGV[a])
    local score = ARGV[a + 1]
    a = a + 2
    local metric = h % 2
    local s = (h - metric) / 2
    local p, sf, t = prefix[metric], suffix[s], ttl[s]
    for j = 1, #u do
      local k = p .. u[j] .. sf
      if call('ZADD', k, 'LT', score, m) == 1 and t then call('EXPIRE', k, t, 'NX') end
    end
  end
end
return 0
`
const fanOutScript = { lua: FAN_OUT, sha: createHash('sha1').update(FAN_OUT).digest('hex') }


/** Members a board holds before the batch looks a member up in a map rather than along its list. */
const SCAN_MAX = 8

/**
 * A batch's board writes, grouped by board, keeping per (board, member) only the best (lowest
 * stored) score, which is all ZADD LT would keep. Flat: in the national shape a batch of 500 events
 * touches thousands of boards with one member each, so a board costs a few array slots, not a Map
 * and an object; its entries are a list linked backwards through the entry arrays.
 */
export class BoardBatch {
  /** The town, county and own boards' writes of addBoardWrites, apart (see UnitFanout). */
  readonly fan = new UnitFanout()
  private readonly index = new Map<string, number>()
  readonly keys: string[] = []
  readonly tags: (string | null)[] = []
  readonly periods: (Period | null)[] = []
  /** Campaign boards: when they expire (unix seconds); 0 for period boards. */
  readonly expireAt: number[] = []
  /** Distinct members per board. */
  readonly counts: number[] = []
  private readonly last: number[] = []
  private readonly lookup: (Map<string, number> | undefined)[] = []
  private readonly prev: number[] = []
  private readonly member: string[] = []
  private readonly score: number[] = []
  private readonly text: string[] = []

  get size(): number {
    return this.keys.length
  }

  /** Distinct (board, member) entries. */
  get entries(): number {
    return this.member.length
  }

  add(key: string, tag: string | null, period: Period | null, expireAtS: number, member: string, score: number, text = String(score)): void {
    let b = this.index.get(key)
    if (b === undefined) {
      b = this.keys.length
      this.index.set(key, b)
      this.keys.push(key)
      this.tags.push(tag)
      this.periods.push(period)
      this.expireAt.push(expireAtS)
      this.counts.push(0)
      this.last.push(-1)
      this.lookup.push(undefined)
    } else {
      const e = this.find(b, member)
      if (e >= 0) {
        if (score < this.score[e]) {
          this.score[e] = score
          this.text[e] = text
        }
        return
      }
    }
    const e = this.member.length
    this.member.push(member)
    this.score.push(score)
    this.text.push(text)
    this.prev.push(this.last[b])
    this.last[b] = e
    this.lookup[b]?.set(member, e)
    this.counts[b]++
  }

  private find(b: number, member: string): number {
    const map = this.lookup[b]
    if (map) return map.get(member) ?? -1
    if (this.counts[b] < SCAN_MAX) {
      for (let e = this.last[b]; e >= 0; e = this.prev[e]) if (this.member[e] === member) return e
      return -1
    }
    const m = new Map<string, number>()
    for (let e = this.last[b]; e >= 0; e = this.prev[e]) m.set(this.member[e], e)
    this.lookup[b] = m
    return m.get(member) ?? -1
  }

  /** Board b's entries as [member, score, score as text], newest first. */
  *membersOf(b: number): Generator<[string, number, string]> {
    for (let e = this.last[b]; e >= 0; e = this.prev[e]) yield [this.member[e], this.score[e], this.text[e]]
  }

  /** The first entry of board b (-1 when none), then next(e) until -1: the allocation-free walk. */
  first(b: number): number {
    return this.last[b]
  }
  next(e: number): number {
    return this.prev[e]
  }
  memberAt(e: number): string {
    return this.member[e]
  }
  scoreAt(e: number): number {
    return this.score[e]
  }
  textAt(e: number): string {
    return this.text[e]
  }

  /** The batch as a map board → member → best score (tests). */
  toMap(): Map<string, Map<string, number>> {
    const out = new Map<string, Map<string, number>>()
    this.keys.forEach((k, b) => out.set(k, new Map([...this.membersOf(b)].reverse().map(([m, s]) => [m, s]))))
    return out
  }
}

/** Groups writes by board; per (board, user) only the best score is kept, which is all ZADD LT would keep. */
export function groupByBoard(ws: Iterable<BoardWrite>): BoardBatch {
  const batch = new BoardBatch()
  for (const w of ws) batch.add(w.key, hashTag(w.key), w.period, w.expireAtS ?? 0, w.member, w.score)
  return batch
}

/** Members per ZADD command: bounds the size of one command (and Redis' time inside it). */
const MEMBERS_PER_ZADD = 1000
/**
 * A board with this many members in a batch gets its own ZADD instead of a place in its province's
 * script: inside a script every argument is made a Lua string and back, ≈ 1 µs of Redis per entry
 * more than a plain ZADD (bench/board-cost.ts), which outweighs one more command for this process.
 */
export const DIRECT_MIN_MEMBERS = 8

/**
 * The board writes of one hash tag in one script: per board ZADD LT of its members, its TTL once
 * (EXPIRE NX) and, for a gated board due for it, the trim to K and its K-th score. One command for
 * hundreds of boards: what a board write costs this process is per command, not per board.
 * ARGV[1] K, then per key: a header 8 × member count + flags (1 expire, 4 refresh), the TTL when
 * flag 1 is set, then the members as (score, member) pairs. Few arguments per board matter: most
 * boards of a national batch take one member, and every argument costs both sides.
 * Returns the K-th scores of the refreshed boards, in order ('' when a board holds fewer than K).
 */
const BOARD_WRITE = `
local K = tonumber(ARGV[1])
local a = 2
local out = {}
local call, floor, unpack = redis.call, math.floor, unpack
for j = 1, #KEYS do
  local k = KEYS[j]
  local h = tonumber(ARGV[a])
  local n, flags = floor(h / 8), h % 8
  a = a + 1
  local ttl
  if flags % 2 == 1 then
    ttl = ARGV[a]
    a = a + 1
  end
  if n == 1 then
    call('ZADD', k, 'LT', ARGV[a], ARGV[a + 1])
    a = a + 2
  else
    local i = 0
    while i < n do
      local m = n - i < 1000 and n - i or 1000
      call('ZADD', k, 'LT', unpack(ARGV, a, a + 2 * m - 1))
      a = a + 2 * m
      i = i + m
    end
  end
  if ttl then call('EXPIRE', k, ttl, 'NX') end
  if flags >= 4 then
    call('ZREMRANGEBYRANK', k, K, -1)
    local r = call('ZRANGE', k, K - 1, K - 1, 'WITHSCORES')
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
 * Gated boards (g:…: the national board) take a write only when it can be in their top `topK`: its score
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
  async function write(redis: Redis, ws: Iterable<BoardWrite> | BoardBatch): Promise<void> {
    const batch = ws instanceof BoardBatch ? ws : groupByBoard(ws)
    const ops: Promise<unknown>[] = []
    const now = Date.now()
    // One socket write for the batch's commands (each sent on its own costs a write call and a
    // string copy: most of this process' time at thousands of boards per batch). A Cluster's
    // pipeline must stay in one slot, so there each command goes on its own.
    const pipe = isCluster(redis) ? null : redis.pipeline()
    const out: Sink = (pipe as unknown as Sink | null) ?? redis
    /** Writes of boards that share a hash tag (a province's), sent as one script per tag. */
    const tagged = new Map<string, { keys: string[]; args: string[]; refresh: { score: number; at: number }[] }>()
    const KText = String(K)
    for (let b = 0; b < batch.size; b++) {
      const key = batch.keys[b]
      const gated = key.charCodeAt(0) === 103 // 'g'
      const th = gated ? thresholds.get(key) : undefined
      const theta = th ? th.score : Infinity
      let n = 0
      for (let e = batch.first(b); e >= 0; e = batch.next(e)) if (batch.scoreAt(e) <= theta) n++ // a worse one: K others are ahead of it for good
      const wrote = n > 0
      const period = batch.periods[b]
      const ttl = period ? PERIOD_TTL_S[period] : null
      const expireAtS = batch.expireAt[b]
      let expire = false
      if (wrote && (ttl || expireAtS) && !expiring.has(key)) {
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
      const tag = batch.tags[b]
      if (tag !== null && period && n < DIRECT_MIN_MEMBERS) {
        let t = tagged.get(tag)
        if (!t) tagged.set(tag, (t = { keys: [], args: [KText], refresh: [] }))
        t.keys.push(key)
        const args = t.args
        args.push(String(n * 8 + (expire ? 1 : 0) + (refresh ? 4 : 0)))
        if (expire) args.push(String(ttl))
        for (let e = batch.first(b); e >= 0; e = batch.next(e)) if (batch.scoreAt(e) <= theta) args.push(batch.textAt(e), batch.memberAt(e))
        if (refresh) t.refresh.push(refresh)
        continue
      }
      let zadd: string[] = [key, 'LT']
      for (let e = batch.first(b); e >= 0; e = batch.next(e)) {
        if (batch.scoreAt(e) > theta) continue
        if (zadd.length === 2 + 2 * MEMBERS_PER_ZADD) {
          ops.push(sendFlat(out, 'zadd', zadd))
          zadd = [key, 'LT']
        }
        zadd.push(batch.textAt(e), batch.memberAt(e))
      }
      if (zadd.length > 2) ops.push(sendFlat(out, 'zadd', zadd))
      // After the ZADD that creates the key, on the same path (EXPIRE NX on no key does nothing).
      if (expire) ops.push(ttl ? sendFlat(out, 'expire', [key, ttl, 'NX']) : sendFlat(out, 'expireat', [key, expireAtS, 'NX']))
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
    for (const [tag, g] of batch.fan.groups) {
      const args = [String(g.codes.size)].concat(g.units, String(g.slots.size), g.periods, g.events)
      ops.push(evalFlat(out, fanOutScript, ['b:' + tag], args, redis))
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
