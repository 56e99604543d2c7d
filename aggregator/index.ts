import { EventEmitter } from 'node:events'
import type { ClickHouseClient } from '@clickhouse/client'
import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/nats-core'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { replicated } from '../core/clients/redis.ts'
import type { Config } from '../core/config.ts'
import { itemsOf, StreamMessageSchema, type StreamItem } from '../core/events.ts'
import { keys } from '../core/keys.ts'
import type { Metrics } from '../core/metrics.ts'
import type { RegionTree } from '../core/regions.ts'
import type { UserStore } from '../core/store/users.ts'
import { CONSUMER, ensureConsumer, ensureStream, SUBJECT_LIVE, type LiveNotice } from '../core/stream.ts'
import { addBoardWrites, BoardBatch, createBoardKeys, createBoardWriter } from './boards.ts'
import { createCampaignFeed } from './campaigns.ts'
import { createCampaignJobs, type CampaignJobs } from './campaign-jobs.ts'
import type { CampaignStore } from '../core/store/campaigns.ts'
import { eventFact, insertFacts, rejectedFact, type FactRow } from './facts.ts'
import { rebuildRedis, redisIsStale } from './rebuild.ts'
import { advanceMark, createSeqMark, redisRunId } from './seq-mark.ts'
import { applyUserSteps, dedupeWindow, type CampaignArg, type StepInput } from './user-step.ts'

export interface AggregatorDeps {
  redis: Redis
  /** Core NATS, for live notices after each flush. */
  nc: NatsConnection
  js: JetStreamClient
  jsm: JetStreamManager
  ch: ClickHouseClient
  users: UserStore
  campaigns: CampaignStore
  tree: RegionTree
  log: Logger
  metrics: Metrics
}

export interface Aggregator {
  start(): Promise<void>
  stop(): Promise<void>
  /** Stops consuming, flushes, rebuilds Redis from the facts, and resumes. */
  rebuild(): Promise<void>
  /** 'flushed' (rows: number) after facts are stored and their messages acked. */
  events: EventEmitter
  /** Campaign backfills and settlements (run by every aggregator; leases make each run once). */
  jobs: CampaignJobs
}

/** A pulled message and its decoded items. */
interface Pulled {
  m: JsMsg
  items: StreamItem[]
}

export function createAggregator(config: Config, deps: AggregatorDeps): Aggregator {
  const { redis, js, jsm, ch, tree, log, metrics } = deps
  /**
   * Batches processed at once (config.aggregator.inFlight). A batch alternates between this process
   * (decoding, preparing commands) and Redis (running them); with several in flight each side works
   * while the other does. Overlap is safe: user steps are atomic per event, board writes are
   * order-free, and the applied-sequence mark is written in batch order (createSeqMark).
   */
  const { batchSize: MAX_BATCH, inFlight: BATCHES_IN_FLIGHT } = config.aggregator
  /**
   * Messages waiting in this process for the per-user step. Without a bound the consume loop would
   * pull the whole max_ack_pending window into memory, and what is not stored and acked within
   * ack_wait would come back as redeliveries: under a backlog most of the work would be repeats.
   */
  const MAX_QUEUED = (BATCHES_IN_FLIGHT + 1) * MAX_BATCH
  /** Messages the consumer may hold beyond that queue (see subscribe). */
  const PREFETCH_MESSAGES = 16
  const win = dedupeWindow(config.events.maxAgeMs, config.events.maxFutureMs)
  const boardKeys = createBoardKeys(tree)
  const feed = createCampaignFeed(deps.campaigns)
  const jobs = createCampaignJobs({ redis, ch, jsm, campaigns: deps.campaigns, log, stream: config.nats.stream })
  const events = new EventEmitter()
  /**
   * One Redis connection per batch in flight (a lane). ioredis runs one auto-pipeline at a time per
   * connection and answers its commands only when the whole pipeline is done, so batches sharing a
   * connection move in lockstep: Redis idle while this process works, and the reverse. On their own
   * connections one batch's commands run while another's replies are handled here.
   */
  const writeBoards = createBoardWriter({ topK: config.boards.topK })
  let lanes: Redis[] = []
  const openLanes = () => {
    lanes = Array.from({ length: BATCHES_IN_FLIGHT }, () => redis.duplicate())
  }
  const closeLanes = async () => {
    await Promise.allSettled(lanes.map((conn) => conn.quit()))
    lanes = []
  }

  let messages: ConsumerMessages | null = null
  let loop: Promise<void> | null = null
  /** Pulled messages, decoded, waiting for a batch; and how many events they hold. */
  let pending: Pulled[] = []
  let pendingItems = 0
  let wakePuller: (() => void) | null = null
  const wake = () => {
    const w = wakePuller
    wakePuller = null
    w?.()
  }
  /** Batches being processed; drain() waits for all of them. */
  const inFlight = new Set<Promise<void>>()
  let freeLanes: Redis[] = []
  let buffer: { msgs: JsMsg[]; rows: FactRow[]; maybeStored: FactRow[] } = { msgs: [], rows: [], maybeStored: [] }
  let flushTimer: NodeJS.Timeout | null = null
  let flushing: Promise<void> = Promise.resolve()
  let lagTimer: NodeJS.Timeout | null = null
  /**
   * Why counting is paused until Redis is checked, or null: it lost state (and is rebuilt from the
   * facts), or it restarted under us (batches in flight are redelivered; rebuilt only if the mark
   * went back).
   */
  let redisLost: string | null = null
  let mustRebuild = false
  let naks = 0

  /** A message's items (a batch's events and dead letters, or one event); an unreadable one becomes a dead letter. */
  function decode(m: JsMsg): StreamItem[] {
    let body: unknown
    try {
      body = m.json()
    } catch {
      body = undefined
    }
    const r = StreamMessageSchema.safeParse(body)
    if (r.success) return itemsOf(r.data)
    return [{ kind: 'rejected', id: '', user_id: '', type: '', code: 'bad_message', message: 'unreadable stream message', received_at: Date.now(), app_id: '', raw: new TextDecoder().decode(m.data).slice(0, 2048) }]
  }

  /**
   * The chain for a batch's items: the per-user steps of its events (a few script calls, in order),
   * then per event its decision's metrics, board writes (into the batch's groups) and fact row; a
   * dead letter becomes its fact row. Rows in item order; an item's place is (seq, idx).
   */
  async function handleAll(items: { item: StreamItem; seq: number; idx: number }[], boards: BoardBatch, conn: Redis): Promise<{ fact: FactRow; pendingLive: string[] }[]> {
    const steps: (StepInput & { campaigns: CampaignArg[] })[] = []
    for (const { item, seq, idx } of items) if (item.kind !== 'rejected') steps.push({ ev: item, seq, idx, campaigns: feed.candidates(item) })
    const decisions = await applyUserSteps(conn, steps, win)
    let k = 0
    return items.map(({ item, seq, idx }) => {
      if (item.kind === 'rejected') return { fact: rejectedFact(item, seq, idx), pendingLive: [] }
      const candidates = steps[k].campaigns
      const d = decisions[k++]
      metrics.decisions.inc({ type: item.type, decision: d.decision })
      if (d.decision === 'duplicate') metrics.eventsDuplicate.inc({ stage: 'aggregator' })
      // Campaigns still backfilling that this event was fed to live (the backfill skips such events).
      const pendingLive = d.status === 'new' ? d.campaigns.filter((c) => candidates.find((x) => x.id === c.id)?.pending).map((c) => c.id) : []
      addBoardWrites(boards, boardKeys, item.user_id, d, feed.get)
      return { fact: eventFact(item, seq, d, idx), pendingLive }
    })
  }

  /** m:seq in batch order (see createSeqMark); each batch is numbered when it starts. */
  let started = 0
  /** The highest m:seq this process has seen in Redis: m:seq never goes back unless Redis lost writes. */
  let seenMark = 0
  /** The run id of the Redis server those marks were written to. */
  let runId = ''
  const learnMark = async () => {
    seenMark = Number((await redis.get(keys.seq)) ?? 0)
    runId = await redisRunId(redis)
  }
  const seqMark = createSeqMark(async (mark) => {
    const safe = replicated(redis, config.redis.waitReplicas, config.redis.waitMs)
    const ok = await advanceMark(redis, mark, seenMark, runId)
    if (ok === -1) throw new RedisLostError('m:seq is gone: Redis came back empty', true)
    if (ok === -2) throw new RedisLostError(`m:seq went back below ${seenMark}: Redis came back from an older snapshot`, true)
    // A batch running when Redis restarted may have lost writes (the append-only file is synced
    // once a second) that no older mark vouches for: it and the batches after it are redelivered.
    if (ok === -3) throw new RedisLostError('Redis restarted: the batches in flight are redelivered', false)
    // Known as seen only once a failover cannot take it back (else a later check would rebuild for nothing).
    await safe.check()
    seenMark = Math.max(seenMark, mark)
  })

  async function processBatch(pulled: Pulled[], no: number, conn: Redis): Promise<void> {
    let marked = false
    const batch = pulled.map((p) => p.m)
    let rows: FactRow[]
    // Its messages are acked only once its writes are on the replicas (REDIS_WAIT_REPLICAS).
    const safe = replicated(conn, config.redis.waitReplicas, config.redis.waitMs)
    try {
      // After the pull, before any step: campaigns stored before these messages were published are known.
      await feed.refresh()
      const boards = new BoardBatch()
      const items: { item: StreamItem; seq: number; idx: number }[] = []
      for (const p of pulled) p.items.forEach((item, idx) => items.push({ item, seq: p.m.seq, idx }))
      metrics.batchSize.observe(items.length)
      const handled = await handleAll(items, boards, conn)
      rows = handled.map((h) => h.fact)
      const live = new Map<string, Set<string>>()
      handled.forEach((h, i) => h.pendingLive.forEach((id) => (live.get(id) ?? live.set(id, new Set()).get(id)!).add(rows[i].user_id)))
      if (live.size) await Promise.all([...live].map(([id, users]) => conn.sadd(keys.campaignLive(id), ...users)))
      // Board writes of the whole batch, one command per board (per user only the best score matters).
      await writeBoards(conn, boards)
      marked = true
      await Promise.all([safe.check(), seqMark.done(no, Math.max(...batch.map((m) => m.seq)))])
    } catch (err) {
      // A failed batch must not hold the mark back: its messages come again in later batches.
      if (!marked) void seqMark.done(no, -1).catch(() => {})
      if (err instanceof RedisLostError) {
        redisLost ??= err.message
        mustRebuild ||= err.rebuild
      }
      naks++
      if (!(err instanceof RedisLostError)) log.error({ err: String(err), messages: batch.length }, 'processing failed; messages will be redelivered')
      const delay = Math.min(5000, 250 * naks)
      for (const m of batch) m.nak(delay)
      if (redisLost) void recoverRedis()
      return
    }
    naks = 0
    buffer.msgs.push(...batch)
    buffer.rows.push(...rows)
    let at = 0
    for (const p of pulled) {
      if (p.m.redelivered) buffer.maybeStored.push(...rows.slice(at, at + p.items.length))
      at += p.items.length
    }
    if (buffer.rows.length >= config.facts.batchSize) {
      // At most one insert in flight and one waiting: the step waits for ClickHouse beyond that.
      const previous = flushing
      void flush()
      await previous
    } else if (!flushTimer) flushTimer = setTimeout(() => void flush(), config.facts.flushMs)
  }

  /** Inserts buffered facts, then acks their messages; on failure naks them for redelivery. */
  function flush(): Promise<void> {
    flushing = flushing.then(async () => {
      if (flushTimer) clearTimeout(flushTimer)
      flushTimer = null
      const b = buffer
      buffer = { msgs: [], rows: [], maybeStored: [] }
      if (!b.msgs.length) return
      const end = metrics.insertSeconds.startTimer()
      try {
        const n = await insertFacts(ch, b.rows, b.maybeStored)
        end()
        metrics.insertRows.inc(n)
        for (const m of b.msgs) m.ack()
        events.emit('flushed', b.rows.length)
        announce(b.rows)
      } catch (err) {
        log.error({ err: String(err), rows: b.rows.length }, 'fact insert failed; messages will be redelivered')
        for (const m of b.msgs) m.nak(2000)
      }
    })
    return flushing
  }

  /** Tells live views what the stored batch touched; best effort (they also refresh on their own). */
  function announce(rows: FactRow[]) {
    const regions = new Set<string>()
    const institutions = new Set<string>()
    const users = new Set<string>()
    for (const r of rows) {
      if (r.decision !== 'counted' && r.decision !== 'capped') continue
      if (r.region_code) regions.add(r.region_code)
      if (r.institution_id) institutions.add(r.institution_id)
      users.add(r.user_id)
    }
    if (!regions.size && !institutions.size) return
    const notice: LiveNotice = { regions: [...regions], institutions: [...institutions], users: [...users].slice(0, 5000), rows: rows.length, at: Date.now() }
    try {
      deps.nc.publish(SUBJECT_LIVE(config.nats.stream), JSON.stringify(notice))
    } catch (err) {
      log.warn({ err: String(err) }, 'live notice not published')
    }
  }

  /** Starts batches from the queue while fewer than BATCHES_IN_FLIGHT run (in the next tick, so a pull fills a batch). */
  let scheduled = false
  function schedule() {
    if (scheduled) return
    scheduled = true
    setImmediate(() => {
      scheduled = false
      while (pending.length && !redisLost && freeLanes.length) {
        const lane = freeLanes.pop()!
        // Whole messages, up to MAX_BATCH events (at least one message).
        let n = 0
        let items = 0
        while (n < pending.length && (n === 0 || items + pending[n].items.length <= MAX_BATCH)) items += pending[n++].items.length
        pendingItems -= items
        const p: Promise<void> = processBatch(pending.splice(0, n), started++, lane).finally(() => {
          inFlight.delete(p)
          freeLanes.push(lane)
          schedule()
        })
        inFlight.add(p)
      }
      if (pendingItems < MAX_QUEUED) wake()
    })
  }

  async function idle() {
    while (inFlight.size) await Promise.all(inFlight)
  }

  async function subscribe(): Promise<ConsumerMessages> {
    const consumer = await js.consumers.get(config.nats.stream, CONSUMER)
    // Pulled by messages, not bytes. A byte-limited pull ends with a 409 when the next message does
    // not fit what is left of it, and nats.js then waits for two missed heartbeats before it pulls
    // again: counting stood still for 30 s at a time under a mix of large and one-event messages
    // (bench freshness stage on nats-server 2.9). A message holds 1 to 1,000 events, so 16 of them
    // ahead of the queue below stay well inside ack_wait; a missed heartbeat is noticed within 2 s.
    const ms = await consumer.consume({ max_messages: PREFETCH_MESSAGES, idle_heartbeat: 1_000 })
    void watch(ms)
    return ms
  }

  /** What the consumer reports that means counting waited: worth a line in the log. */
  async function watch(ms: ConsumerMessages) {
    for await (const n of ms.status()) {
      if (n.type === 'heartbeats_missed' || n.type === 'exceeded_limits' || n.type === 'consumer_not_found' || n.type === 'stream_not_found') log.warn({ notice: n }, 'stream consumer: pulls interrupted')
    }
  }

  async function consume(ms: ConsumerMessages) {
    for await (const m of ms) {
      const items = decode(m)
      pending.push({ m, items })
      pendingItems += items.length
      schedule()
      // Back-pressure: stop iterating, and so stop pulling, while enough is queued.
      if (pendingItems >= MAX_QUEUED) await new Promise<void>((r) => (wakePuller = r))
    }
  }

  async function drain() {
    messages?.stop()
    wake()
    await loop?.catch(() => {})
    messages = null
    loop = null
    await idle()
    // Anything still pending was never applied: let JetStream redeliver it.
    for (const p of pending.splice(0)) p.m.nak()
    pendingItems = 0
    await flush()
    await flushing
  }

  async function resume() {
    freeLanes = [...lanes]
    messages = await subscribe()
    loop = consume(messages).catch((err) => log.error({ err: String(err) }, 'consumer stopped'))
  }

  /**
   * Whatever pauses counting to work on Redis (a recovery, a rebuild on request) runs alone, one after
   * the other: two rebuilds at once would let the first resume counting while the second is still
   * emptying Redis, and events counted in between would meet no communicator (unknown_user, for good).
   */
  let paused: Promise<void> = Promise.resolve()
  function alone(work: () => Promise<void>): Promise<void> {
    const run = paused.then(work)
    paused = run.catch(() => {})
    return run
  }

  let recovering: Promise<void> | null = null
  function recoverRedis(): Promise<void> {
    recovering ??= alone(async () => {
      log.warn({ reason: redisLost }, 'Redis lost its state or restarted: counting pauses until it is checked')
      await drain()
      // A restart is harmless when the mark is still where this process left it: every batch it
      // vouches for is in Redis, and the batches after it are redelivered. Otherwise rebuild.
      const mark = Number((await redis.get(keys.seq)) ?? -1)
      if (mustRebuild || mark < seenMark) {
        log.warn({ mark, seenMark }, 'rebuilding Redis from ClickHouse facts before counting resumes')
        await rebuildRedis({ redis, ch, users: deps.users, tree, win, log, campaigns: deps.campaigns, topK: config.boards.topK })
        writeBoards.forget()
      }
      await learnMark()
      redisLost = null
      mustRebuild = false
      await resume()
    }).finally(() => (recovering = null))
    return recovering
  }

  async function updateLag() {
    try {
      const info = await jsm.consumers.info(config.nats.stream, CONSUMER)
      metrics.consumerLag.set(info.num_pending + info.num_ack_pending)
    } catch {
      /* NATS unavailable: the gauge keeps its last value */
    }
  }

  return {
    events,
    jobs,
    async start() {
      await ensureStream(jsm, config.nats)
      await ensureConsumer(jsm, config.nats.stream)
      const stale = await redisIsStale(redis, ch)
      if (stale) {
        log.warn({ reason: stale }, 'Redis is empty or stale: rebuilding from ClickHouse facts before counting')
        await rebuildRedis({ redis, ch, users: deps.users, tree, win, log, campaigns: deps.campaigns, topK: config.boards.topK })
        writeBoards.forget()
      }
      await learnMark()
      openLanes()
      await resume()
      lagTimer = setInterval(() => void updateLag(), 5000)
      lagTimer.unref()
      jobs.start()
      log.info({ stream: config.nats.stream, dedupeGenerationDays: win.genDays }, 'aggregator consuming')
    },
    async stop() {
      if (lagTimer) clearInterval(lagTimer)
      await jobs.stop()
      await recovering
      await paused
      await drain()
      await closeLanes()
    },
    rebuild() {
      return alone(async () => {
        await drain()
        await rebuildRedis({ redis, ch, users: deps.users, tree, win, log, campaigns: deps.campaigns, topK: config.boards.topK })
        writeBoards.forget()
        await learnMark()
        await resume()
      })
    },
  }
}

class RedisLostError extends Error {
  constructor(
    message: string,
    /** Whether Redis must be rebuilt from the facts (else a check of the mark decides). */
    readonly rebuild: boolean,
  ) {
    super(message)
  }
}
