import { BasePlanner, type PlannedEvent } from './national.ts'
import type { Api, Metrics } from './api.ts'
import type { StreamState, StreamWatch } from './stream.ts'
import { percentile, progress, sleep } from './util.ts'

/**
 * The workload: an imported roster of communicators spread over the towns of 华容县 (430623), and
 * an event mix of mostly share-backs with some reads and sign-ins, every event for a known user so
 * that it counts. Share-backs cycle through the roster, so the first USERS share-backs put every
 * communicator on today's boards and no one gets near the 300-a-day share-back cap.
 */
export const TOWNS = ['430623101', '430623102', '430623103', '430623104', '430623106', '430623110', '430623111', '430623112', '430623114']
/** Probe users live in another county (湘阴县 东塘镇) so they do not change the 430623 boards. */
export const PROBE_TOWN = '430624101'
export const CHANNELS = ['wechat', 'moments', 'qq', 'weibo'] as const
export const MIX = { signin: 0.05, read: 0.1, share_back: 0.85 }

export const userId = (i: number) => 'b' + String(i).padStart(7, '0')
export const probeId = (j: number) => 'bprobe' + String(j).padStart(3, '0')
/** Half of the communicators belong to one of 20 institutions (adds the institution boards). */
export const institutionOf = (i: number) => (i % 2 === 0 ? `inst-${(i >> 1) % 20}` : undefined)

export function rosterRow(i: number) {
  return {
    id: userId(i),
    phone: '139' + String(i).padStart(8, '0'),
    real_name: '科普' + String(i),
    region_code: TOWNS[i % TOWNS.length],
    institution_id: institutionOf(i),
    certified_at: '2020-01-01',
  }
}

export function probeRow(j: number) {
  return { id: probeId(j), phone: '138' + String(j).padStart(8, '0'), real_name: '探针' + j, region_code: PROBE_TOWN, certified_at: '2020-01-01' }
}

export async function importUsers(api: Api, rows: object[], chunk = 10_000): Promise<{ created: number; updated: number; errors: number; ms: number }> {
  const t0 = performance.now()
  let created = 0
  let updated = 0
  let errors = 0
  for (let i = 0; i < rows.length; i += chunk) {
    const part = rows.slice(i, i + chunk)
    const r = await api.call('POST', '/v1/users:import', { body: { users: part }, timeoutMs: 300_000 })
    if (r.status !== 200) throw new Error(`users:import: ${r.status} ${r.text.slice(0, 300)}`)
    created += r.json.created
    updated += r.json.updated
    errors += r.json.errors.length
    if (r.json.errors.length) progress('import', `errors in chunk at ${i}: ${JSON.stringify(r.json.errors.slice(0, 3))}`)
    if (rows.length > chunk) progress('import', `${Math.min(i + chunk, rows.length)}/${rows.length} rows`)
  }
  return { created, updated, errors, ms: performance.now() - t0 }
}

export type { EventType, PlannedEvent } from './national.ts'
/** What the body builders draw events from: the county Planner or the NationalPlanner. */
export interface EventSource {
  next(): PlannedEvent
  /** Share-backs handed out round the roster so far (the county plan gives everyone one). */
  shareCursor: number
}
export { Ledger } from './national.ts'

/** Plans the event mix. Share-backs cycle through users from `shareCursor`; reads/sign-ins are random. */
export class Planner extends BasePlanner {
  shareCursor = 0
  next(): PlannedEvent {
    const r = this.rand()
    const i = this.seq++
    const id = `${this.tag}-${i}`
    const content_id = 'c' + (i % 5000)
    let ev: PlannedEvent
    if (r < MIX.signin) ev = { id, type: 'signin', user: Math.floor(this.rand() * this.users), content_id }
    else if (r < MIX.signin + MIX.read) ev = { id, type: 'read', user: Math.floor(this.rand() * this.users), content_id }
    else ev = { id, type: 'share_back', user: this.shareCursor++ % this.users, content_id, channel: CHANNELS[i % CHANNELS.length] }
    this.ledger.add(ev.type, ev.user)
    return ev
  }
}

export function toWire(e: PlannedEvent, ts: number) {
  const user_id = userId(e.user)
  switch (e.type) {
    case 'signin':
    case 'login':
      return { id: e.id, type: e.type, user_id, ts }
    case 'read':
      return { id: e.id, type: e.type, user_id, ts, content_id: e.content_id }
    case 'share_view':
      return { id: e.id, type: e.type, user_id, ts, content_id: e.content_id, viewer: e.viewer }
    default:
      return { id: e.id, type: e.type, user_id, ts, content_id: e.content_id, channel: e.channel }
  }
}

export interface Body {
  body: string
  events: number
}

/** Pre-builds request bodies of `batch` events each: at least `min` events, and at least one share-back per user. */
export function buildBodies(planner: EventSource, min: number, users: number, batch: number): Body[] {
  const out: Body[] = []
  const now = Date.now()
  let n = 0
  while (n < min || planner.shareCursor < users) {
    const events = []
    for (let k = 0; k < batch; k++) events.push(toWire(planner.next(), now - (n++ % 5000)))
    out.push({ body: JSON.stringify({ events }), events: events.length })
  }
  return out
}

export interface SendResult {
  requests: number
  events: number
  accepted: number
  duplicates: number
  rejected: number
  retries: number
  firstSend: number
  last202: number
  latencies: number[]
}

/** Sends prepared bodies from `senders` concurrent workers; retries 429/503 after a pause. */
export async function sendAll(api: Api, bodies: Body[], senders: number, onProgress?: (done: number) => void): Promise<SendResult> {
  const res: SendResult = { requests: 0, events: 0, accepted: 0, duplicates: 0, rejected: 0, retries: 0, firstSend: 0, last202: 0, latencies: [] }
  let next = 0
  res.firstSend = performance.now()
  const worker = async () => {
    while (next < bodies.length) {
      const b = bodies[next++]
      for (let attempt = 0; ; attempt++) {
        const t = performance.now()
        const r = await api.postEvents(b.body)
        const t1 = performance.now()
        if (r.status === 202) {
          res.latencies.push(t1 - t)
          res.requests++
          res.events += b.events
          res.accepted += r.json.accepted
          res.duplicates += r.json.duplicates
          res.rejected += r.json.rejected.length
          if (r.json.rejected.length && res.rejected === r.json.rejected.length) progress('ingest', `rejected: ${JSON.stringify(r.json.rejected.slice(0, 2))}`)
          res.last202 = Math.max(res.last202, t1)
          onProgress?.(res.events)
          break
        }
        if ((r.status === 429 || r.status === 503) && attempt < 20) {
          res.retries++
          await sleep(200 * (attempt + 1))
          continue
        }
        throw new Error(`POST /v1/events: ${r.status} ${r.text.slice(0, 300)}`)
      }
    }
  }
  await Promise.all(Array.from({ length: senders }, worker))
  return res
}

/**
 * Polls /metrics and the stream every `everyMs` until every accepted event is counted and stored:
 * the work-queue stream is empty (the aggregator acks a message only after its fact is stored)
 * and `done(metrics)` holds. `ready()` says whether the senders have finished.
 */
export async function waitForDrain(
  api: Api,
  stream: StreamWatch,
  opts: { everyMs?: number; timeoutMs: number; done?: (m: Metrics) => boolean; ready?: () => boolean; onTick?: (m: Metrics, s: StreamState) => void },
): Promise<{ ok: boolean; at: number; metrics: Metrics; stream: StreamState }> {
  const deadline = performance.now() + opts.timeoutMs
  let last: { m: Metrics; s: StreamState } | null = null
  for (;;) {
    const t = performance.now()
    try {
      const [m, st] = await Promise.all([api.metrics(), stream.state()])
      last = { m, s: st }
      opts.onTick?.(m, st)
      if ((opts.ready?.() ?? true) && st.messages === 0 && (opts.done?.(m) ?? true)) return { ok: true, at: t, metrics: m, stream: st }
    } catch {
      /* a slow answer under load: try again */
    }
    if (performance.now() > deadline) {
      if (!last) last = { m: await api.metrics(), s: await stream.state() }
      return { ok: false, at: performance.now(), metrics: last.m, stream: last.s }
    }
    await sleep(Math.max(0, (opts.everyMs ?? 100) - (performance.now() - t)))
  }
}

/** Counters from /metrics that the stages compare before/after. */
export function counters(m: Metrics) {
  return {
    accepted: m.sum('events_accepted_total'),
    decided: m.sum('events_decided_total'),
    counted: m.sum('events_decided_total', { decision: 'counted' }),
    capped: m.sum('events_decided_total', { decision: 'capped' }),
    unknown: m.sum('events_decided_total', { decision: 'unknown_user' }),
    duplicate: m.sum('events_decided_total', { decision: 'duplicate' }),
    facts: m.sum('facts_inserted_total'),
    lag: m.sum('consumer_lag_messages'),
    batchSum: m.sum('aggregator_batch_size_sum'),
    batchCount: m.sum('aggregator_batch_size_count'),
    insertSum: m.sum('facts_insert_seconds_sum'),
    insertCount: m.sum('facts_insert_seconds_count'),
    eventsPostSum: m.sum('http_request_duration_seconds_sum', { route: '/v1/events' }),
    eventsPostCount: m.sum('http_request_duration_seconds_count', { route: '/v1/events' }),
    eventLoopLagP99: m.sum('nodejs_eventloop_lag_p99_seconds'),
  }
}
export type Counters = ReturnType<typeof counters>

/**
 * Open-loop background load: `rate` events/s in batches of `batch`, share-backs (and the same
 * mix) for the roster, while another stage measures. At most `maxInFlight` requests outstanding.
 */
export class BackgroundLoad {
  sent = 0
  accepted = 0
  errors = 0
  skipped = 0
  private running = false
  private loop: Promise<void> | null = null
  private inFlight = new Set<Promise<void>>()
  constructor(
    private api: Api,
    private planner: EventSource,
    private rate: number,
    private batch = 100,
    private maxInFlight = 8,
  ) {}
  start(): void {
    this.running = true
    const interval = (1000 * this.batch) / this.rate
    const t0 = performance.now()
    this.loop = (async () => {
      for (let k = 0; this.running; k++) {
        const wait = t0 + k * interval - performance.now()
        if (wait > 0) await sleep(wait)
        if (!this.running) break
        if (this.inFlight.size >= this.maxInFlight) {
          this.skipped++
          continue
        }
        const now = Date.now()
        const events = Array.from({ length: this.batch }, () => toWire(this.planner.next(), now))
        this.sent += events.length
        const p = this.api
          .postEvents(JSON.stringify({ events }))
          .then((r) => {
            if (r.status === 202) this.accepted += r.json.accepted
            else this.errors++
          })
          .catch(() => void this.errors++)
          .finally(() => this.inFlight.delete(p))
        this.inFlight.add(p)
      }
    })()
  }
  async stop(): Promise<void> {
    this.running = false
    await this.loop
    await Promise.all(this.inFlight)
  }
}

export function summarize(values: number[]) {
  return { n: values.length, p50: percentile(values, 50), p90: percentile(values, 90), p99: percentile(values, 99), max: values.length ? Math.max(...values) : NaN }
}
