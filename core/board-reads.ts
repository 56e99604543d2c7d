import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { badRequest } from './errors.ts'
import type { RegionTree } from './regions.ts'
import { boardKey, isGated, type BoardScope, type Metric } from './scoring.ts'

/**
 * Reads of a board, complete or gated (docs/boards.md). A complete board (town, county,
 * institution, own) is one sorted set read directly. A gated board (city, province, national) is
 * exact in its first K entries; past them, and for its total, it is read from its units: the complete
 * boards that partition it (its counties and the own boards of its province and cities), merged in
 * board order. Every unit is read with one single-key command, so this works on a Redis Cluster too.
 */

/** Stored scores ascending, then member (Redis orders equal scores by member bytes; ids are ASCII). */
type Entry = [score: number, member: string]
const cmp = (a: Entry, b: Entry) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)

/** A short tag of the board a cursor was cut from (its Redis key: metric, scope, period and bucket). */
const boardTag = (key: string) => createHash('sha1').update(key).digest('base64url').slice(0, 8)

/** The cursor after an entry: its stored score and user id, and the board's tag. */
export const encodeCursor = (score: number, user: string, key: string) => Buffer.from(JSON.stringify([score, user, boardTag(key)])).toString('base64url')
/** A cursor of this board; one cut from another board (say all-time, used on a month) is refused rather than read as an empty page. */
export function decodeCursor(s: string, key: string): [number, string] {
  let v: unknown
  try {
    v = JSON.parse(Buffer.from(s, 'base64url').toString())
  } catch {
    /* fall through */
  }
  if (Array.isArray(v) && typeof v[0] === 'number' && Number.isSafeInteger(v[0]) && typeof v[1] === 'string' && (v.length === 2 || (v.length === 3 && typeof v[2] === 'string'))) {
    if (v.length === 3 && v[2] !== boardTag(key)) throw badRequest('after: a cursor from another board (metric, region, institution or period); start again without it', 'invalid_cursor')
    return [v[0], v[1]]
  }
  throw badRequest('after: not a cursor this service returned', 'invalid_cursor')
}

/**
 * One page of a sorted-set board (stored scores ascending = best first): from the top, or after a
 * cursor (stored score, user id) so that pages neither skip nor repeat while scores change.
 */
export async function pageBoard(redis: Redis, key: string, limit: number, after?: string): Promise<{ flat: string[]; firstRank: number }> {
  if (!after) return { flat: await redis.zrange(key, 0, String(limit - 1), 'WITHSCORES'), firstRank: 1 }
  const [score, user] = decodeCursor(after, key)
  return pageAfter(redis, key, score, user, limit)
}

async function pageAfter(redis: Redis, key: string, score: number, user: string, limit: number): Promise<{ flat: string[]; firstRank: number }> {
  // Members at the cursor's score sort by user id; skip up to and including the cursor.
  let flat: string[] = []
  let extra = 0
  for (;;) {
    const got = await redis.zrange(key, String(score), '+inf', 'BYSCORE', 'LIMIT', 0, limit + extra + 1, 'WITHSCORES')
    const kept: string[] = []
    let skipped = 0
    for (let i = 0; i < got.length; i += 2) {
      const s = Number(got[i + 1])
      if (s === score && got[i] <= user) skipped++
      else kept.push(got[i], got[i + 1])
    }
    flat = kept.slice(0, limit * 2)
    if (got.length / 2 < limit + extra + 1 || kept.length / 2 >= limit) break
    extra += skipped + 100
  }
  const firstRank = flat.length ? ((await redis.zrank(key, flat[0])) ?? 0) + 1 : 1
  return { flat, firstRank }
}

/**
 * Around a position (score s, member u) of one unit: how many entries lie strictly above score s,
 * the members at exactly s (the caller splits them by member), up to ARGV[3] entries below s in
 * order and up to ARGV[4] above it, nearest first. One key: one slot.
 */
const PROBE = `
local k, s = KEYS[1], ARGV[1]
local above = 0
if ARGV[5] == '1' then above = redis.call('ZCOUNT', k, '-inf', '(' .. s) end
local ties = redis.call('ZRANGE', k, s, s, 'BYSCORE')
local after, before = {}, {}
local na, nb = tonumber(ARGV[3]), tonumber(ARGV[4])
if na > 0 then after = redis.call('ZRANGE', k, '(' .. s, '+inf', 'BYSCORE', 'LIMIT', 0, na, 'WITHSCORES') end
if nb > 0 then before = redis.call('ZRANGE', k, '(' .. s, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, nb, 'WITHSCORES') end
return {above, ties, after, before}
`
type ProbeReply = [number, string[], string[], string[]]
type Probe = (key: string, score: string, member: string, nAfter: number, nBefore: number, count: '0' | '1') => Promise<ProbeReply>

const pairs = (flat: string[]): Entry[] => {
  const out: Entry[] = []
  for (let i = 0; i < flat.length; i += 2) out.push([Number(flat[i + 1]), flat[i]])
  return out
}
const flatten = (es: Entry[]) => es.flatMap(([s, m]) => [m, String(s)])

export interface BoardRef {
  key: string
  scope: BoardScope
  metric: Metric
  periodKey: string
}

/** How long a gated board's total (a sum over its units) is reused: well inside the freshness promise. */
export const TOTAL_CACHE_MS = 200

export function createBoardReader(deps: { redis: Redis; tree: RegionTree; topK: number }) {
  const { redis, tree } = deps
  const K = deps.topK
  if (!(redis as unknown as { boardProbe?: unknown }).boardProbe) redis.defineCommand('boardProbe', { numberOfKeys: 1, lua: PROBE })
  const probe = ((...a: Parameters<Probe>) => (redis as unknown as { boardProbe: Probe }).boardProbe(...a)) as Probe

  /** The units of a gated scope: its counties, and the own boards of itself and its cities. */
  const unitCache = new Map<string, BoardScope[]>()
  function unitsOf(scope: BoardScope): BoardScope[] {
    const tag = scope.kind === 'region' ? scope.code : ''
    let out = unitCache.get(tag)
    if (out) return out
    out = []
    const walk = (code: string | null) => {
      if (code !== null && code.length <= 4) out!.push({ kind: 'own', code })
      for (const c of tree.children(code)) {
        if (c.code.length === 6) out!.push({ kind: 'region', code: c.code })
        else if (c.code.length <= 4) walk(c.code)
      }
    }
    walk(scope.kind === 'region' ? scope.code : null)
    unitCache.set(tag, out)
    return out
  }
  const unitKeys = (b: BoardRef) => unitsOf(b.scope).map((u) => boardKey(b.metric, u, b.periodKey))

  const totals = new Map<string, { at: number; value: Promise<number> }>()
  async function sumUnits(b: BoardRef): Promise<number> {
    const p = redis.pipeline()
    for (const k of unitKeys(b)) p.zcard(k)
    let n = 0
    for (const [err, v] of (await p.exec()) ?? []) {
      if (err) throw err
      n += Number(v)
    }
    return n
  }

  /** A gated board holding fewer than K entries holds everyone, exactly (nothing was ever skipped). */
  const isComplete = (b: BoardRef, card: number) => !isGated(b.scope) || card < K

  async function total(b: BoardRef): Promise<number> {
    const card = await redis.zcard(b.key)
    if (isComplete(b, card)) return card
    const now = Date.now()
    let t = totals.get(b.key)
    if (!t || now - t.at > TOTAL_CACHE_MS) {
      if (totals.size > 10_000) totals.clear()
      t = { at: now, value: sumUnits(b) }
      totals.set(b.key, t)
      t.value.catch(() => totals.delete(b.key))
    }
    return t.value
  }

  /**
   * The `limit` entries after position (score, member) in the merged order of the units, and how many
   * entries lie at or before that position. Each unit is asked for a few entries; units that may hold
   * more than they gave are asked again past their last one until the page is certain.
   */
  async function mergedAfter(b: BoardRef, score: number, member: string, limit: number): Promise<{ entries: Entry[]; before: number }> {
    const keys = unitKeys(b)
    let ask = Math.max(2, Math.ceil((limit * 4) / keys.length) + 1)
    let from: (Entry | null)[] = keys.map(() => [score, member])
    const got: Entry[] = []
    let before = 0
    let first = true
    for (;;) {
      const replies = await Promise.all(keys.map((k, i) => (from[i] ? probe(k, String(from[i]![0]), from[i]![1], ask, 0, first ? '1' : '0') : null)))
      let cut: Entry | null = null
      const next: (Entry | null)[] = keys.map(() => null)
      replies.forEach((r, i) => {
        if (!r) return
        const [above, ties, after] = r
        const [s, u] = from[i]!
        if (first) before += Number(above)
        const mine: Entry[] = []
        for (const m of ties) {
          if (m > u) mine.push([s, m])
          else if (first) before++
        }
        mine.push(...pairs(after))
        got.push(...mine)
        // A unit that filled its ask may hold more: nothing past its last entry is certain yet.
        if (after.length / 2 >= ask && mine.length) {
          const last = mine[mine.length - 1]
          next[i] = last
          if (!cut || cmp(last, cut) < 0) cut = last
        }
      })
      first = false
      got.sort(cmp)
      const certain = cut ? got.filter((e) => cmp(e, cut!) <= 0) : got
      if (!cut || certain.length >= limit) return { entries: certain.slice(0, limit), before }
      // Only units whose last entry lies before the page's end as known can change the page.
      from = next.map((e) => (e && cmp(e, got[Math.min(limit, got.length) - 1]) <= 0 ? e : null))
      ask = Math.min(ask * 4, limit + 1)
    }
  }

  /** Where (score, member) stands in the gated board itself: entries strictly before it. */
  async function positionIn(key: string, score: number, member: string): Promise<number> {
    const [above, ties] = await probe(key, String(score), member, 0, 0, '1')
    return Number(above) + ties.filter((m) => m < member).length
  }

  return {
    topK: K,
    ref(metric: Metric, scope: BoardScope, periodKey: string): BoardRef {
      return { key: boardKey(metric, scope, periodKey), scope, metric, periodKey }
    },
    total,

    /** One page: `flat` as ZRANGE WITHSCORES gives it, and the rank of its first entry. */
    async page(b: BoardRef, limit: number, after?: string): Promise<{ flat: string[]; firstRank: number }> {
      const cursor = after ? decodeCursor(after, b.key) : null
      const card = await redis.zcard(b.key)
      if (isComplete(b, card)) return cursor ? pageAfter(redis, b.key, cursor[0], cursor[1], limit) : { flat: await redis.zrange(b.key, 0, String(limit - 1), 'WITHSCORES'), firstRank: 1 }
      if (!cursor) {
        const top = await redis.zrange(b.key, 0, String(Math.min(limit, K) - 1), 'WITHSCORES')
        if (limit <= K) return { flat: top, firstRank: 1 }
        const lastTop = pairs(top).at(-1)!
        const rest = await mergedAfter(b, lastTop[0], lastTop[1], limit - K)
        return { flat: top.concat(flatten(rest.entries)), firstRank: 1 }
      }
      const [s, u] = cursor
      const pos = await positionIn(b.key, s, u)
      // Inside the exact first K of the gated board: read it there.
      if (pos + 1 + limit <= K) return pageAfter(redis, b.key, s, u, limit)
      const { entries, before } = await mergedAfter(b, s, u, limit)
      return { flat: flatten(entries), firstRank: before + 1 }
    },

    /**
     * A communicator's rank and `around` neighbours each side; `unit` is the complete board that holds
     * her inside a gated board (her county or own board; null when she lies outside it). Rank null: not on it.
     */
    async around(b: BoardRef, user: string, unit: BoardScope | null, around: number): Promise<{ rank: number | null; flat: string[]; firstRank: number }> {
      const [[, card], [, rank], [, gs], [, us]] = (await redis
        .pipeline()
        .zcard(b.key)
        .zrank(b.key, user)
        .zscore(b.key, user)
        .zscore(unit ? boardKey(b.metric, unit, b.periodKey) : b.key, user)
        .exec()) as [unknown, unknown][] as [[null, number], [null, number | null], [null, string | null], [null, string | null]]
      const direct = async (r: number) => {
        const from = Math.max(0, r - around)
        return { rank: r + 1, flat: await redis.zrange(b.key, from, String(r + around), 'WITHSCORES'), firstRank: from + 1 }
      }
      if (isComplete(b, card)) return rank === null ? { rank: null, flat: [], firstRank: 1 } : direct(rank)
      if (us === null || !unit) return { rank: null, flat: [], firstRank: 1 }
      // In the exact first K with her current score, and her neighbours too: read the gated board.
      if (rank !== null && gs === us && rank + around < K) return direct(rank)
      const score = Number(us)
      const replies = await Promise.all(unitKeys(b).map((k) => probe(k, us, user, around, around, '1')))
      let before = 0
      const ahead: Entry[] = []
      const behind: Entry[] = []
      for (const [above, ties, after, bef] of replies) {
        before += Number(above)
        for (const m of ties) {
          if (m < user) {
            before++
            ahead.push([score, m])
          } else if (m > user) behind.push([score, m])
        }
        ahead.push(...pairs(bef))
        behind.push(...pairs(after))
      }
      ahead.sort(cmp)
      behind.sort(cmp)
      const near = ahead.slice(Math.max(0, ahead.length - around))
      const flat = flatten([...near, [score, user], ...behind.slice(0, around)])
      return { rank: before + 1, flat, firstRank: before + 1 - near.length }
    },
  }
}
export type BoardReader = ReturnType<typeof createBoardReader>
