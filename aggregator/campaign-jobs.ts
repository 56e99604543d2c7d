import { pipelineFor } from '../core/clients/redis.ts'
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { ClickHouseClient } from '@clickhouse/client'
import type { JetStreamManager } from '@nats-io/jetstream'
import type { Redis, Result } from 'ioredis'
import type { Logger } from 'pino'
import { keys } from '../core/keys.ts'
import { chTime } from '../core/schema.ts'
import { packCampaignScore } from '../core/scoring.ts'
import { campaignStatus, prizeOf, type Campaign, type CampaignStore } from '../core/store/campaigns.ts'
import { lastSeq, waitForAcked } from '../core/stream.ts'
import { isoDay } from '../core/time.ts'
import { CAMPAIGN_KEEP_S } from './campaigns.ts'
import { fingerprint } from './user-step.ts'

/**
 * The two jobs of a campaign besides the live feed, each run exactly once across any number of
 * processes by a lease on the campaign record (compare-and-set in NATS KV), and each safe to run
 * again after a crash:
 *
 * Backfill (a campaign whose window starts before it was created): the barrier is the stream's last
 * sequence read after the campaign was stored. Aggregators feed every later message live (they load
 * the campaign before processing any message published after it was stored). Facts up to the
 * barrier are added from ClickHouse once all of them are stored (the consumer's ack floor passed
 * the barrier): summed per communicator, except for communicators fed live while the backfill was
 * pending, whose events are added one by one unless the live feed marked them. A per-user marker
 * makes the addition happen once even if the job is run again.
 *
 * Settlement: once the cutoff (end + grace, or the moment an organiser settles after the end) has
 * passed and every message published before it is stored, the result is recounted from the facts
 * (counted events whose time is in the window and which were received before the cutoff), ranked,
 * written to `campaign_results` and the campaign marked final. Identical rows from a second run are
 * folded; `settled_at` is set once.
 */
export interface CampaignJobDeps {
  redis: Redis
  ch: ClickHouseClient
  jsm: JetStreamManager
  campaigns: CampaignStore
  log: Logger
  stream: string
}

const LEASE_MS = 120_000

class Skip extends Error {}

/** Adds backfilled totals to a user's campaign hash once (marker b), returns the totals. */
const BACKFILL_USER = `local k = KEYS[1]
if redis.call('HGET', k, 'b') == '1' then
  local v = redis.call('HMGET', k, 's', 'sr', 'p', 'pr')
  return { v[1] or '', v[2] or '', v[3] or '', v[4] or '' }
end
local v = redis.call('HMGET', k, 's', 'sr', 'p', 'pr')
local s, sr, p, pr = tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0'), tonumber(v[4] or '0')
local function add(es, ep, ets)
  if es > 0 then s = s + es; if ets > sr then sr = ets end end
  if ep > 0 then p = p + ep; if ets > pr then pr = ets end end
end
if ARGV[1] == 'sum' then
  -- shares, shares reached at, points, points reached at (of the facts up to the barrier)
  local as, asr, ap, apr = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  if as > 0 then s = s + as; if asr > sr then sr = asr end end
  if ap > 0 then p = p + ap; if apr > pr then pr = apr end end
else
  -- events: fingerprint, shares, points, ts; skipped when the live feed marked them
  for i = 2, #ARGV - 1, 4 do
    if redis.call('HEXISTS', k, 'l:' .. ARGV[i]) == 0 then add(tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])) end
  end
end
local out = { 'b', '1' }
if s > 0 then out[#out + 1] = 's'; out[#out + 1] = s; out[#out + 1] = 'sr'; out[#out + 1] = sr end
if p > 0 then out[#out + 1] = 'p'; out[#out + 1] = p; out[#out + 1] = 'pr'; out[#out + 1] = pr end
redis.call('HSET', k, unpack(out))
redis.call('EXPIREAT', k, tonumber(ARGV[#ARGV]), 'NX')
return { s > 0 and tostring(s) or '', s > 0 and tostring(sr) or '', p > 0 and tostring(p) or '', p > 0 and tostring(pr) or '' }`

declare module 'ioredis' {
  interface RedisCommander<Context> {
    backfillCampaignUser(key: string, ...args: (string | number | Buffer)[]): Result<string[], Context>
  }
}

/** SQL condition: counted facts of the campaign's window, scope and cutoff. */
export function factsWhere(c: Campaign): { where: string; params: Record<string, unknown> } {
  const scope = c.region_code !== null ? 'startsWith(region_code, {region:String})' : c.institution_id !== null ? 'institution_id = {inst:String}' : '1'
  return {
    where: `decision = 'counted' AND day BETWEEN {d0:Date} AND {d1:Date}
      AND ts >= fromUnixTimestamp64Milli({s:Int64}) AND ts < fromUnixTimestamp64Milli({e:Int64})
      AND received_at < fromUnixTimestamp64Milli({cut:Int64}) AND ${scope}`,
    params: { d0: isoDay(c.starts_at), d1: isoDay(c.ends_at - 1), s: c.starts_at, e: c.ends_at, cut: c.cutoff_at, region: c.region_code ?? '', inst: c.institution_id ?? '' },
  }
}

export type CampaignSum = { user_id: string; s: string; sr: string; p: string; pr: string }

/**
 * Each communicator's shares and points (with the event time each was reached at) in a campaign,
 * from the facts; optionally only facts up to a stream sequence and without some communicators.
 */
export async function campaignSums(ch: ClickHouseClient, c: Campaign, opts: { barrier?: number; without?: string[] } = {}): Promise<CampaignSum[]> {
  const { where, params } = factsWhere(c)
  const more = (opts.barrier !== undefined ? ' AND stream_seq <= {barrier:UInt64}' : '') + (opts.without ? ' AND NOT has({without:Array(String)}, user_id)' : '')
  return rows<CampaignSum>(
    ch,
    `SELECT user_id, toUInt64(sum(shares)) AS s, maxIf(toUnixTimestamp64Milli(ts), shares > 0) AS sr,
            toUInt64(sum(points)) AS p, maxIf(toUnixTimestamp64Milli(ts), points > 0) AS pr
     FROM facts FINAL WHERE ${where}${more} GROUP BY user_id`,
    { ...params, barrier: opts.barrier ?? 0, without: opts.without ?? [] },
  )
}

async function rows<T>(ch: ClickHouseClient, query: string, params: Record<string, unknown>): Promise<T[]> {
  const r = await ch.query({ query, query_params: params, format: 'JSONEachRow' })
  return (await r.json()) as T[]
}

export interface StandingRow {
  rank: number
  user_id: string
  name: string
  institution_id: string | null
  region_code: string
  score: number
  reached_at: number
  eligible: boolean
  prize: string | null
}

/** The standings of a campaign recounted from the facts (what settlement archives). */
export async function recountStandings(ch: ClickHouseClient, c: Campaign): Promise<StandingRow[]> {
  const { where, params } = factsWhere(c)
  const metric = c.metric === 'shares' ? 'shares' : 'points'
  const got = await rows<{ user_id: string; score: string; reached: string; name: string | null; institution_id: string | null; region_code: string | null }>(
    ch,
    `SELECT f.user_id AS user_id, f.score AS score, f.reached AS reached, u.real_name AS name, u.institution_id AS institution_id, u.region_code AS region_code
     FROM (SELECT user_id, toUInt64(sum(${metric})) AS score, maxIf(toUnixTimestamp64Milli(ts), ${metric} > 0) AS reached
           FROM facts FINAL WHERE ${where} GROUP BY user_id HAVING score > 0) AS f
     LEFT JOIN (SELECT id, real_name, institution_id, region_code FROM users FINAL) AS u ON u.id = f.user_id
     ORDER BY score DESC, reached ASC, user_id ASC`,
    params,
  )
  return got.map((r, i) => {
    const score = Number(r.score)
    const eligible = score >= c.min_score
    return {
      rank: i + 1, user_id: r.user_id, name: r.name ?? '', institution_id: r.institution_id || null, region_code: r.region_code ?? '',
      score, reached_at: Number(r.reached), eligible, prize: eligible && i + 1 <= c.top_n ? prizeOf(c, i + 1) : null,
    }
  })
}

export function createCampaignJobs(deps: CampaignJobDeps) {
  const { redis, ch, jsm, campaigns, log } = deps
  const me = `${process.pid}-${randomBytes(4).toString('hex')}`
  const events = new EventEmitter()
  if (!(redis as unknown as { backfillCampaignUser?: unknown }).backfillCampaignUser) redis.defineCommand('backfillCampaignUser', { numberOfKeys: 1, lua: BACKFILL_USER })

  /** Takes the campaign's lease for a job, or null when it is done, not due, or someone else holds it. */
  async function claim(id: string, job: 'backfill' | 'settle', due: (c: Campaign) => boolean): Promise<Campaign | null> {
    try {
      return await campaigns.update(id, (c) => {
        if (!due(c)) throw new Skip()
        if (c.lease && c.lease.until > Date.now() && c.lease.owner !== me) throw new Skip()
        return { ...c, lease: { owner: me, job, until: Date.now() + LEASE_MS } }
      })
    } catch (e) {
      if (e instanceof Skip) return null
      throw e
    }
  }

  /** Gives the lease back (when a job cannot finish now), so that any process may retry at once. */
  async function release(id: string) {
    await campaigns.update(id, (x) => (x.lease?.owner === me ? { ...x, lease: null } : x)).catch(() => {})
  }

  const needsBackfill = (c: Campaign) => c.backfilled_at === null && c.cancelled_at === null && c.settled_at === null

  async function backfill(id: string): Promise<boolean> {
    let c = await claim(id, 'backfill', needsBackfill)
    if (!c) return false
    if (c.barrier_seq === null) {
      const barrier = await lastSeq(jsm, deps.stream)
      c = await campaigns.update(id, (x) => (x.barrier_seq === null ? { ...x, barrier_seq: barrier } : x))
    }
    const barrier = c.barrier_seq!
    if (!(await waitForAcked(jsm, deps.stream, barrier))) {
      log.warn({ campaign: id, barrier }, 'backfill waits: messages up to the barrier are not all stored yet')
      await release(id)
      return false
    }
    const expireAt = Math.ceil(c.cutoff_at / 1000) + CAMPAIGN_KEEP_S
    const live = await redis.smembers(keys.campaignLive(id))
    const { where, params } = factsWhere(c)
    const q = { ...params, barrier, live }
    const sums = await campaignSums(ch, c, { barrier, without: live })
    const each = live.length
      ? await rows<{ user_id: string; event_id: string; shares: number; points: number; t: string }>(
          ch,
          `SELECT user_id, event_id, shares, points, toUnixTimestamp64Milli(ts) AS t FROM facts FINAL
           WHERE ${where} AND stream_seq <= {barrier:UInt64} AND has({live:Array(String)}, user_id)`,
          q,
        )
      : []
    const byUser = new Map<string, (string | number | Buffer)[]>()
    for (const e of each) {
      const a = byUser.get(e.user_id) ?? byUser.set(e.user_id, ['events']).get(e.user_id)!
      a.push(fingerprint(e.event_id), e.shares, e.points, e.t)
    }
    const work: [string, (string | number | Buffer)[]][] = [
      ...sums.map((r) => [r.user_id, ['sum', r.s, r.sr, r.p, r.pr]] as [string, (string | number | Buffer)[]]),
      ...byUser,
    ]
    for (let i = 0; i < work.length; i += 500) {
      const chunk = work.slice(i, i + 500)
      const totals = await Promise.all(chunk.map(([u, args]) => redis.backfillCampaignUser(keys.campaignUser(u, id), ...args, expireAt)))
      const p = pipelineFor(redis)
      totals.forEach(([s, sr, pts, pr], j) => {
        const [count, reached] = c!.metric === 'shares' ? [s, sr] : [pts, pr]
        if (count) p.zadd(keys.campaignBoard(id), 'LT', packCampaignScore(c!, Number(count), Number(reached)), chunk[j][0])
      })
      p.expireat(keys.campaignBoard(id), expireAt, 'NX')
      await p.exec()
    }
    await campaigns.update(id, (x) => ({ ...x, backfilled_at: x.backfilled_at ?? Date.now(), lease: null }))
    await redis.del(keys.campaignLive(id))
    log.info({ campaign: id, barrier, users: work.length }, 'campaign backfilled')
    events.emit('backfilled', id)
    return true
  }

  /** Settles a campaign whose cutoff has passed (or, with `now`, one whose window has ended). */
  async function settle(id: string, opts: { now?: boolean } = {}): Promise<Campaign | null> {
    if (opts.now) {
      // An organiser settles after the end without waiting for the rest of the grace period.
      await campaigns.update(id, (x) => (x.settled_at === null && x.cancelled_at === null && Date.now() >= x.ends_at && Date.now() < x.cutoff_at ? { ...x, cutoff_at: Date.now() } : x))
    }
    const due = (x: Campaign) => x.settled_at === null && x.cancelled_at === null && Date.now() >= x.cutoff_at
    const c = await claim(id, 'settle', due)
    if (!c) return null
    const barrier = await lastSeq(jsm, deps.stream)
    if (!(await waitForAcked(jsm, deps.stream, barrier))) {
      log.warn({ campaign: id, barrier }, 'settlement waits: messages before the cutoff are not all stored yet')
      await release(id)
      return null
    }
    const standings = await recountStandings(ch, c)
    const settledAt = Date.now()
    for (let i = 0; i < standings.length; i += 10_000) {
      await ch.insert({
        table: 'campaign_results',
        format: 'JSONEachRow',
        values: standings.slice(i, i + 10_000).map((r) => ({ ...r, campaign_id: id, institution_id: r.institution_id ?? '', reached_at: chTime(r.reached_at), prize: r.prize ?? '', settled_at: chTime(settledAt) })),
      })
    }
    const final = await campaigns.update(id, (x) => (x.settled_at === null ? { ...x, settled_at: settledAt, lease: null } : { ...x, lease: null }))
    log.info({ campaign: id, entries: standings.length }, 'campaign settled')
    events.emit('settled', id)
    return final
  }

  /**
   * One pass over the campaigns: backfills that are pending, settlements that are due. A campaign
   * whose job fails is logged and retried next pass; it does not hold up the others.
   */
  async function tick(): Promise<void> {
    const now = Date.now()
    for (const c of await campaigns.list()) {
      try {
        const st = campaignStatus(c, now)
        if (st === 'final' || st === 'cancelled') continue
        if (c.lease && c.lease.until > now && c.lease.owner !== me) continue
        if (needsBackfill(c) && st !== 'settling') await backfill(c.id)
        else if (st === 'settling') await settle(c.id)
      } catch (err) {
        log.error({ err: String(err), campaign: c.id }, 'campaign job failed; retrying next pass')
      }
    }
  }

  let timer: NodeJS.Timeout | null = null
  let running: Promise<void> = Promise.resolve()
  return {
    events,
    backfill,
    settle,
    tick,
    /** Runs `tick` every `everyMs` (in every aggregator process: leases make each job run once). */
    start(everyMs = 1000) {
      timer = setInterval(() => {
        running = running.then(() => tick()).catch((err) => log.error({ err: String(err) }, 'campaign jobs failed; retrying'))
      }, everyMs)
      timer.unref()
    },
    async stop() {
      if (timer) clearInterval(timer)
      timer = null
      await running
    },
  }
}
export type CampaignJobs = ReturnType<typeof createCampaignJobs>
