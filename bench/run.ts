/**
 * 科普中国 live analytics — benchmark (`npm run bench`, or `npx tsx bench/run.ts --help`).
 *
 * Starts the service as a deployment would (`tsx main.ts`, embedded redis-server, nats-server and
 * chDB, fresh temp DATA_DIR, free loopback ports), loads a roster of communicators, and measures:
 *   0. ingest alone: a ROLE=ingest process of its own, nothing consuming (202-answered events/s, CPU per event)
 *   1. ingest throughput while counting runs (202-answered events/s, batches of 500, several concurrent senders)
 *   2. end-to-end throughput (first send → last event counted in Redis and its fact in ClickHouse)
 *   3. freshness p50/p99 (202 → visible on the leaderboard) under a steady background load
 *   4. leaderboard read latency (top-100, around-me) with USERS communicators on the board
 *   5. peak RSS of the service, redis-server, nats-server and the bench itself
 *   6. the design's ceiling: the same Redis work (Lua step + board writes) from a minimal client
 *   7. Redis bytes per counted event (dedupe) and per communicator on a board
 * Every stage is time-boxed so the whole run stays within about five minutes; a stage that runs
 * out of time reports what it measured and says so. Progress goes to stderr; the report (a table
 * and one JSON line starting BENCH_RESULT) to stdout, also when a stage fails or the run is
 * interrupted.
 */
import { availableParallelism } from 'node:os'
import { Redis } from 'ioredis'
import { createClickHouse } from '../core/clients/clickhouse.ts'
import { parseConfig } from '../core/config.ts'
import { loadRegionTree } from '../core/regions.ts'
import { boardKey, unpackScore } from '../core/scoring.ts'
import { isoDay, periodRange } from '../core/time.ts'
import { Api } from './lib/api.ts'
import { cannon } from './lib/cannon.ts'
import { runCeiling } from './lib/ceiling.ts'
import { CpuMeter, MemorySampler } from './lib/proc.ts'
import { boardMemory, commandStats, commandStatsPerEvent, dedupeMemory, infoKeys, infoMemory, userStateMemory } from './lib/redis-memory.ts'
import { gcBetween, metricsSnapshot, serviceLatency } from './lib/service-latency.ts'
import { ingestAlone } from './lib/ingest-alone.ts'
import { NATIONAL_MIX, nationalRoster, NationalPlanner, planReads, writeHistory } from './lib/national.ts'
import { startService, type RunningService } from './lib/service.ts'
import { StreamWatch } from './lib/stream.ts'
import { fmtInt, fmtMiB, options, percentile, progress, round, sleep, T0 } from './lib/util.ts'
import {
  BackgroundLoad, buildBodies, counters, importUsers, Ledger, MIX, Planner, probeId, probeRow, rosterRow, sendAll, summarize,
  TOWNS, userId, waitForDrain,
} from './lib/workload.ts'

const opt = parseOptions({
  workload: 'national', // national: over every town of the country, weighted by census population, with prior history; county: 华容县 only, as before
  events: 200_000, // events in the ingest / end-to-end run
  users: 0, // communicators imported (0: 1,000,000 national, 100,000 county)
  batch: 500, // events per POST /v1/events in the ingest run
  senders: 8, // concurrent HTTP senders in the ingest run
  aloneEvents: 200_000, // events of the ingest-alone stage (0: skip it)
  stopAfter: '', // ingest-alone or e2e: end the run (and report) after that stage, for working on one tier
  e2eTimeout: 130, // seconds the end-to-end run may take before it is reported as incomplete (the rest is purged)
  probes: 120, // freshness probes (≥ 100)
  probeLanes: 2, // probes in flight at once (one probe user each)
  probePollMs: 10, // leaderboard poll interval of a probe
  probeTimeout: 5, // seconds a probe waits for its event to show before it counts as not visible
  freshnessSeconds: 40, // time box of the freshness stage
  loadRate: 0, // background events/s during the freshness probes (0: 80 % of the measured end-to-end rate, as issue 11 states its freshness target)
  drainTimeout: 45, // seconds to wait for the aggregator to go quiet before the next stage
  readSeconds: 8, // duration of each read-latency run
  readConnections: 10, // concurrent connections of each read-latency run
  readRate: 1000, // then each read kind again at this many requests a second (0: not)
  ceilingEvents: 50_000, // events planned for the Redis-only ceiling run
  ceilingSeconds: 25, // time box of the ceiling run
  ceilingConcurrency: 1000, // events in flight in the ceiling run
  logLevel: 'warn', // LOG_LEVEL of the service
  seed: 1,
  keep: false, // keep the temp DATA_DIR
  profile: '', // a directory: run the service under the V8 CPU profiler and write its .cpuprofile there
})

function parseOptions<T extends Record<string, number | string | boolean>>(defaults: T): T {
  try {
    return options(defaults)
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message} (see --help)\n`)
    process.exit(2)
  }
}

const COUNTY = '430623'
if (opt.workload !== 'national' && opt.workload !== 'county') {
  process.stderr.write(`bench: --workload must be national or county, not ${opt.workload}\n`)
  process.exit(2)
}
const NATIONAL = opt.workload === 'national'
if (opt.stopAfter && opt.stopAfter !== 'ingest-alone' && opt.stopAfter !== 'e2e') {
  process.stderr.write(`bench: --stop-after must be ingest-alone or e2e, not ${opt.stopAfter}\n`)
  process.exit(2)
}
if (!opt.users) opt.users = NATIONAL ? 1_000_000 : 100_000
const JSON_TAG = 'BENCH_RESULT'

type StageCpu = Record<string, number>
const report: Record<string, any> = { options: opt, started_at: new Date().toISOString() }
const cpu: Record<string, StageCpu> = {}
const notes: string[] = []
const sampler = new MemorySampler(200)
let svc: RunningService | null = null
let redis: Redis | null = null
let stream: StreamWatch | null = null
let finished = false
let meter: CpuMeter

function servicePids(): [string, number][] {
  const pids: [string, number][] = [['service', svc?.pids.service ?? 0], ['redis', svc?.pids.redis ?? 0], ['nats', svc?.pids.nats ?? 0], ['bench', process.pid]]
  return pids.filter(([, p]) => p > 0)
}

async function main() {
  sampler.track('bench', 'self')
  sampler.start()
  if (opt.users > 9_999_999) throw new Error('--users must be below 10,000,000')
  if (opt.probes < 100) notes.push(`Only ${opt.probes} freshness probes were asked for (the brief asks for ≥ 100).`)

  // ---- start ---------------------------------------------------------------------------------
  progress('start', 'spawning the service (tsx main.ts) with a fresh DATA_DIR')
  const tStart = performance.now()
  svc = await startService({ logLevel: opt.logLevel, profileDir: opt.profile || undefined })
  report.start_ms = round(performance.now() - tStart, 0)
  progress('start', `ready in ${report.start_ms} ms at ${svc.base} (pids: tsx wrapper ${svc.pids.wrapper}, service ${svc.pids.service}, redis ${svc.pids.redis}, nats ${svc.pids.nats}); "listening" line seen: ${svc.sawListeningLine}`)
  if (!svc.sawListeningLine) notes.push(`LOG_LEVEL=${opt.logLevel} hides the service's info-level "listening" line; readiness was detected by GET /readyz = 200.`)
  sampler.track('service (node main.ts)', svc.pids.service)
  if (svc.pids.wrapper !== svc.pids.service) sampler.track('tsx wrapper', svc.pids.wrapper)
  if (svc.pids.redis) sampler.track('redis-server', svc.pids.redis)
  if (svc.pids.nats) sampler.track('nats-server', svc.pids.nats)
  report.service_rss_at_ready = sampler.get('service (node main.ts)')?.lastRss
  meter = new CpuMeter(new Map(servicePids()))

  const config = parseConfig(svc.env)
  const tree = loadRegionTree()
  const roster = NATIONAL ? nationalRoster(tree, opt.users, opt.seed) : null
  const row = (i: number) => (roster ? { ...rosterRow(i), region_code: roster.town[i], institution_id: roster.inst[i] || undefined } : rosterRow(i))
  redis = new Redis(svc.redisUrl, { maxRetriesPerRequest: 2 })
  const memBase = await infoMemory(redis)
  const api = new Api(svc.base, svc.adminToken)
  await api.createApp('bench')
  stream = await StreamWatch.open(`nats://127.0.0.1:${svc.env.LOCAL_NATS_PORT}`, config.nats.stream)

  // ---- ingest alone --------------------------------------------------------------------------
  if (opt.aloneEvents > 0 || opt.stopAfter === 'ingest-alone') {
    const n = opt.aloneEvents || 200_000
    const scratch = new Ledger(opt.users)
    const gen = NATIONAL ? new NationalPlanner(opt.users, 'al' + Date.now().toString(36), opt.seed + 11, scratch) : new Planner(opt.users, 'al' + Date.now().toString(36), opt.seed + 11, scratch)
    const aloneBodies = buildBodies(gen, n, 0, opt.batch)
    progress('ingest-alone', `a ROLE=ingest process on this Redis and NATS, publishing to a stream nobody reads: ${fmtInt(n)} events, ${opt.senders} senders × ${opt.batch}`)
    report.ingest_alone = await ingestAlone(svc, { appKey: api.appKey, bodies: aloneBodies, senders: opt.senders, batch: opt.batch, logLevel: opt.logLevel, profileDir: opt.profile || undefined })
    const a = report.ingest_alone
    progress('ingest-alone', `${fmtInt(a.accepted)} accepted in ${a.seconds} s = ${fmtInt(a.events_per_s)} events/s; CPU per event ingest ${a.ingest_cpu_us_per_event} µs + nats ${a.nats_cpu_us_per_event} µs (cores ${JSON.stringify(a.cores)})`)
    if (opt.stopAfter === 'ingest-alone') return void (finished = true)
  }

  // ---- import --------------------------------------------------------------------------------
  progress('import', roster ? `importing ${fmtInt(opt.users)} communicators over ${fmtInt(new Set(roster.town).size)} towns of every province (chunks of 10,000)` : `importing ${fmtInt(opt.users)} communicators over ${TOWNS.length} towns of ${COUNTY} (chunks of 10,000)`)
  meter.reset()
  const imp = await importUsers(api, Array.from({ length: opt.users }, (_, i) => row(i)))
  await importUsers(api, Array.from({ length: opt.probeLanes }, (_, j) => probeRow(j)))
  cpu.import = meter.read()
  report.import = { users: opt.users, created: imp.created, updated: imp.updated, errors: imp.errors, ms: round(imp.ms, 0), users_per_s: round(opt.users / (imp.ms / 1000), 0) }
  progress('import', `${fmtInt(imp.created)} created, ${imp.errors} errors in ${(imp.ms / 1000).toFixed(1)} s (${fmtInt(report.import.users_per_s)} users/s)`)
  if (imp.errors) throw new Error(`import reported ${imp.errors} errors`)

  // ---- prior history and the rebuild (national) ------------------------------------------------
  if (roster) {
    progress('history', 'stopping the service to write prior history into its ClickHouse facts')
    redis.disconnect()
    await stream.close().catch(() => {})
    const old = svc
    await old.stop({ keepData: true })
    const ch = await createClickHouse({ dataDir: old.dataDir })
    const tH = performance.now()
    const hist = await writeHistory(ch, roster, userId)
    await ch.close()
    report.history = { facts: hist.facts, ms: round(performance.now() - tH, 0) }
    progress('history', `${fmtInt(hist.facts)} facts of earlier days written in ${(report.history.ms / 1000).toFixed(1)} s; starting the service again: it rebuilds Redis from the facts`)
    const tR = performance.now()
    const st = await restartService(old)
    // The rebuild ends by setting the applied-sequence mark; counting starts after it.
    while ((await redis.get('m:seq')) === null || (await redis.exists('r:rebuilding'))) await sleep(250)
    report.rebuild = { users: opt.users, facts: hist.facts, ms: round(performance.now() - tR, 0), ready_ms: st.ready_ms }
    progress('history', `Redis rebuilt from ${fmtInt(hist.facts)} facts for ${fmtInt(opt.users)} communicators in ${(report.rebuild.ms / 1000).toFixed(1)} s (service start included)`)
  }

  // ---- ingest + end-to-end -------------------------------------------------------------------
  const ledger = new Ledger(opt.users)
  const planner = roster ? new NationalPlanner(opt.users, 'ev' + Date.now().toString(36), opt.seed, ledger) : new Planner(opt.users, 'ev' + Date.now().toString(36), opt.seed, ledger)
  const tGen = performance.now()
  const bodies = buildBodies(planner, opt.events, opt.users, opt.batch)
  const total = bodies.reduce((s, b) => s + b.events, 0)
  const expectedCounted = ledger.totalExpected()
  const expectedShares = ledger.expectedCounted.share_back
  progress('e2e', `prepared ${bodies.length} bodies, ${fmtInt(total)} events (${Object.entries(ledger.sent).filter(([, n]) => n).map(([t, n]) => `${fmtInt(n)} ${t}`).join(', ')}) in ${Math.round(performance.now() - tGen)} ms; ${fmtInt(expectedCounted)} of them must count`)
  if (total > opt.events) notes.push(`The e2e run sent ${fmtInt(total)} events (more than --events=${opt.events}) so that every one of the ${fmtInt(opt.users)} users gets a share-back.`)

  const base = counters(await api.metrics())
  const mem0 = await infoMemory(redis)
  const keys0 = await infoKeys(redis)
  const cmd0 = await commandStats(redis)
  meter.reset()
  let maxBacklog = 0
  let maxRedelivered = 0
  let maxAckPending = 0
  let lastTick = performance.now()
  let sendsDone = false
  const firstSend = performance.now()
  const sendP = sendAll(api, bodies, opt.senders).finally(() => (sendsDone = true))
  const doneP = waitForDrain(api, stream, {
    everyMs: 100,
    timeoutMs: opt.e2eTimeout * 1000,
    ready: () => sendsDone,
    done: (m) => {
      const c = counters(m)
      return c.decided - base.decided >= total && c.facts - base.facts >= total
    },
    onTick: (m, st) => {
      const c = counters(m)
      maxBacklog = Math.max(maxBacklog, st.messages)
      maxRedelivered = Math.max(maxRedelivered, st.redelivered)
      maxAckPending = Math.max(maxAckPending, st.ackPending)
      if (performance.now() - lastTick > 5000) {
        lastTick = performance.now()
        progress('e2e', `accepted ${fmtInt(c.accepted - base.accepted)}; in stream ${fmtInt(st.messages)} (${fmtInt(st.ackPending)} delivered unacked, ${fmtInt(st.redelivered)} of them redelivered); aggregator decisions ${fmtInt(c.decided - base.decided)}, fact rows ${fmtInt(c.facts - base.facts)} (for ${fmtInt(total)} events)`)
      }
    },
  })
  const sent = await sendP
  const ingestSecs = (sent.last202 - sent.firstSend) / 1000
  cpu.ingest = meter.read()
  report.ingest = {
    events: sent.events,
    accepted: sent.accepted,
    duplicates: sent.duplicates,
    rejected: sent.rejected,
    retries: sent.retries,
    seconds: round(ingestSecs, 3),
    events_per_s: round(sent.accepted / ingestSecs, 0),
    post_latency_ms: mapRound(summarize(sent.latencies)),
    senders: opt.senders,
    batch: opt.batch,
  }
  progress('ingest', `${fmtInt(sent.accepted)} accepted in ${ingestSecs.toFixed(2)} s = ${fmtInt(report.ingest.events_per_s)} events/s (p50 ${percentile(sent.latencies, 50).toFixed(0)} ms, p99 ${percentile(sent.latencies, 99).toFixed(0)} ms per ${opt.batch}-event POST)`)
  const done = await doneP
  cpu.e2e = meter.read()
  const e2eSecs = (done.at - firstSend) / 1000
  const c1 = counters(done.metrics)
  // Done = acked, i.e. out of the work-queue stream: counted in Redis and stored as a fact.
  const e2eDone = sent.accepted - done.stream.messages
  const e2eRate = e2eDone / e2eSecs
  const e2eCmds = commandStatsPerEvent(cmd0, await commandStats(redis), Math.max(1, c1.decided - base.decided))
  progress('e2e', `${done.ok ? 'complete' : `INCOMPLETE after ${opt.e2eTimeout} s`}: ${fmtInt(e2eDone)} of ${fmtInt(total)} events counted and stored in ${e2eSecs.toFixed(2)} s = ${fmtInt(e2eRate)} events/s`)
  if (!done.ok) notes.push(`END TO END DID NOT COMPLETE within --e2e-timeout=${opt.e2eTimeout} s: ${fmtInt(done.stream.messages)} of ${fmtInt(total)} events were still in the stream, so the e2e rate is the rate of the ${fmtInt(e2eDone)} that were done (a lower bound).`)
  report.e2e = {
    events: total,
    complete: done.ok,
    done: e2eDone,
    seconds: round(e2eSecs, 3),
    events_per_s: round(e2eRate, 0),
    max_backlog: maxBacklog,
    max_delivered_unacked: maxAckPending,
    max_redelivered_pending: maxRedelivered,
    decisions: { total: c1.decided - base.decided, counted: c1.counted - base.counted, capped: c1.capped - base.capped, unknown_user: c1.unknown - base.unknown, duplicate: c1.duplicate - base.duplicate },
    expected_counted: expectedCounted,
    decisions_per_done_event: round((c1.decided - base.decided) / Math.max(1, e2eDone), 2),
    fact_rows_per_done_event: round((c1.facts - base.facts) / Math.max(1, e2eDone), 2),
    avg_aggregator_batch: round((c1.batchSum - base.batchSum) / Math.max(1, c1.batchCount - base.batchCount), 0),
    avg_fact_insert_ms: round((1000 * (c1.insertSum - base.insertSum)) / Math.max(1, c1.insertCount - base.insertCount), 1),
    fact_inserts: c1.insertCount - base.insertCount,
    service_event_loop_lag_p99_ms: round(c1.eventLoopLagP99 * 1000, 1),
    max_share_backs_per_user_today: ledger.maxShares(),
    redis_calls_per_decision: e2eCmds.slice(0, 12),
    service_cpu_us_per_event: round(((cpu.e2e.service ?? NaN) * e2eSecs * 1e6) / Math.max(1, e2eDone), 0),
    redis_cpu_us_per_event: round(((cpu.e2e.redis ?? NaN) * e2eSecs * 1e6) / Math.max(1, e2eDone), 0),
    // Every process of the service (node, redis-server, nats-server): what one event costs the box,
    // and the rate at which that cost would take every core of this machine.
    box_cpu_us_per_event: round((((cpu.e2e.service ?? 0) + (cpu.e2e.redis ?? 0) + (cpu.e2e.nats ?? 0)) * e2eSecs * 1e6) / Math.max(1, e2eDone), 0),
    box_cores: availableParallelism(),
  }
  report.e2e.box_bound_events_per_s = round((report.e2e.box_cores * 1e6) / report.e2e.box_cpu_us_per_event, 0)
  if (maxRedelivered > 0) {
    notes.push(
      `The aggregator made ${fmtInt(report.e2e.decisions.total)} decisions for ${fmtInt(e2eDone)} finished events (${report.e2e.decisions_per_done_event} per event): ` +
        `JetStream redelivered messages that sat in the aggregator's in-process queue past ack_wait, and the copies were processed again (up to ${fmtInt(maxRedelivered)} redelivered messages pending at once). ` +
        'A redelivery repeats its decision, never its effect, so the boards stay exact — but the work is done again.',
    )
  }

  // Correctness: Redis holds exactly what the plan says must count (when the run completed).
  const dayKey = periodRange('day', Date.now()).key
  const seedDay = isoDay(Date.now())
  // Today's share-backs summed over the complete day boards of every county (the units of the
  // national board): what the plan says must count, for as many communicators as shared today.
  const dayStart = periodRange('day', Date.now()).startMs
  const countyKeys = (roster ? tree.children(null).flatMap((p) => tree.children(p.code).flatMap((c) => tree.children(c.code))).map((c) => c.code) : [COUNTY]).map((code) => boardKey('shares', { kind: 'region', code }, dayKey))
  let shareSum = 0
  let sharersOnBoards = 0
  for (let i = 0; i < countyKeys.length; i += 500) {
    const p = redis.pipeline()
    for (const k of countyKeys.slice(i, i + 500)) p.zrange(k, '0', '-1', 'WITHSCORES')
    for (const [, flat] of ((await p.exec()) ?? []) as [unknown, string[]][]) {
      for (let j = 0; j < flat.length; j += 2) {
        if (!/^b\d/.test(flat[j])) continue
        sharersOnBoards++
        shareSum += unpackScore('day', dayStart, Number(flat[j + 1])).count
      }
    }
  }
  const countyTotal = await redis.zcard(boardKey('shares', { kind: 'region', code: COUNTY }, dayKey))
  report.e2e.checks = {
    day_share_sum: shareSum,
    expected_share_sum: expectedShares,
    share_sum_matches: shareSum === expectedShares,
    sharers_on_day_boards: sharersOnBoards,
    expected_sharers: ledger.sharers,
    sharers_match: sharersOnBoards === ledger.sharers,
    county_day_board_members: countyTotal,
  }
  progress('e2e', `checks: ${JSON.stringify(report.e2e.checks)}`)
  if (done.ok && !report.e2e.checks.share_sum_matches) notes.push(`CHECK FAILED: today's county share boards sum to ${shareSum}, the plan expects ${expectedShares}.`)
  if (done.ok && !report.e2e.checks.sharers_match) notes.push(`CHECK FAILED: today's county share boards hold ${sharersOnBoards} communicators, the plan expects ${ledger.sharers}.`)
  const mem1 = await infoMemory(redis)
  const keys1 = await infoKeys(redis)
  report.redis_after_e2e = {
    used_memory_delta: mem1.used_memory - mem0.used_memory,
    keys_delta: keys1 - keys0,
    // Distinct counted events applied to Redis: all of them when complete; otherwise estimated from
    // the share-backs on the national board (the plan's share-back fraction of what counts).
    counted_events_applied: done.ok ? expectedCounted : Math.round((shareSum * expectedCounted) / Math.max(1, expectedShares)),
    bytes_per_counted_event_all_state: 0,
  }
  report.redis_after_e2e.bytes_per_counted_event_all_state = round((mem1.used_memory - mem0.used_memory) / Math.max(1, report.redis_after_e2e.counted_events_applied), 1)
  // With ~2 events per user the per-user state dominates: the same delta per communicator counted today.
  const activeToday = roster ? ledger.activeUsers() : countyTotal
  report.redis_after_e2e.active_users = activeToday
  report.redis_after_e2e.bytes_per_active_user_all_state = round((mem1.used_memory - mem0.used_memory) / Math.max(1, activeToday), 0)
  // Everything Redis holds (from an empty Redis before the import: info, prior periods, today) per
  // communicator it holds anything for: with prior history that is every one of them.
  report.redis_after_e2e.used_memory_all = mem1.used_memory - memBase.used_memory
  report.redis_after_e2e.communicators_with_state = roster ? opt.users : activeToday
  report.redis_after_e2e.bytes_per_communicator_all_state = round((mem1.used_memory - memBase.used_memory) / Math.max(1, report.redis_after_e2e.communicators_with_state), 0)

  if (opt.stopAfter === 'e2e') return void (finished = true)

  // ---- freshness under a steady load ---------------------------------------------------------
  if (!done.ok) {
    // The later stages need a quiet system. What is left in the stream is dropped (our own temp
    // instance), and since the aggregator may hold tens of thousands of messages in process, the
    // service is restarted on the same data (Redis, NATS and ClickHouse state all kept).
    const purged = await stream.purge()
    report.e2e.purged = purged
    progress('e2e', `purged ${fmtInt(purged)} messages left in the stream; restarting the service on the same data so the next stages start quiet`)
    const st = await restartService()
    report.restart = st
    notes.push(
      `After the incomplete e2e run the bench purged the ${fmtInt(purged)} messages still in the stream (never counted) and restarted the service on the same data ` +
        `(SIGTERM → exit ${st.exit_code} after ${round(st.ms / 1000, 1)} s, ready again ${round(st.ready_ms / 1000, 1)} s later), so the later stages start quiet.` +
        (st.leftovers.length ? ` On that stop: ${st.leftovers.join('; ')}.` : ''),
    )
  }
  await drain(api, 'freshness')
  const loadRate = opt.loadRate > 0 ? opt.loadRate : Math.max(200, Math.round((e2eRate * 0.8) / 100) * 100)
  const backlogAtStart = (await stream.state()).messages
  progress('freshness', `background load ${fmtInt(loadRate)} events/s (batches of 100); ${opt.probes} probes over ${opt.probeLanes} lanes, polling every ${opt.probePollMs} ms; time box ${opt.freshnessSeconds} s; backlog at start ${fmtInt(backlogAtStart)}`)
  const bg = new BackgroundLoad(api, planner, loadRate, 100)
  meter.reset()
  bg.start()
  await sleep(2000)
  const fresh: number[] = []
  const probe202: number[] = []
  let notVisible = 0
  let probeErrors = 0
  let probesLeft = opt.probes
  let probeSeq = 0
  const freshDeadline = performance.now() + opt.freshnessSeconds * 1000
  const lane = async (j: number) => {
    const uid = probeId(j)
    let expected = (await api.call('GET', `/v1/leaderboards/users/${uid}?metric=shares&period=all`, { token: api.appKey })).json?.score ?? 0
    while (probesLeft > 0 && performance.now() < freshDeadline) {
      probesLeft--
      const ev = { id: `probe-${j}-${probeSeq++}-${Date.now()}`, type: 'share_back', user_id: uid, ts: Date.now(), content_id: 'probe', channel: 'wechat' }
      const t0 = performance.now()
      const r = await api.postEvents(JSON.stringify({ events: [ev] }))
      const t202 = performance.now()
      if (r.status !== 202 || r.json.accepted !== 1) {
        probeErrors++
        continue
      }
      expected++
      probe202.push(t202 - t0)
      const deadline = t202 + opt.probeTimeout * 1000
      let seen = false
      while (performance.now() < deadline) {
        const q = await api.call('GET', `/v1/leaderboards/users/${uid}?metric=shares&period=all`, { token: api.appKey, timeoutMs: 5000 })
        if (q.status === 200 && q.json.score >= expected) {
          fresh.push(performance.now() - t202)
          seen = true
          break
        }
        await sleep(opt.probePollMs)
      }
      if (!seen) {
        notVisible++
        // Wait for it anyway (bounded) so the next probe on this lane starts clean.
        const w = await waitScore(api, uid, expected, Math.max(0, freshDeadline - performance.now()))
        if (!w) break
      }
      await sleep(20 + Math.random() * 80) // do not phase-lock with the aggregator's batching
    }
  }
  await Promise.all(Array.from({ length: opt.probeLanes }, (_, j) => lane(j)))
  await bg.stop()
  cpu.freshness = meter.read()
  const tried = fresh.length + notVisible
  report.freshness = {
    probes: tried,
    visible: fresh.length,
    not_visible_within_timeout: notVisible,
    errors: probeErrors,
    probe_timeout_s: opt.probeTimeout,
    // Probes that never showed within the timeout count as +∞ in the percentiles.
    visible_ms: mapRound(summarize([...fresh, ...Array(notVisible).fill(Infinity)])),
    probe_post_202_ms: mapRound(summarize(probe202)),
    poll_interval_ms: opt.probePollMs,
    backlog_at_start: backlogAtStart,
    background_rate: loadRate,
    background_sent: bg.sent,
    background_accepted: bg.accepted,
    background_errors: bg.errors,
    background_ticks_skipped: bg.skipped,
  }
  progress('freshness', `p50 ${fmtMs(report.freshness.visible_ms.p50)}, p99 ${fmtMs(report.freshness.visible_ms.p99)} over ${tried} probes (${notVisible} not visible within ${opt.probeTimeout} s); background sent ${fmtInt(bg.sent)}`)
  if (tried < opt.probes) notes.push(`Freshness: only ${tried} of ${opt.probes} probes fitted in the ${opt.freshnessSeconds} s time box.`)
  if (notVisible) notes.push(`Freshness: ${notVisible} of ${tried} probes were not on the board within ${opt.probeTimeout} s of their 202 (counted as ∞ in the percentiles).`)
  if (backlogAtStart > 1000) notes.push(`Freshness was measured behind a backlog of ${fmtInt(backlogAtStart)} messages left by the e2e run.`)

  // ---- read latency --------------------------------------------------------------------------
  await drain(api, 'reads')
  if (!roster) await topUp(api, ledger, dayKey)
  const readBoard = roster ? `/v1/leaderboards?metric=shares&region=${roster.town[0].slice(0, 6)}&period=day&limit=100` : `/v1/leaderboards?metric=shares&region=${COUNTY}&period=day&limit=100`
  const top = await api.call('GET', readBoard, { token: api.appKey })
  if (top.status !== 200) throw new Error(`top-100: ${top.status} ${top.text.slice(0, 300)}`)
  if (isoDay(Date.now()) !== seedDay) notes.push('The Shanghai day changed during the run: the day-board reads hit a new, smaller board.')
  const backlogReads = (await stream.state()).messages
  const cycle = (paths: string[]) => {
    let k = 0
    return () => paths[k++ % paths.length]
  }
  // Each top page once, in turn, on the quiet service: which board levels make the slow pages.
  const readsByLevel = async (paths: string[]) => {
    const levelOf = (path: string) => {
      const q = new URLSearchParams(path.split('?')[1])
      const region = q.get('region')
      const level = q.get('institution') ? 'institution' : !region ? 'national' : ({ 2: 'province', 4: 'city', 6: 'county', 9: 'town' } as Record<number, string>)[region.length]
      return `${level} ${q.get('period')}`
    }
    const times = new Map<string, number[]>()
    const each: [number, string][] = []
    for (const path of paths) {
      const t0 = performance.now()
      const r = await api.call('GET', path, { token: api.appKey, timeoutMs: 10_000 })
      if (r.status !== 200) throw new Error(`GET ${path}: ${r.status}`)
      const k = levelOf(path)
      const ms = performance.now() - t0
      ;(times.get(k) ?? times.set(k, []).get(k)!).push(ms)
      each.push([ms, path])
    }
    const slowest = each.sort((a, b) => b[0] - a[0]).slice(0, 5)
    progress('reads', `slowest top pages: ${slowest.map(([ms, path]) => `${round(ms, 1)} ms ${path.length > 160 ? path.slice(0, 160) + '…' : path}`).join(' | ')}`)
    const out: Record<string, { pages: number; p50: number; max: number }> = {}
    for (const [k, t] of [...times].sort()) out[k] = { pages: t.length, p50: round(percentile(t, 50), 2), max: round(Math.max(...t), 2) }
    progress('reads', `top pages one at a time, client-side ms by board: ${Object.entries(out).map(([k, v]) => `${k} ${v.p50}/${v.max} (${v.pages})`).join(', ')}`)
    return out
  }
  // Each read kind twice: a closed loop (what the service can serve, and latencies when it is
  // saturated: with 10 connections queued on one CPU-bound process they are mostly the queue), then
  // at opt.readRate requests a second (latencies at that load: what issue 11's read targets name),
  // unless the closed loop served fewer than that.
  const readRun = async (name: string, paths: () => string) => {
    const once = async (rate: number) => {
      meter.reset()
      const m0 = await metricsSnapshot(svc!.base)
      const r = await cannon(svc!.base, api.appKey, opt.readConnections, opt.readSeconds, paths, rate)
      const used = meter.read()
      const m1 = await metricsSnapshot(svc!.base)
      const service = serviceLatency(m0.buckets, m1.buckets)
      const gc = gcBetween(m0.gc, m1.gc)
      progress('reads', `${name}${rate ? ` at ${fmtInt(rate)} req/s` : ''}: ${fmtInt(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, non-2xx ${r.non2xx}; service-side p50 ${service.p50} ms, p99 ${service.p99} ms; GC ${Object.entries(gc).map(([k, v]) => `${k} ${v.n} × ${v.avg_ms} ms`).join(', ')}`)
      return { r: { ...r, service, gc }, used }
    }
    const closed = await once(0)
    cpu[`read_${name}`] = closed.used
    if (!(opt.readRate > 0)) return closed.r
    if (closed.r.rps < opt.readRate) {
      progress('reads', `${name}: not run at ${fmtInt(opt.readRate)} req/s (the closed loop served ${fmtInt(closed.r.rps)})`)
      return { ...closed.r, at_rate: { rate: opt.readRate, reachable: false } }
    }
    const rated = await once(opt.readRate)
    cpu[`read_${name}_at_rate`] = rated.used
    return { ...closed.r, at_rate: { rate: opt.readRate, reachable: true, ...rated.r } }
  }
  if (roster) {
    progress('reads', 'preparing the read plan: boards of every level, cursors inside and past their top 1,000, communicators on them')
    const tPlan = performance.now()
    const plan = await planReads(api, roster, ledger, userId, opt.seed + 3)
    progress('reads', `${plan.boards} boards, ${plan.topPages.length} top pages, ${plan.deepPages.length} deep cursors in ${((performance.now() - tPlan) / 1000).toFixed(1)} s`)
    report.reads_by_level = await readsByLevel(plan.topPages)
    const top100 = await readRun('top100', cycle(plan.topPages))
    const around = await readRun('around', cycle(plan.aroundLocal))
    const aroundWide = await readRun('around_wide', cycle(plan.aroundWide))
    const deep = await readRun('deep_pages', cycle(plan.deepPages))
    report.reads = {
      board_members: top.json.total, connections: opt.readConnections, seconds: opt.readSeconds, backlog: backlogReads,
      top100, around_me: around, around_wide: aroundWide, deep_pages: deep,
      kinds: {
        top100: 'pages of 100 inside the top 1,000 of national, province, city, county, town and institution boards (day and all)',
        around_me: 'rank ±5 on her town, county or institution board (day and all)',
        around_wide: 'rank ±5 on her city, province or the national board (day and all), mostly past their top 1,000',
        deep_pages: 'pages of 100 past rank 1,000 of national, province and city boards',
      },
    }
  } else {
    progress('reads', `board ${COUNTY}/day has ${fmtInt(top.json.total)} communicators; top score ${top.json.entries[0]?.score}`)
    const topRes = await readRun('top100', () => readBoard)
    const aroundRes = await readRun('around', () => `/v1/leaderboards/users/${userId(Math.floor(Math.random() * opt.users))}?metric=shares&region=${COUNTY}&period=day&around=5`)
    report.reads = { board_members: top.json.total, connections: opt.readConnections, seconds: opt.readSeconds, backlog: backlogReads, top100: topRes, around_me: aroundRes }
  }
  if (backlogReads > 1000) notes.push(`Reads were measured while the aggregator still worked through ${fmtInt(backlogReads)} queued messages.`)

  // ---- Redis memory --------------------------------------------------------------------------
  progress('redis-memory', 'MEMORY USAGE of dedupe buckets, boards and per-user hashes')
  const dd = await dedupeMemory(redis, 'b0')
  const countyBoard = await boardMemory(redis, boardKey('shares', { kind: 'region', code: roster ? roster.town[0].slice(0, 6) : COUNTY }, dayKey))
  const nationalBoard = await boardMemory(redis, 'g:s:n:a')
  const nSample = Math.min(1000, opt.users)
  const us = await userStateMemory(redis, Array.from({ length: nSample }, (_, k) => userId(Math.floor((k * opt.users) / nSample))))
  const boardEntries = await boardEntriesPerUser(redis, opt.users)
  report.redis_memory = {
    dedupe: mapRound(dd as unknown as Record<string, number>, 1),
    board_county_day: { ...countyBoard, bytesPerMember: round(countyBoard.bytesPerMember, 1) },
    board_national_all: { ...nationalBoard, bytesPerMember: round(nationalBoard.bytesPerMember, 1) },
    board_entries_per_user: round(boardEntries, 1),
    user_state_bytes_per_user: round(us.bytesPerUser, 0),
    ...report.redis_after_e2e,
  }

  // ---- ceiling -------------------------------------------------------------------------------
  await drain(api, 'ceiling')
  const ceilingUsers = Math.max(1, Math.round((opt.users * opt.ceilingEvents) / Math.max(total, 1)))
  // National: the ceiling's own communicators spread the same way (another draw of the roster).
  const ceilingRoster = roster ? nationalRoster(tree, ceilingUsers, opt.seed + 7) : null
  progress('ceiling', `Redis alone: up to ${fmtInt(opt.ceilingEvents)} events (time box ${opt.ceilingSeconds} s) for ${fmtInt(ceilingUsers)} new users, ${opt.ceilingConcurrency} in flight, one ioredis client (auto-pipelining)`)
  let cmdC0 = await commandStats(redis)
  const ceil = await runCeiling({
    redisUrl: svc.redisUrl, config, tree, users: ceilingUsers, events: opt.ceilingEvents, concurrency: opt.ceilingConcurrency, seed: opt.seed + 7, maxMs: opt.ceilingSeconds * 1000,
    ...(ceilingRoster ? { place: (j: number) => ({ region: ceilingRoster.town[j], institution: ceilingRoster.inst[j] }), planner: (u: number, tag: string, seed: number, l: Ledger) => new NationalPlanner(u, tag, seed, l) } : {}),
    onStart: async () => {
      cmdC0 = await commandStats(redis!)
      meter.reset()
    },
  })
  cpu.ceiling = meter.read()
  if ((cpu.ceiling.service ?? 0) > 0.1) notes.push(`The service was still busy during the ceiling run (${Math.round(100 * (cpu.ceiling.service ?? 0))}% CPU): Redis was shared, so the ceiling is understated and its per-event Redis calls include the service's.`)
  const ceilCmds = commandStatsPerEvent(cmdC0, await commandStats(redis), ceil.events)
  report.ceiling = {
    ...mapRound(ceil as unknown as Record<string, number>, 0),
    board_writes_per_event: round(ceil.boardWrites / ceil.events, 1),
    redis_commands_sent_per_event: round(ceil.redisCommands / ceil.events, 1),
    e2e_over_ceiling: round(e2eRate / ceil.eventsPerSec, 3),
    redis_calls_per_event: ceilCmds.slice(0, 12),
    redis_cpu_us_per_event: round(((cpu.ceiling.redis ?? NaN) * ceil.ms * 1e3) / ceil.events, 0),
    client_cpu_us_per_event: round(((cpu.ceiling.bench ?? NaN) * ceil.ms * 1e3) / ceil.events, 0),
    // What one fully busy Redis core would sustain for this work: events per Redis CPU-second.
    redis_saturated_events_per_s: round(ceil.events / (((cpu.ceiling.redis ?? NaN) * ceil.ms) / 1000), 0),
  }
  progress('ceiling', `${fmtInt(ceil.eventsPerSec)} events/s over ${fmtInt(ceil.events)} events (redis CPU ${(100 * (cpu.ceiling.redis ?? 0)).toFixed(0)}%, client CPU ${(100 * (cpu.ceiling.bench ?? 0)).toFixed(0)}%)`)
  finished = true
}

/** Stops the service (SIGTERM) and starts it again on the same data dir and ports. */
async function restartService(stopped?: RunningService) {
  redis?.disconnect()
  await stream?.close().catch(() => {})
  const old = stopped ?? svc!
  const st = stopped ? { exitCode: 0, ms: 0, allMs: 0, leftovers: [] as string[] } : await old.stop({ keepData: true })
  const t0 = performance.now()
  // A start after new facts rebuilds Redis before it listens: give it the rebuild's time.
  svc = await startService({ logLevel: opt.logLevel, reuse: old.env, profileDir: opt.profile || undefined, readyTimeoutMs: 20 * 60_000 })
  const readyMs = performance.now() - t0
  progress('restart', `stopped in ${round(st.ms / 1000, 1)} s (exit ${st.exitCode}); ready again in ${round(readyMs / 1000, 1)} s (service pid ${svc.pids.service})`)
  sampler.track('service (node main.ts)', svc.pids.service)
  if (svc.pids.wrapper !== svc.pids.service) sampler.track('tsx wrapper', svc.pids.wrapper)
  if (svc.pids.redis) sampler.track('redis-server', svc.pids.redis)
  if (svc.pids.nats) sampler.track('nats-server', svc.pids.nats)
  meter.setPids(new Map(servicePids()))
  redis = new Redis(svc.redisUrl, { maxRetriesPerRequest: 2 })
  stream = await StreamWatch.open(`nats://127.0.0.1:${svc.env.LOCAL_NATS_PORT}`, parseConfig(svc.env).nats.stream)
  return { exit_code: st.exitCode, ms: round(st.ms, 0), all_ms: round(st.allMs, 0), ready_ms: round(readyMs, 0), leftovers: st.leftovers }
}

/** Puts every roster user on today's county board (one share-back each for those missing), paced. */
async function topUp(api: Api, ledger: Ledger, dayKey: string) {
  const on = new Set(await redis!.zrange(boardKey('shares', { kind: 'region', code: COUNTY }, dayKey), '0', '-1'))
  const missing: number[] = []
  for (let i = 0; i < opt.users; i++) if (!on.has(userId(i))) missing.push(i)
  if (!missing.length) return
  progress('reads', `${fmtInt(missing.length)} roster users are not on the ${COUNTY} day board yet: one share-back each`)
  const now = Date.now()
  for (let i = 0; i < missing.length; i += 500) {
    const events = missing.slice(i, i + 500).map((u, k) => {
      ledger.add('share_back', u)
      return { id: `topup-${now}-${i + k}`, type: 'share_back', user_id: userId(u), ts: now, content_id: 'topup', channel: 'wechat' }
    })
    const r = await api.postEvents(JSON.stringify({ events }))
    if (r.status !== 202) throw new Error(`top-up: ${r.status} ${r.text.slice(0, 200)}`)
    // Pace well below the aggregator's rate so no backlog builds up.
    await drain(api, 'reads')
  }
  report.topped_up = missing.length
  notes.push(`Before the reads, ${fmtInt(missing.length)} roster users who had no counted share-back yet got one, so the board holds all ${fmtInt(opt.users)}.`)
}

/**
 * Waits (bounded) until the stream is empty and the aggregator has gone quiet (its decision and
 * fact counters still for a second), so a stage does not start behind a backlog.
 */
async function drain(api: Api, stage: string) {
  const t0 = performance.now()
  let last = ''
  let stillSince = performance.now()
  let announced = false
  for (;;) {
    const [m, st] = await Promise.all([api.metrics(), stream!.state()])
    const c = counters(m)
    const sig = `${c.decided}/${c.facts}`
    if (sig !== last) {
      last = sig
      stillSince = performance.now()
    }
    if (st.messages === 0 && performance.now() - stillSince >= 1000) break
    if (!announced && performance.now() - t0 > 1500) {
      announced = true
      progress(stage, `waiting up to ${opt.drainTimeout} s for the aggregator to go quiet (${fmtInt(st.messages)} messages in the stream)`)
    }
    if (performance.now() - t0 > opt.drainTimeout * 1000) {
      progress(stage, `still busy after ${opt.drainTimeout} s (${fmtInt(st.messages)} messages in the stream); going on`)
      notes.push(`Before ${stage}: the aggregator was still busy after ${opt.drainTimeout} s (${fmtInt(st.messages)} messages in the stream).`)
      return false
    }
    await sleep(100)
  }
  if (announced) progress(stage, `quiet after ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  report.drains ??= {}
  report.drains[stage] = round((performance.now() - t0) / 1000, 1)
  return true
}

async function waitScore(api: Api, uid: string, expected: number, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms
  while (performance.now() < deadline) {
    const q = await api.call('GET', `/v1/leaderboards/users/${uid}?metric=shares&period=all`, { token: api.appKey, timeoutMs: 5000 })
    if (q.status === 200 && q.json.score >= expected) return true
    await sleep(200)
  }
  return false
}

/** Board entries per roster user: ZCARD of every board key, summed, over the users (scanned in chunks: millions of keys). */
async function boardEntriesPerUser(r: Redis, users: number): Promise<number> {
  let cursor = '0'
  let entries = 0
  do {
    const [next, batch] = await r.scan(cursor, 'COUNT', 5000)
    cursor = next
    const p = r.pipeline()
    for (const k of batch) if (k.startsWith('b:') || k.startsWith('g:')) p.zcard(k)
    for (const [, v] of (await p.exec()) ?? []) entries += Number(v ?? 0)
  } while (cursor !== '0')
  return entries / users
}

function mapRound<T extends Record<string, number>>(o: T, digits = 1): T {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? round(v, digits) : v])) as T
}

const fmtMs = (v: number | undefined | null) => (v === undefined || v === null || Number.isNaN(v) ? 'n/a' : Number.isFinite(v) ? `${v} ms` : '∞ (not visible)')

/** Stops everything we started, then prints whatever was measured. */
async function finish(failure?: unknown) {
  if (failure) {
    notes.push(`THE RUN STOPPED EARLY: ${failure instanceof Error ? failure.message : String(failure)}`)
    progress('bench', `FAILED: ${failure instanceof Error ? (failure.stack ?? failure.message) : String(failure)}`)
    if (svc) progress('bench', `last service output:\n${svc.output.slice(-15).join('\n')}`)
  }
  try {
    if (redis) {
      const memEnd = await infoMemory(redis).catch(() => null)
      if (memEnd) report.redis_info = { used_memory_peak: memEnd.used_memory_peak, used_memory: memEnd.used_memory, used_memory_rss: memEnd.used_memory_rss }
    }
  } finally {
    redis?.disconnect()
    redis = null
  }
  sampler.stop()
  report.peak_memory = Object.fromEntries(sampler.all().map((p) => [p.label, { pid: p.pid, vm_hwm: p.hwm, max_sampled_rss: p.maxRss, last_rss: p.lastRss }]))
  report.cpu_cores_used = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, mapRound(v, 2)]))
  await stream?.close().catch(() => {})
  stream = null
  if (svc) {
    const backlog = report.e2e && !report.e2e.complete
    progress('stop', 'SIGTERM to the service')
    const s = svc
    svc = null
    const st = await s.stop({ keepData: opt.keep })
    report.stop = { exit_code: st.exitCode, signal: st.signal, ms: round(st.ms, 0), leftovers: st.leftovers }
    notes.push(...st.leftovers)
    if (st.exitCode !== 0) notes.push(`The service exited with code ${st.exitCode} (signal ${st.signal}) ${round(st.ms / 1000, 1)} s after SIGTERM${backlog ? ' (it still had a backlog)' : ''}.`)
    if (opt.keep) notes.push(`DATA_DIR kept at ${s.dataDir}`)
  }
  report.total_seconds = round((performance.now() - T0) / 1000, 1)
  report.complete = finished && !failure
  report.notes = notes
  printReport(report)
}

function printReport(r: Record<string, any>) {
  const rows: [string, string, string][] = []
  const sec = (t: string) => rows.push([`— ${t}`, '', ''])
  const row = (k: string, v: string, n = '') => rows.push([k, v, n])
  const cpuStr = (c: StageCpu | undefined) => (c ? Object.entries(c).map(([k, v]) => `${k} ${(v * 100).toFixed(0)}%`).join(', ') : '')
  type Cmd = { command: string; calls_per_event: number; usec_per_event: number }
  // Calls per event from INFO commandstats (commands run inside scripts are counted too).
  const cmdStr = (cs: Cmd[]) => cs.filter((c) => c.calls_per_event >= 0.5).sort((a, b) => b.calls_per_event - a.calls_per_event).slice(0, 6).map((c) => `${c.command} ${c.calls_per_event}`).join(', ')
  const na = 'n/a'
  // Redis CPU per event of one command (µs), from INFO commandstats; EVALSHA includes the calls its script makes.
  const usOf = (cs: Cmd[] | undefined, command: string) => cs?.find((c) => c.command === command)?.usec_per_event ?? NaN
  // The user step and the board fan-out are both scripts (EVALSHA), and INFO commandstats counts the ZADDs a
  // script makes both in its EVALSHA and under ZADD: no split of user step from board writes can be read
  // from it. bench/board-batch-cost.ts measures the board writes apart.
  const SCRIPT_SPLIT = 'EVALSHA: the user step and the board fan-out with the calls they make; ZADD: every ZADD, inside those scripts too (counted twice, so the two do not add up); the board writes alone: npx tsx bench/board-batch-cost.ts'

  if (r.ingest_alone) {
    const a = r.ingest_alone
    sec('0. Ingest alone (a ROLE=ingest process, POST /v1/events → 202, JetStream-acked, nothing counting)')
    row('ingest-alone throughput', `${fmtInt(a.events_per_s)} events/s`, `${fmtInt(a.accepted)} events, ${a.senders} senders × batches of ${a.batch}, ${a.seconds} s; POST p50 / p99 ${a.post_latency_ms.p50} / ${a.post_latency_ms.p99} ms`)
    row('CPU per event (ingest alone)', `${a.ingest_cpu_us_per_event} + ${a.nats_cpu_us_per_event} µs`, `ingest process + nats-server; cores: ${Object.entries(a.cores as Record<string, number>).map(([k, v]) => `${k} ${Math.round(v * 100)}%`).join(', ')}`)
  }
  if (r.ingest) {
    sec('1. Ingest while counting runs (POST /v1/events → 202, JetStream-acked)')
    row('ingest throughput', `${fmtInt(r.ingest.events_per_s)} events/s`, `${fmtInt(r.ingest.accepted)} events, ${r.ingest.senders} senders × batches of ${r.ingest.batch}, ${r.ingest.seconds} s`)
    row('POST latency p50 / p99', `${r.ingest.post_latency_ms.p50} / ${r.ingest.post_latency_ms.p99} ms`, `per ${r.ingest.batch}-event request; retries ${r.ingest.retries}, rejected ${r.ingest.rejected}`)
    row('CPU while ingesting', '', cpuStr(r.cpu_cores_used?.ingest))
  }
  if (r.e2e) {
    const e = r.e2e
    sec('2. End to end (first send → last event counted in Redis and its fact stored)')
    row('end-to-end throughput', `${fmtInt(e.events_per_s)} events/s`, e.complete ? `${fmtInt(e.events)} events in ${e.seconds} s` : `INCOMPLETE: ${fmtInt(e.done)} of ${fmtInt(e.events)} events done in ${e.seconds} s (lower bound)`)
    row('checks', !e.complete ? 'n/a (incomplete)' : e.checks?.share_sum_matches && e.checks?.sharers_match ? 'OK' : 'FAILED', e.checks ? `today's share-backs over every county day board ${fmtInt(e.checks.day_share_sum)} (plan ${fmtInt(e.checks.expected_share_sum)}), by ${fmtInt(e.checks.sharers_on_day_boards)} communicators (plan ${fmtInt(e.checks.expected_sharers)})` : '')
    row('aggregator decisions', fmtInt(e.decisions.total), `${e.decisions_per_done_event} per finished event (>1: redelivered messages processed again); counted ${fmtInt(e.decisions.counted)}, capped ${fmtInt(e.decisions.capped)}, unknown ${e.decisions.unknown_user}; ${fmtInt(e.expected_counted)} events must count`)
    row('max backlog (messages in stream)', fmtInt(e.max_backlog), `max ${fmtInt(e.max_delivered_unacked)} delivered unacked, max ${fmtInt(e.max_redelivered_pending)} redelivered pending; avg batch ${e.avg_aggregator_batch}, ${e.fact_inserts} fact inserts avg ${e.avg_fact_insert_ms} ms`)
    row('max share_backs / user today', String(e.max_share_backs_per_user_today), 'cap is 300: share-backs all count (reads > 10 and sign-ins > 1 a day are capped)')
    row('CPU over the e2e run', '', cpuStr(r.cpu_cores_used?.e2e))
    row('CPU per finished event', `${e.service_cpu_us_per_event} + ${e.redis_cpu_us_per_event} µs`, `service + redis-server; Redis calls per decision: ${cmdStr(e.redis_calls_per_decision)}`)
    if (e.redis_calls_per_decision) {
      row('Redis CPU: scripts / ZADD', `${round(usOf(e.redis_calls_per_decision, 'evalsha'), 0)} / ${round(usOf(e.redis_calls_per_decision, 'zadd'), 0)} µs`, `per event; ${SCRIPT_SPLIT}`)
    }
    row('box bound', `${fmtInt(e.box_bound_events_per_s)} events/s`, `${e.box_cores} cores ÷ ${e.box_cpu_us_per_event} µs of CPU per event over node + redis-server + nats-server: the most this box could do at this cost per event`)
  }
  if (r.freshness) {
    const f = r.freshness
    sec('3. Freshness (202 → visible on GET /v1/leaderboards/users/{id}?metric=shares&period=all)')
    row('freshness p50 / p99', `${fmtMs(f.visible_ms.p50)} / ${fmtMs(f.visible_ms.p99)}`, `${f.probes} probes, ${f.not_visible_within_timeout} not visible within ${f.probe_timeout_s} s; poll every ${f.poll_interval_ms} ms; max ${fmtMs(f.visible_ms.max)}`)
    row('probe POST → 202 p50 / p99', `${f.probe_post_202_ms.p50} / ${f.probe_post_202_ms.p99} ms`, 'single-event batches')
    row('background load', `${fmtInt(f.background_rate)} events/s`, `${fmtInt(f.background_accepted)} accepted, ${f.background_errors} errors, ${f.background_ticks_skipped} ticks skipped; backlog at start ${fmtInt(f.backlog_at_start)}`)
    row('CPU during freshness', '', cpuStr(r.cpu_cores_used?.freshness))
  }
  if (r.reads) {
    sec(`4. Leaderboard reads (${fmtInt(r.reads.board_members)} on the board, ${r.reads.connections} connections × ${r.reads.seconds} s, app key)`)
    /** The service's own timing of a read kind (bench/lib/service-latency.ts), under its client-side row. */
    const serviceRow = (sv?: { p50: number; p99: number; requests: number; within5ms: number }, at?: any) => {
      if (sv) row('  service-side p50 / p99', `${sv.p50} / ${sv.p99} ms`, `${fmtInt(sv.requests)} requests timed inside the service (no client, no socket queue); ${round(100 * sv.within5ms, 1)} % within 5 ms`)
      if (at && !at.reachable) row(`  at ${fmtInt(at.rate)} req/s`, '—', 'not run: the closed loop served fewer')
      if (at?.reachable) {
        row(`  at ${fmtInt(at.rate)} req/s: p50 / p99`, `${at.p50} / ${at.p99} ms`, `${fmtInt(at.rps)} req/s served, non-2xx ${at.non2xx}, errors ${at.errors}`)
        if (at.service) row(`  at ${fmtInt(at.rate)} req/s: service-side p50 / p99`, `${at.service.p50} / ${at.service.p99} ms`, `${round(100 * at.service.within5ms, 1)} % within 5 ms`)
      }
    }
    row('top-100 p50 / p99', `${r.reads.top100.p50} / ${r.reads.top100.p99} ms`, `${fmtInt(r.reads.top100.rps)} req/s (closed loop: p50 ≈ connections ÷ req/s when the service is CPU-bound), non-2xx ${r.reads.top100.non2xx}, errors ${r.reads.top100.errors}`)
    serviceRow(r.reads.top100.service, r.reads.top100.at_rate)
    row('around-me (±5) p50 / p99', `${r.reads.around_me.p50} / ${r.reads.around_me.p99} ms`, `${fmtInt(r.reads.around_me.rps)} req/s, non-2xx ${r.reads.around_me.non2xx}, errors ${r.reads.around_me.errors}`)
    serviceRow(r.reads.around_me.service, r.reads.around_me.at_rate)
    if (r.reads.around_wide) {
      row('around-me wide (±5) p50 / p99', `${r.reads.around_wide.p50} / ${r.reads.around_wide.p99} ms`, `${fmtInt(r.reads.around_wide.rps)} req/s, non-2xx ${r.reads.around_wide.non2xx}: ${r.reads.kinds.around_wide}`)
      serviceRow(r.reads.around_wide.service, r.reads.around_wide.at_rate)
      row('pages past 1,000 p50 / p99', `${r.reads.deep_pages.p50} / ${r.reads.deep_pages.p99} ms`, `${fmtInt(r.reads.deep_pages.rps)} req/s, non-2xx ${r.reads.deep_pages.non2xx}: ${r.reads.kinds.deep_pages}`)
      serviceRow(r.reads.deep_pages.service, r.reads.deep_pages.at_rate)
      row('read kinds', '', `top-100: ${r.reads.kinds.top100}; around-me: ${r.reads.kinds.around_me}`)
    }
    row('CPU top-100 | around-me', '', `${cpuStr(r.cpu_cores_used?.read_top100)} | ${cpuStr(r.cpu_cores_used?.read_around)}`)
  }
  if (r.peak_memory) {
    sec('5. Peak memory (VmHWM = kernel high-water mark of RSS; max RSS sampled every 200 ms)')
    for (const [label, p] of Object.entries(r.peak_memory as Record<string, any>)) row(label, fmtMiB(p.vm_hwm), `max sampled RSS ${fmtMiB(p.max_sampled_rss)}, at end ${fmtMiB(p.last_rss)} (pid ${p.pid})`)
    if (r.service_rss_at_ready) row('service RSS when ready', fmtMiB(r.service_rss_at_ready), 'before any load (chDB embedded in this process)')
    if (r.redis_info) row('redis used_memory_peak', fmtMiB(r.redis_info.used_memory_peak), `used_memory at end ${fmtMiB(r.redis_info.used_memory)}`)
  }
  if (r.ceiling) {
    const c = r.ceiling
    sec('6. Ceiling: Redis alone (Lua user step + board writes, minimal pipelined client)')
    row('Redis-only rate', `${fmtInt(c.eventsPerSec)} events/s`, `${fmtInt(c.events)} events, ${fmtInt(c.users)} users, ${c.concurrency} in flight; ${c.board_writes_per_event} board entries written per event`)
    row('end-to-end ÷ ceiling', `${(c.e2e_over_ceiling * 100).toFixed(1)} %`, r.e2e && !r.e2e.complete ? 'e2e incomplete: lower bound' : '')
    row('CPU during ceiling', '', cpuStr(r.cpu_cores_used?.ceiling))
    row('CPU per event (ceiling)', `${c.client_cpu_us_per_event} + ${c.redis_cpu_us_per_event} µs`, `client + redis-server; Redis calls per event: ${cmdStr(c.redis_calls_per_event)}`)
    row('Redis-saturated projection', `${fmtInt(c.redis_saturated_events_per_s)} events/s`, 'events per redis-server CPU-second: the rate with a whole core for Redis (it is single-threaded)')
    if (c.redis_calls_per_event) {
      row('Redis CPU: scripts / ZADD', `${round(usOf(c.redis_calls_per_event, 'evalsha'), 0)} / ${round(usOf(c.redis_calls_per_event, 'zadd'), 0)} µs`, `per event; ${SCRIPT_SPLIT}`)
      row('Redis CPU per board entry', `${round(c.redis_cpu_us_per_event / c.board_writes_per_event, 2)} µs`, `all of redis-server's CPU per event (user step included) ÷ ${c.board_writes_per_event} board entries: an upper bound`)
    }
  }
  if (r.redis_memory) {
    const m = r.redis_memory
    const d = m.dedupe
    sec('7. Redis bytes')
    row('dedupe bytes / counted event', `${d.bytesPerEntry} B`, `${fmtInt(d.keys)} buckets sampled, ${d.entriesPerKey} entries each (${d.encoding}); fit ${d.perKeyOverhead} B/bucket + ${d.marginalPerEntry} B/entry`)
    row('board bytes / communicator', `${m.board_county_day.bytesPerMember} B`, `${m.board_county_day.key}: ${fmtInt(m.board_county_day.members)} members, ${fmtMiB(m.board_county_day.bytes)} (${m.board_county_day.encoding})`)
    row('board entries / communicator', `${m.board_entries_per_user}`, `all boards (b:* complete, g:* gated) after the e2e run, per roster communicator`)
    row('per-user state (one hash)', `${fmtInt(m.user_state_bytes_per_user)} B/user`, 'u:{id}: info, totals of the periods still open to events, counters, streak')
    row('all Redis state / active user', `${fmtInt(m.bytes_per_active_user_all_state)} B`, `INFO used_memory +${fmtMiB(m.used_memory_delta)} and +${fmtInt(m.keys_delta)} keys over the e2e run for ${fmtInt(m.active_users)} communicators with counted events today (mostly board entries)`)
    if (m.bytes_per_communicator_all_state !== undefined) row('all Redis state / communicator', `${fmtInt(m.bytes_per_communicator_all_state)} B`, `INFO used_memory ${fmtMiB(m.used_memory_all)} over an empty Redis, for ${fmtInt(m.communicators_with_state)} communicators with state (info, prior periods, today)`)
    row('all Redis state / counted event', `${m.bytes_per_counted_event_all_state} B`, `the same delta over ${r.e2e?.complete ? '' : '≈'}${fmtInt(m.counted_events_applied)} counted events (~${round(m.counted_events_applied / Math.max(1, m.active_users), 1)} per user here, so per-user state dominates)`)
  }
  sec('setup')
  row('workload', r.options.workload, r.options.workload === 'national' ? `${fmtInt(r.options.users)} communicators over every town of the country (census-weighted), half in 7 institutions per county; 1 % send 20 % of the share-backs` : `${fmtInt(r.options.users)} communicators in the towns of ${COUNTY}`)
  if (r.start_ms !== undefined) row('service start → ready', `${fmtInt(r.start_ms)} ms`, '')
  if (r.history) row('prior history', `${fmtInt(r.history.facts)} facts`, `written straight into the stopped service's ClickHouse in ${(r.history.ms / 1000).toFixed(1)} s`)
  if (r.rebuild) row('rebuild from the facts', `${(r.rebuild.ms / 1000).toFixed(1)} s`, `${fmtInt(r.rebuild.users)} communicators, ${fmtInt(r.rebuild.facts)} facts: service start until Redis is rebuilt and counting may start`)
  if (r.import) row('import', `${fmtInt(r.import.users_per_s)} users/s`, `${fmtInt(r.import.users)} users in ${(r.import.ms / 1000).toFixed(1)} s; CPU ${cpuStr(r.cpu_cores_used?.import)}`)
  if (r.stop) row('stop (SIGTERM → exit)', `${fmtInt(r.stop.ms)} ms`, `exit code ${r.stop.exit_code}`)
  row('bench total', `${r.total_seconds} s`, r.complete ? '' : 'INCOMPLETE RUN')

  sec("Beside today's (issue 11's table: 3473202, county workload, 100,000 communicators)")
  const was = (k: string, now: string, then: string) => row(k, now, `was ${then}`)
  if (r.e2e) was('end to end', `${fmtInt(r.e2e.events_per_s)} events/s`, '2,654 events/s (target ≥ 8,000 national)')
  if (r.ingest_alone) was('ingest alone', `${fmtInt(r.ingest_alone.events_per_s)} events/s`, '5,650 events/s while counting ran (target ≥ 30,000 with nothing else running)')
  if (r.ingest) was('ingest while counting runs', `${fmtInt(r.ingest.events_per_s)} events/s`, '5,650 events/s (target ≥ 30,000 with nothing else running)')
  if (r.e2e) was('box CPU / event (service + redis + nats)', `${r.e2e.box_cpu_us_per_event} µs`, '243 + 284 µs + nats (target ≤ 200 µs)')
  if (r.ceiling) was('ceiling; e2e ÷ ceiling', `${fmtInt(r.ceiling.eventsPerSec)} events/s; ${r.ceiling.e2e_over_ceiling}`, '4,137 events/s; 0.64 (target ≥ 0.8)')
  if (r.redis_memory) was('board entries / communicator', `${r.redis_memory.board_entries_per_user}`, '55')
  if (r.redis_memory) was('Redis bytes / active communicator', `${fmtInt(r.redis_memory.bytes_per_communicator_all_state ?? r.redis_memory.bytes_per_active_user_all_state)} B`, '7,245 B (target ≤ 2,000 B)')
  if (r.reads) was('top-100 p50 / p99', `${r.reads.top100.p50} / ${r.reads.top100.p99} ms at ${fmtInt(r.reads.top100.rps)} req/s${r.reads.top100.service ? ` (service-side p99 ${r.reads.top100.service.p99} ms)` : ''}${r.reads.top100.at_rate?.service ? `; service-side p99 ${r.reads.top100.at_rate.service.p99} ms at ${fmtInt(r.reads.top100.at_rate.rate)} req/s` : ''}`, '17.9 / 52.6 ms at 492 req/s (target p99 ≤ 5 ms inside the top 1,000)')
  if (r.reads) was('around-me p50 / p99', `${r.reads.around_me.p50} / ${r.reads.around_me.p99} ms at ${fmtInt(r.reads.around_me.rps)} req/s${r.reads.around_me.service ? ` (service-side p99 ${r.reads.around_me.service.p99} ms)` : ''}${r.reads.around_me.at_rate?.service ? `; service-side p99 ${r.reads.around_me.at_rate.service.p99} ms at ${fmtInt(r.reads.around_me.at_rate.rate)} req/s` : ''}`, '5.9 / 23.9 ms at 1,506 req/s (target p99 ≤ 10 ms county or smaller)')
  if (r.import) was('roster import', `${fmtInt(r.import.users_per_s)} rows/s`, '7,494 rows/s (target ≥ 20,000)')

  const w0 = Math.max(...rows.map((x) => (x[0].startsWith('—') ? 0 : x[0].length)))
  const w1 = Math.max(...rows.map((x) => x[1].length))
  const out: string[] = ['', '科普中国 live analytics — benchmark (one 2-core box: service + redis + nats + chDB + this bench)']
  for (const [a, b, c] of rows) out.push(a.startsWith('—') ? `\n${a}` : `  ${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`)
  out.push('', 'What the numbers mean:')
  out.push(
    '  1. Ingest: how fast apps get their 202 (events validated and durably in JetStream) while the aggregator runs on the same cores.',
    '  2. End to end: the rate at which events become both counted (Redis user state + boards) and recorded (ClickHouse facts) —',
    '     the sustainable intake of this box. When ingest is faster, the difference piles up in the stream (max backlog).',
    '  3. Freshness: how long after its 202 a share shows on the board while the box carries the stated background load',
    `     (API.md promises "within a second"). Resolution: the ${r.freshness?.poll_interval_ms ?? na} ms poll interval plus one GET.`,
    '  4. Reads: latency of the two board queries apps call most, against a board of the stated size, with no ingest running.',
    '  5. Memory: peak resident memory per process over the whole run (VmHWM also catches peaks between samples).',
    '  6. Ceiling: what Redis sustains for the same per-event work driven by a bare client on this box; e2e ÷ ceiling is how much',
    '     of it the service delivers. The projection divides by Redis CPU only: the limit of the Redis design on one core.',
    '  7. Bytes: Redis memory per event for dedupe (one 8-byte-fingerprint field per event, in a per-user bucket per receive day,',
    '     kept ~6 days) and per communicator per board (a sorted-set entry; a counted share-back puts the user on every board',
    '     listed under "board entries / communicator", each kept for its period\'s TTL).',
    ...(r.options.workload === 'national'
      ? [`  Event mix (national): ${Object.entries(NATIONAL_MIX).map(([t, f]) => `${Math.round(f * 100)}% ${t}`).join(', ')}; 1 % of the communicators send 20 % of the share-backs (the first few pass the 300 cap).`]
      : [`  Event mix: ${MIX.share_back * 100}% share_back, ${MIX.read * 100}% read, ${MIX.signin * 100}% signin, all for imported users; no user comes near`,
        '  300 share-backs a day, so share-backs are all counted (not capped); reads beyond 10 and sign-ins beyond 1 a day are capped.']),
    '  CPU figures are in cores (100% = one core); the box has 2, shared by every process here, so absolute numbers are noisy.',
  )
  if (r.notes?.length) out.push('', 'Notes:', ...r.notes.map((n: string) => `  - ${n}`))
  out.push('')
  process.stdout.write(out.join('\n') + '\n')
  process.stdout.write(`${JSON_TAG} ${JSON.stringify(r)}\n`)
}

let interrupted = false
const onSignal = (sig: string) => {
  if (interrupted) return
  interrupted = true
  progress('bench', `${sig}: stopping the service and printing what was measured`)
  void finish(new Error(`interrupted by ${sig}`)).finally(() => process.exit(130))
}
process.once('SIGINT', () => onSignal('SIGINT'))
process.once('SIGTERM', () => onSignal('SIGTERM'))

try {
  await main()
  if (!interrupted) await finish()
} catch (err) {
  if (!interrupted) {
    await finish(err)
    process.exitCode = 1
  }
}
