import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { ensureStream } from '../../core/stream.ts'
import { Api } from './api.ts'
import { CpuMeter } from './proc.ts'
import { startService, type RunningService } from './service.ts'
import { summarize, sendAll, type Body } from './workload.ts'
import { round } from './util.ts'

/** Stream the ingest-only process publishes to: nobody consumes it, and it is deleted afterwards. */
export const ALONE_STREAM = 'BENCH_INGEST_ALONE'

export interface IngestAloneResult {
  events: number
  accepted: number
  seconds: number
  events_per_s: number
  post_latency_ms: Record<string, number>
  senders: number
  batch: number
  /** Cores used during the sends: the ingest process, nats-server, the bench's senders. */
  cores: Record<string, number>
  /** CPU per accepted event of the ingest process and of nats-server. */
  ingest_cpu_us_per_event: number
  nats_cpu_us_per_event: number
}

/**
 * "Ingest alone, with nothing else running": a second process of the service with ROLE=ingest, on
 * the running service's Redis and NATS, publishing to a stream of its own that no aggregator reads.
 * The main service stays idle meanwhile (its stream gets nothing), so what is measured is the
 * ingest tier and JetStream only: parse, validate, publish, answer 202.
 */
export async function ingestAlone(main: RunningService, o: { appKey: string; bodies: Body[]; senders: number; batch: number; logLevel: string; profileDir?: string }): Promise<IngestAloneResult> {
  const natsUrl = `nats://127.0.0.1:${main.env.LOCAL_NATS_PORT}`
  const nc = await connect({ servers: natsUrl, name: 'kepu-bench-alone' })
  const jsm = await jetstreamManager(nc)
  await ensureStream(jsm, { stream: ALONE_STREAM, duplicateWindowMs: 120_000 })
  const ingest = await startService({
    logLevel: o.logLevel,
    profileDir: o.profileDir,
    engines: false,
    extraEnv: { ROLE: 'ingest', REDIS_URL: main.redisUrl, NATS_URL: natsUrl, NATS_STREAM: ALONE_STREAM, INGEST_MAX_BACKLOG: '0' },
  })
  try {
    const meter = new CpuMeter(new Map([['ingest', ingest.pids.service], ['nats', main.pids.nats], ['service', main.pids.service], ['bench', process.pid]]))
    const api = new Api(ingest.base, main.adminToken, o.appKey)
    const t0 = performance.now()
    const sent = await sendAll(api, o.bodies, o.senders)
    const cores = meter.read()
    const seconds = (sent.last202 - sent.firstSend) / 1000
    const wall = (performance.now() - t0) / 1000
    const perEvent = (label: string) => round(((cores[label] ?? NaN) * wall * 1e6) / Math.max(1, sent.accepted), 1)
    return {
      events: sent.events,
      accepted: sent.accepted,
      seconds: round(seconds, 3),
      events_per_s: round(sent.accepted / seconds, 0),
      post_latency_ms: Object.fromEntries(Object.entries(summarize(sent.latencies)).map(([k, v]) => [k, round(v, 1)])),
      senders: o.senders,
      batch: o.batch,
      cores: Object.fromEntries(Object.entries(cores).map(([k, v]) => [k, round(v, 2)])),
      ingest_cpu_us_per_event: perEvent('ingest'),
      nats_cpu_us_per_event: perEvent('nats'),
    }
  } finally {
    await ingest.stop()
    await jsm.streams.delete(ALONE_STREAM).catch(() => {})
    await nc.close()
  }
}
