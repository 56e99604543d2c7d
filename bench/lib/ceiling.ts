import { Redis } from 'ioredis'
import { addBoardWrites, BoardBatch, createBoardKeys, createBoardWriter } from '../../aggregator/boards.ts'
import { applyUserSteps, dedupeWindow } from '../../aggregator/user-step.ts'
import type { Config } from '../../core/config.ts'
import type { StreamEvent } from '../../core/events.ts'
import { keys } from '../../core/keys.ts'
import type { RegionTree } from '../../core/regions.ts'
import { Ledger, Planner, type EventSource } from './workload.ts'
import { progress } from './util.ts'

/**
 * The ceiling the design allows: the same per-event Redis work the aggregator does — the per-user
 * Lua step, then the batch's idempotent board writes grouped per board (one ZADD LT per board and
 * batch, + one EXPIRE NX per new board key) — driven from a minimal
 * client with no HTTP, NATS, JSON schema validation or ClickHouse in the way. Its own user ids
 * ('cz…'), in the towns of 平江县 (430626), so town and county boards are its own; the city,
 * province and national boards are shared, which is why this stage runs last.
 */
export const CEILING_TOWNS = ['430626101', '430626102', '430626103', '430626104', '430626105', '430626106', '430626107', '430626108', '430626109']
export const ceilingUser = (i: number) => 'cz' + String(i).padStart(7, '0')

export interface CeilingResult {
  events: number
  planned: number
  users: number
  concurrency: number
  ms: number
  eventsPerSec: number
  counted: number
  boardWrites: number
  redisCommands: number
}

export async function runCeiling(opts: {
  redisUrl: string
  config: Config
  tree: RegionTree
  users: number
  events: number
  concurrency: number
  seed: number
  /** Stop starting new events after this many ms of the timed part (the rate counts those done). */
  maxMs?: number
  /** Called just before the timed part starts (after the users and the plan are ready). */
  onStart?: () => void | Promise<void>
  /** Where ceiling user j lives and her institution (default: the towns of 平江县, 20 institutions). */
  place?: (j: number) => { region: string; institution: string }
  /** The event mix (default: the county workload's Planner). */
  planner?: (users: number, tag: string, seed: number, ledger: Ledger) => EventSource
  /** Entries a gated board keeps (the service's BOARD_TOP_K). */
  topK?: number
}): Promise<CeilingResult> {
  const redis = new Redis(opts.redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 2 })
  try {
    const win = dedupeWindow(opts.config.events.maxAgeMs, opts.config.events.maxFutureMs)
    // The communicators, as the import caches them (u:{id} with n, r, i, c).
    for (let i = 0; i < opts.users; i += 5000) {
      const p = redis.pipeline()
      for (let j = i; j < Math.min(opts.users, i + 5000); j++) {
        const at = opts.place?.(j) ?? { region: CEILING_TOWNS[j % CEILING_TOWNS.length], institution: j % 2 === 0 ? `czinst-${(j >> 1) % 20}` : '' }
        p.hset(keys.user(ceilingUser(j)), {
          n: '上限' + j,
          r: at.region,
          i: at.institution,
          c: String(Date.UTC(2020, 0, 1) - 8 * 3600_000),
        })
      }
      await p.exec()
    }
    // The same mix, planned up front (not timed).
    const ledger = new Ledger(opts.users)
    const planner = opts.planner ? opts.planner(opts.users, 'cz' + opts.seed.toString(36), opts.seed, ledger) : new Planner(opts.users, 'cz' + opts.seed.toString(36), opts.seed, ledger)
    const now = Date.now()
    const evs: StreamEvent[] = []
    for (let i = 0; i < opts.events; i++) {
      const e = planner.next()
      const ts = now - (i % 5000)
      evs.push({
        kind: 'event', id: e.id, type: e.type, user_id: ceilingUser(e.user), ts, client_ts: ts, sent_at: null, received_at: now,
        app_id: 'app_bench', content_id: e.type === 'signin' || e.type === 'login' ? '' : e.content_id, channel: e.channel ?? '', viewer: e.viewer ?? '',
      })
    }
    // Like the aggregator's lanes: each batch in flight on its own connection (ioredis runs one
    // auto-pipeline at a time per connection).
    const write = createBoardWriter({ topK: opts.topK ?? opts.config.boards.topK })
    const lanes = [redis, redis.duplicate()]
    const boardKeys = createBoardKeys(opts.tree)
    let counted = 0
    let writes = 0
    let nextIdx = 0
    let done = 0
    const seqBase = 1_000_000_000 // far from the service's stream sequences
    const stats0 = await commandsProcessed(redis)
    await opts.onStart?.()
    const t0 = performance.now()
    let lastReport = t0
    const stopAt = t0 + (opts.maxMs ?? Infinity)
    // As the aggregator does it: a batch's user steps all at once, then its board writes grouped by
    // board (one ZADD per board). Two batches in flight keep Redis busy while the client prepares.
    const batchSize = Math.max(1, Math.floor(opts.concurrency / 2))
    const worker = async (conn: Redis) => {
      while (nextIdx < evs.length && performance.now() < stopAt) {
        const from = nextIdx
        nextIdx = Math.min(evs.length, from + batchSize)
        const batch = evs.slice(from, nextIdx)
        const ds = await applyUserSteps(conn, batch.map((ev, j) => ({ ev, seq: seqBase + from + j })), win)
        const groups = new BoardBatch()
        ds.forEach((d, j) => addBoardWrites(groups, boardKeys, batch[j].user_id, d))
        counted += ds.filter((d) => d.decision === 'counted').length
        writes += groups.entries
        await write(conn, groups)
        done += batch.length
        const t = performance.now()
        if (t - lastReport > 5000) {
          lastReport = t
          progress('ceiling', `${nextIdx}/${evs.length} events, ${Math.round(nextIdx / ((t - t0) / 1000))} ev/s`)
        }
      }
    }
    await Promise.all(lanes.map(worker))
    lanes[1].disconnect()
    const ms = performance.now() - t0
    const stats1 = await commandsProcessed(redis)
    return {
      events: done,
      planned: evs.length,
      users: opts.users,
      concurrency: opts.concurrency,
      ms,
      eventsPerSec: done / (ms / 1000),
      counted,
      boardWrites: writes,
      redisCommands: stats1 - stats0,
    }
  } finally {
    redis.disconnect()
  }
}

async function commandsProcessed(redis: Redis): Promise<number> {
  const info = await redis.info('stats')
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? 0)
}
