import type { ClickHouseClient } from '@clickhouse/client'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { masters, pipelineFor } from '../core/clients/redis.ts'
import { cacheUsers, counterField, DERIVED_PATTERNS, formatTotals, keys, PRUNE_DAYS, streakField } from '../core/keys.ts'
import type { RegionTree } from '../core/regions.ts'
import { DEFAULT_TOP_K, isGated, PERIOD_TTL_S, packScore, type Metric } from '../core/scoring.ts'
import type { User, UserStore } from '../core/store/users.ts'
import { compactDay, DAY_MS, isoDay, PERIODS, periodRange, SHANGHAI_OFFSET_MS, type Period } from '../core/time.ts'
import { dedupeExpireAt, dedupeGen, fingerprint, placeOf, shanghaiDayNo, type DedupeWindow } from './user-step.ts'
import { campaignStatus, type CampaignStore } from '../core/store/campaigns.ts'
import { packCampaignScore } from '../core/scoring.ts'
import { campaignSums } from './campaign-jobs.ts'
import { CAMPAIGN_KEEP_S } from './campaigns.ts'
import { BoardBatch, createBoardKeys, createBoardWriter } from './boards.ts'
import { rebuildWallets } from '../core/wallet.ts'

/**
 * Redis holds only derived state; ClickHouse facts are the record. This rebuilds every derived key
 * (user totals, caps counters, streaks, dedupe buckets, boards, the applied-sequence mark) from the
 * facts and the communicators from the durable store, producing the same keys and values as live
 * counting does.
 */

/** Why Redis cannot be trusted, or null. Redis is stale when it has applied fewer stream messages than ClickHouse holds facts for. */
export async function redisIsStale(redis: Redis, ch: ClickHouseClient): Promise<string | null> {
  const [mark, chMax] = await Promise.all([redis.get(keys.seq), maxFactSeq(ch)])
  if (mark === null) return 'empty: no applied-sequence mark'
  if (Number(mark) < chMax) return `stale: Redis applied up to ${mark}, facts go to ${chMax}`
  return null
}

async function maxFactSeq(ch: ClickHouseClient): Promise<number> {
  const r = await ch.query({ query: 'SELECT max(stream_seq) AS m FROM facts', format: 'JSONEachRow' })
  const rows = (await r.json()) as { m: string | number }[]
  return Number(rows[0]?.m ?? 0)
}

async function rows<T>(ch: ClickHouseClient, query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const r = await ch.query({ query, query_params: params, format: 'JSONEachRow' })
  return (await r.json()) as T[]
}

/** Deletes every derived key: scanned on each master (a Cluster's keys are spread over them), unlinked one by one (keys of one call would have to share a slot). */
async function deleteDerived(redis: Redis): Promise<number> {
  let n = 0
  for (const node of masters(redis)) {
    for (const match of DERIVED_PATTERNS) {
      let cursor = '0'
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000)
        cursor = next
        if (!found.length) continue
        const p = node.pipeline()
        for (const k of found) p.unlink(k)
        for (const [err, v] of (await p.exec()) ?? []) {
          if (err) throw err
          n += Number(v)
        }
      } while (cursor !== '0')
    }
  }
  return n
}

/** The best k (score, member) pairs seen, in board order (lower stored score first, then member). */
class TopK {
  private items: [number, string][] = []
  constructor(private k: number, readonly ttl: number | null, readonly tag: string | null) {}
  add(score: number, member: string) {
    this.items.push([score, member])
    if (this.items.length >= 4 * this.k) this.cut()
  }
  private cut() {
    this.items.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    this.items.length = Math.min(this.items.length, this.k)
  }
  best(): [number, string][] {
    this.cut()
    return this.items
  }
}

class Writer {
  private p: ReturnType<Redis['pipeline']>
  private n = 0
  written = 0
  constructor(private redis: Redis) {
    this.p = pipelineFor(redis)
  }
  add(f: (p: ReturnType<Redis['pipeline']>) => void) {
    f(this.p)
    if (++this.n >= 5000) return this.flush()
  }
  async flush() {
    if (!this.n) return
    const res = await this.p.exec()
    for (const [err] of res ?? []) if (err) throw err
    this.written += this.n
    this.p = pipelineFor(this.redis)
    this.n = 0
  }
}

const PERIOD_KEY_SQL: Record<Period, string> = {
  day: "concat('d', formatDateTime(day, '%Y%m%d'))",
  week: "concat('w', formatDateTime(toMonday(day), '%Y%m%d'))",
  month: "concat('m', formatDateTime(day, '%Y%m'))",
  year: "concat('y', toString(toYear(day)))",
  all: "'a'",
}

export async function rebuildRedis(deps: {
  redis: Redis
  ch: ClickHouseClient
  users: UserStore
  tree: RegionTree
  win: DedupeWindow
  log: Logger
  /** Campaigns not yet final get their totals and boards back too. */
  campaigns?: CampaignStore
  /** Entries each gated board keeps (BOARD_TOP_K; the aggregator's own). */
  topK?: number
}): Promise<void> {
  const { redis } = deps
  // The store refuses to spend or refund points while wallets are gone or half restored (an hour at
  // most, should this process die before the end).
  await redis.set(keys.rebuilding, String(Date.now()), 'EX', 3600)
  try {
    await rebuildAll(deps)
  } finally {
    await redis.del(keys.rebuilding)
  }
}

async function rebuildAll(deps: Parameters<typeof rebuildRedis>[0]): Promise<void> {
  const { redis, ch, tree, win, log } = deps
  const t0 = Date.now()
  const deleted = await deleteDerived(redis)
  log.info({ deleted }, 'rebuild: derived keys deleted')

  // 1. Communicators, from the durable store.
  let batch: User[] = []
  let users = 0
  for await (const u of deps.users.all()) {
    batch.push(u)
    if (batch.length >= 1000) {
      await cacheUsers(redis, batch)
      users += batch.length
      batch = []
    }
  }
  await cacheUsers(redis, batch)
  users += batch.length
  log.info({ users }, 'rebuild: communicators cached')

  const now = Date.now()
  const w = new Writer(redis)
  const keepFrom = now - PRUNE_DAYS * DAY_MS
  const today = String(shanghaiDayNo(now))
  const K = deps.topK ?? DEFAULT_TOP_K
  // 2. Each user's totals per period, and the boards from them. A gated board gets its top K only,
  // what live writes would have let through (see createBoardWriter), chosen here in memory. Boards
  // are written as live batches are: one ZADD per board with all its members; each communicator's
  // fields in one HSET at the end. Rows come by region (and institution): a chunk then holds whole
  // town and county boards, a few ZADDs of many members, rather than one member for each of
  // thousands of boards (which costs Redis and this process per board, as a live batch does).
  const writeBoards = createBoardWriter({ topK: K })
  const bks = createBoardKeys(tree)
  const fields = new Map<string, string[]>()
  for (const period of PERIODS) {
    const gated = new Map<string, TopK>()
    let chunk = new BoardBatch()
    // Chunks of ~2,000 boards: a board may span two chunks, which ZADD LT makes harmless.
    const add = (bk: string, tag: string | null, member: string, score: number) => {
      if (chunk.size >= 2000) {
        pending.push(chunk)
        chunk = new BoardBatch()
      }
      chunk.add(bk, tag, period, 0, member, score)
    }
    const pending: BoardBatch[] = []
    let boards = 0
    const write = (c: BoardBatch) => ((boards += c.size), writeBoards(redis, c))
    const ttl = PERIOD_TTL_S[period]
    const minDay = ttl ? isoDay(now - ttl * 1000 - 366 * 86400_000) : '1970-01-01'
    const list = await rows<{ user_id: string; pk: string; s: string; sr: string; p: string; pr: string; region: string; inst: string }>(
      ch,
      `SELECT user_id, ${PERIOD_KEY_SQL[period]} AS pk,
              sum(shares) AS s, maxIf(toUnixTimestamp64Milli(ts), shares > 0) AS sr,
              sum(points) AS p, maxIf(toUnixTimestamp64Milli(ts), points > 0) AS pr,
              argMax(region_code, stream_seq) AS region, argMax(institution_id, stream_seq) AS inst
       FROM facts FINAL WHERE decision = 'counted' AND day >= {minDay:Date}
       GROUP BY user_id, pk
       ORDER BY region, inst, user_id, pk`,
      { minDay },
    )
    for (const r of list) {
      const anyTs = Number(r.sr) || Number(r.pr)
      const range = periodRange(period, anyTs)
      if (ttl && range.startMs + ttl * 1000 < now) continue // its boards have expired too
      const s = Number(r.s) > 0
      const p = Number(r.p) > 0
      if (!s && !p) continue
      // The communicator's hash keeps the periods a new event can still reach (core/keys.ts).
      if (range.endMs > keepFrom) {
        let f = fields.get(r.user_id)
        if (!f) fields.set(r.user_id, (f = ['z', today]))
        f.push(range.key, formatTotals(s ? r.s : '', s ? r.sr : '', p ? r.p : '', p ? r.pr : ''))
      }
      // The live writer's interned scopes and cached key names: no strings built per row.
      const scopes = bks.regionScopes(r.region)
      const inst = r.inst ? bks.institutionScope(r.inst) : null
      for (const [metric, count, at] of [['shares', r.s, r.sr], ['points', r.p, r.pr]] as [Metric, string, string][]) {
        if (!(Number(count) > 0)) continue
        const score = packScore(period, range.startMs, Number(count), Number(at))
        for (const sc of inst ? [...scopes, inst] : scopes) {
          const bk = bks.key(sc, range.key, metric)
          if (isGated(sc)) {
            let t = gated.get(bk)
            if (!t) gated.set(bk, (t = new TopK(K, ttl, bks.tag(sc, range.key))))
            t.add(score, r.user_id)
            continue
          }
          add(bk, bks.tag(sc, range.key), r.user_id, score)
        }
      }
      for (const c of pending.splice(0)) await write(c)
    }
    for (const [bk, t] of gated) for (const [score, member] of t.best()) add(bk, t.tag, member, score)
    pending.push(chunk)
    for (const c of pending.splice(0)) await write(c)
    log.info({ period, rows: list.length, boards, gated: gated.size }, 'rebuild: totals and boards written')
  }
  for (const [user, f] of fields) await w.add((p) => p.hset(keys.user(user), ...f))
  await w.flush()
  log.info({ users: fields.size }, 'rebuild: communicators\' totals written')

  // 3. Caps counters and sign-in streaks of the days a new event can still reach.
  const firstDay = compactDay(keepFrom)
  const caps = await rows<{ user_id: string; d: string; type: string; n: string; ss: string }>(
    ch,
    `SELECT user_id, formatDateTime(day, '%Y%m%d') AS d, type, count() AS n, max(streak) AS ss
     FROM facts FINAL WHERE decision = 'counted' AND day >= {from:Date}
     GROUP BY user_id, d, type`,
    { from: isoDay(keepFrom) },
  )
  for (const c of caps) {
    if (c.d < firstDay) continue
    await w.add((p) => {
      p.hset(keys.user(c.user_id), counterField(c.d, c.type), c.n)
      if (c.type === 'signin') p.hset(keys.user(c.user_id), streakField(c.d), c.ss)
    })
  }
  log.info({ rows: caps.length }, 'rebuild: caps counters written')

  // 4. Dedupe entries of the two generations a lookup checks, with each event's recorded decision.
  const codes: Record<string, string> = { counted: 'c', capped: 'x', unknown_user: 'u', uncertified: 'n' }
  let dedupe = 0
  const gen = dedupeGen(now, win)
  for (let dayNo = (gen - 1) * win.genDays; dayNo <= shanghaiDayNo(now); dayNo++) {
    const dayStart = dayNo * DAY_MS - SHANGHAI_OFFSET_MS
    const day = compactDay(dayStart)
    const g = Math.floor(dayNo / win.genDays)
    const list = await rows<{ event_id: string; stream_seq: string; stream_idx: string; user_id: string; decision: string; points: string; streak: string }>(
      ch,
      `SELECT event_id, stream_seq, stream_idx, user_id, decision, points, streak FROM facts FINAL
       WHERE decision IN ('counted', 'capped', 'unknown_user', 'uncertified')
         AND formatDateTime(received_at, '%Y%m%d') = {day:String}
         AND day BETWEEN {lo:Date} AND {hi:Date}`,
      { day, lo: isoDay(dayStart - (2 * win.genDays + 1) * DAY_MS), hi: isoDay(dayStart + 2 * DAY_MS) },
    )
    for (const f of list) {
      const key = keys.dedupe(f.user_id, g)
      const value = `${placeOf(Number(f.stream_seq), Number(f.stream_idx))}:${codes[f.decision]}${f.decision === 'counted' ? f.points : 0}:${f.decision === 'counted' ? f.streak : 0}`
      await w.add((p) => {
        p.hset(key, fingerprint(f.event_id), value)
        p.expireat(key, dedupeExpireAt(g, win))
      })
    }
    dedupe += list.length
  }
  log.info({ entries: dedupe }, 'rebuild: dedupe entries written')

  // 5. Campaigns still counting: each communicator's totals from the facts (marked backfilled, so a
  // pending backfill adds nothing again), and the campaign's board.
  for (const c of deps.campaigns ? await deps.campaigns.list() : []) {
    const st = campaignStatus(c)
    if (st === 'final' || st === 'cancelled') continue
    const sums = await campaignSums(ch, c)
    const expireAt = Math.ceil(c.cutoff_at / 1000) + CAMPAIGN_KEEP_S
    for (const r of sums) {
      const fields: Record<string, string> = { b: '1' }
      if (Number(r.s) > 0) Object.assign(fields, { s: r.s, sr: r.sr })
      if (Number(r.p) > 0) Object.assign(fields, { p: r.p, pr: r.pr })
      const [count, reached] = c.metric === 'shares' ? [r.s, r.sr] : [r.p, r.pr]
      await w.add((p) => {
        p.hset(keys.campaignUser(r.user_id, c.id), fields)
        p.expireat(keys.campaignUser(r.user_id, c.id), expireAt)
        if (Number(count) > 0) p.zadd(keys.campaignBoard(c.id), packCampaignScore(c, Number(count), Number(reached)), r.user_id)
      })
    }
    await w.add((p) => p.expireat(keys.campaignBoard(c.id), expireAt))
    log.info({ campaign: c.id, users: sums.length }, 'rebuild: campaign totals and board written')
  }

  // 6. Points spent and given back in the store: the wallets, from the ledger facts.
  await w.flush()
  log.info({ rows: await rebuildWallets(redis, ch) }, 'rebuild: wallets written')

  // 7. The applied-sequence mark: counting resumes after the last fact.
  const mark = await maxFactSeq(ch)
  await w.add((p) => p.set(keys.seq, String(mark)))
  await w.flush()
  log.info({ ms: Date.now() - t0, writes: w.written, mark }, 'rebuild: done')
}
