import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Command, type Redis } from 'ioredis'
import { evalFlat, pipelineFor } from './clients/redis.ts'
import { badRequest } from './errors.ts'
import type { RegionTree } from './regions.ts'
import { boardKey, isGated, isVirtual, type BoardScope, type Metric } from './scoring.ts'

/**
 * Reads of a board, complete, gated or virtual (docs/boards.md). A complete board (town, county,
 * institution, own) is one sorted set read directly. The gated national board is exact in its first
 * K entries; past them, and for its total, it is read from its units: the complete boards that
 * partition it (the counties and the own boards of provinces and cities), merged in board order. A
 * virtual board (city, province) is never written: every read of it is such a merge of its units.
 * The units of a province share its hash tag, so one script (board-group.lua) merges a province's
 * units inside Redis, on one slot: a city or province read is one call, a national one 31.
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

/**
 * A communicator's rank, neighbours and the board's size on a complete board, in one call (one round
 * trip instead of three: ZRANK, then ZRANGE around it, and ZCARD). Read-only, so a replica may serve it.
 */
const AROUND_SCRIPT = `#!lua flags=no-writes
local r = redis.call('ZRANK', KEYS[1], ARGV[1])
local card = redis.call('ZCARD', KEYS[1])
if not r then return { card, -1, {} } end
local n = tonumber(ARGV[2])
local from = r > n and r - n or 0
return { card, r, redis.call('ZRANGE', KEYS[1], from, r + n, 'WITHSCORES') }`
const aroundScript = { lua: AROUND_SCRIPT, sha: createHash('sha1').update(AROUND_SCRIPT).digest('hex') }

/** How long a gated or virtual board's total (a sum over its units) is reused: well inside the freshness promise. */
export const TOTAL_CACHE_MS = 200

const GROUP_SCRIPT = readFileSync(new URL('./board-group.lua', import.meta.url), 'utf8')
const GROUP_SHA = createHash('sha1').update(GROUP_SCRIPT).digest('hex')

/**
 * The boards one script call reads, all of one province (one hash slot): keys in preorder and their
 * layout, one letter each, as board-group.lua reads them (here all 'u', units: no city or province
 * board is stored to answer for its own); `args` and `head` (its RESP encoding) are the call up to its
 * per-call arguments, built on first use.
 */
interface Group {
  keys: string[]
  layout: string
  args?: string[]
  head?: Buffer
}
type GroupMode = 'a' | 'p' | 't'

const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`

/**
 * A group's EVALSHA, written from its cached encoding: through ioredis's own path every call would
 * flatten and re-encode its ~100 keys (3,724 for a national read), which cost this process more CPU
 * than the replies. `args` stays complete, so key routing (a Cluster reads the first key's slot)
 * works as for any command.
 */
class GroupCommand extends Command {
  private readonly head: Buffer
  private readonly tail: string[]
  constructor(g: Group, tail: string[]) {
    super('evalsha', [], { replyEncoding: 'utf8' })
    this.head = g.head!
    this.tail = tail
    this.args = g.args!.concat(tail)
  }
  toWritable(): Buffer {
    return Buffer.concat([this.head, Buffer.from(this.tail.map(bulk).join(''))])
  }
}

/**
 * `askOne` (tests): ask every group of a national page for one entry, so that nearly every page
 * takes the second round.
 */
export function createBoardReader(deps: { redis: Redis; tree: RegionTree; topK: number; askOne?: boolean }) {
  const { redis, tree } = deps
  const K = deps.topK
  function runGroup(g: Group, mode: GroupMode, score: string, member: string, n: number): Promise<unknown> {
    if (!g.head) {
      g.args = [GROUP_SHA, String(g.keys.length), ...g.keys, g.layout, String(K)]
      g.head = Buffer.from(`*${1 + g.args.length + 4}\r\n${bulk('evalsha')}${g.args.map(bulk).join('')}`)
    }
    const tail = [mode, score, member, String(n)]
    const c = new GroupCommand(g, tail)
    redis.sendCommand(c)
    // Not loaded on this server yet (a restart, a failover, SCRIPT FLUSH): EVAL loads it.
    return c.promise.catch((err: Error) => {
      if (!String(err?.message).includes('NOSCRIPT')) throw err
      return redis.eval(GROUP_SCRIPT, g.keys.length, ...g.keys, g.layout, K, ...tail)
    })
  }

  /**
   * The groups of a gated or virtual board, cached per board key (the key lists are the client's main
   * cost per read otherwise): its units. A national board: one group per province. A province or a
   * city: one group, its own board and its counties (a province's also its cities' own and counties).
   */
  const groupCache = new Map<string, Group[]>()
  function groupsOf(b: BoardRef): Group[] {
    let out = groupCache.get(b.key)
    if (out) return out
    const key = (scope: BoardScope) => boardKey(b.metric, scope, b.periodKey)
    const build = (code: string, head: boolean): Group => {
      const g: Group = { keys: [], layout: '' }
      const add = (scope: BoardScope, letter: string) => {
        g.keys.push(key(scope))
        g.layout += letter
      }
      const units = (c: string) => {
        add({ kind: 'own', code: c }, 'u')
        const kids = tree.children(c)
        for (const x of kids) if (x.code.length === 6) add({ kind: 'region', code: x.code }, 'u')
        for (const x of kids) if (x.code.length === 4) units(x.code)
      }
      // In a national read a province's gated board stands in for its units when it can (board-group.lua).
      if (head) add({ kind: 'region', code }, 'P')
      units(code)
      return g
    }
    out = b.scope.kind === 'region' ? [build(b.scope.code, false)] : tree.children(null).map((p) => build(p.code, true))
    if (groupCache.size >= 4096) groupCache.clear()
    groupCache.set(b.key, out)
    return out
  }

  /** Per group totals, reused for TOTAL_CACHE_MS; the last known ones also size a page's asks (below). */
  const totals = new Map<string, { at: number; value: Promise<number[]> }>()
  const lastTotals = new Map<string, number[]>()
  async function groupTotals(b: BoardRef): Promise<number[]> {
    const ns = (await Promise.all(groupsOf(b).map((g) => runGroup(g, 't', '0', '', 0)))).map(Number)
    if (lastTotals.size > 10_000) lastTotals.clear()
    lastTotals.set(b.key, ns)
    return ns
  }

  /** A gated board holding fewer than K entries holds everyone, exactly (nothing was ever skipped). */
  const isComplete = (b: BoardRef, card: number) => !isGated(b.scope) || (!isVirtual(b.scope) && card < K)

  async function total(b: BoardRef): Promise<number> {
    if (!isVirtual(b.scope)) {
      const card = await redis.zcard(b.key)
      if (isComplete(b, card)) return card
    }
    const now = Date.now()
    let t = totals.get(b.key)
    if (!t || now - t.at > TOTAL_CACHE_MS) {
      if (totals.size > 10_000) totals.clear()
      t = { at: now, value: groupTotals(b) }
      totals.set(b.key, t)
      t.value.catch(() => totals.delete(b.key))
    }
    return (await t.value).reduce((a, v) => a + v, 0)
  }

  /**
   * The `limit` entries after position (score, member) in the merged order of the units, and how many
   * entries lie at or before that position. Each group merges its own (in Redis). A national board's
   * 31 groups are each asked for about their share of the page (by their last known totals: a hint,
   * any ask is exact); a group that filled its ask may hold more, so past the earliest such group's
   * last entry nothing is certain, and those groups whose last entry falls inside the page are asked
   * again after it, for what the page can still need.
   */
  async function mergedAfter(b: BoardRef, score: number, member: string, limit: number): Promise<{ entries: Entry[]; before: number }> {
    const groups = groupsOf(b)
    const ask = (g: Group, s: string, u: string, n: number) => runGroup(g, 'p', s, u, n) as Promise<[number, string[]]>
    if (groups.length === 1) {
      const [n, flat] = await ask(groups[0], String(score), member, limit)
      return { entries: pairs(flat), before: Number(n) }
    }
    const weights = lastTotals.get(b.key) ?? groups.map((g) => g.keys.length)
    const sum = weights.reduce((a, v) => a + v, 0) || 1
    const asks = weights.map((w) => (deps.askOne ? 1 : Math.min(limit, Math.ceil((limit * 1.5 * w) / sum) + 2)))
    const replies = await Promise.all(groups.map((g, i) => ask(g, String(score), member, asks[i])))
    let before = 0
    const lists = replies.map(([n, flat]) => {
      before += Number(n)
      return pairs(flat)
    })
    let all = lists.flat().sort(cmp)
    const end = all.length >= limit ? all[limit - 1] : null
    const again: number[] = []
    lists.forEach((l, i) => {
      if (l.length >= asks[i] && asks[i] < limit && (!end || cmp(l[l.length - 1], end) < 0)) again.push(i)
    })
    if (again.length) {
      const more = await Promise.all(
        again.map((i) => {
          const last = lists[i][lists[i].length - 1]
          const upTo = all.filter((e) => cmp(e, last) <= 0).length // entries known up to there: the page needs at most limit - upTo more
          return ask(groups[i], String(last[0]), last[1], limit - upTo)
        }),
      )
      all = all.concat(...more.map(([, flat]) => pairs(flat))).sort(cmp)
    }
    return { entries: all.slice(0, limit), before }
  }

  /** Where (score, member) stands in the gated board itself: entries strictly before it. */
  async function positionIn(key: string, score: number, member: string): Promise<number> {
    const [above, ties] = await Promise.all([redis.zcount(key, '-inf', `(${score}`), redis.zrange(key, String(score), String(score), 'BYSCORE')])
    return above + ties.filter((m) => m < member).length
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
      if (isVirtual(b.scope)) {
        // From the top: after a place before every stored score.
        const { entries, before } = await mergedAfter(b, cursor ? cursor[0] : -Number.MAX_VALUE, cursor ? cursor[1] : '', limit)
        return { flat: flatten(entries), firstRank: before + 1 }
      }
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
     * On a complete board (not gated): her rank (null: not on it) with `around` neighbours each side,
     * and the board's total, in one call.
     */
    async aroundComplete(b: BoardRef, user: string, around: number): Promise<{ rank: number | null; flat: string[]; firstRank: number; total: number }> {
      const [card, r, flat] = (await evalFlat(redis, aroundScript, [b.key], [user, around])) as [number, number, string[]]
      if (r < 0) return { rank: null, flat: [], firstRank: 1, total: card }
      return { rank: r + 1, flat, firstRank: Math.max(0, r - around) + 1, total: card }
    },

    /**
     * A communicator's rank and `around` neighbours each side; `unit` is the complete board that holds
     * her inside a gated board (her county or own board; null when she lies outside it). Rank null: not on it.
     */
    async around(b: BoardRef, user: string, unit: BoardScope | null, around: number): Promise<{ rank: number | null; flat: string[]; firstRank: number }> {
      if (isVirtual(b.scope)) {
        const us = unit ? await redis.zscore(boardKey(b.metric, unit, b.periodKey), user) : null
        return us === null ? { rank: null, flat: [], firstRank: 1 } : aroundMerged(b, user, us, around)
      }
      // Her unit is in her province's slot, the national board in its own: one pipeline only on one server.
      const [[, card], [, rank], [, gs], [, us]] = (await pipelineFor(redis)
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
      return aroundMerged(b, user, us, around)
    },
  }

  /** Her rank and neighbours merged from the units, her score there being `us`. */
  async function aroundMerged(b: BoardRef, user: string, us: string, around: number): Promise<{ rank: number | null; flat: string[]; firstRank: number }> {
    // Each group: entries before her, and its `around` nearest each side (nearest first).
    const replies = (await Promise.all(groupsOf(b).map((g) => runGroup(g, 'a', us, user, around)))) as [number, string[], string[]][]
    const score = Number(us)
    let before = 0
    const ahead: Entry[] = []
    const behind: Entry[] = []
    for (const [n, a, bh] of replies) {
      before += Number(n)
      ahead.push(...pairs(a))
      behind.push(...pairs(bh))
    }
    ahead.sort(cmp)
    behind.sort(cmp)
    const near = ahead.slice(Math.max(0, ahead.length - around))
    const flat = flatten([...near, [score, user], ...behind.slice(0, around)])
    return { rank: before + 1, flat, firstRank: before + 1 - near.length }
  }
}
export type BoardReader = ReturnType<typeof createBoardReader>
