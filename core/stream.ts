import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream'
import { nanos } from '@nats-io/nats-core'

/**
 * The event stream: a durable, file-backed JetStream work queue. A message holds one request's events
 * (core/events.ts StreamBatch) and carries a hash of their identities as Nats-Msg-Id, so the same
 * request sent again inside the duplicate window is dropped by the server itself; any other resend
 * of an event (alone, or in another request) is caught by the aggregator's dedupe, which is what
 * makes it count once. Messages leave the stream once acknowledged, which the aggregator does only
 * after their facts are stored.
 */
/**
 * An event's identity: its id within its user, the same key the aggregator's dedupe uses (in the
 * user's own Redis slot). Two users' events that happen to share an id are two events, at any time.
 */
export const msgId = (e: { user_id: string; id: string }) => `${e.user_id}/${e.id}`

export const SUBJECT_EVENTS = (stream: string) => `${stream.toLowerCase()}.in`
export const SUBJECT_REJECTED = (stream: string) => `${stream.toLowerCase()}.rejected`
export const CONSUMER = 'aggregator'
/**
 * Core NATS (not JetStream) subject on which an aggregator announces, after each batch of facts is
 * stored and acked, which regions and institutions it touched: `LiveNotice` as JSON. Live views
 * (dashboards' server-sent events) in any process subscribe and refresh only what changed.
 */
export const SUBJECT_LIVE = (stream: string) => `live.${stream.toLowerCase()}.flushed`
export interface LiveNotice {
  /** Region codes (towns or whatever the communicators carry) with counted or capped events. */
  regions: string[]
  institutions: string[]
  /** Users whose scores changed. */
  users: string[]
  rows: number
  at: number
}

export async function ensureStream(jsm: JetStreamManager, opts: { stream: string; duplicateWindowMs: number; replicas?: number }) {
  const config = {
    name: opts.stream,
    subjects: [`${opts.stream.toLowerCase()}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    duplicate_window: nanos(opts.duplicateWindowMs),
    num_replicas: opts.replicas ?? 1,
    // A message carries one request's events (≤ 512 KiB, see ingest's toMessages).
    max_msg_size: 1024 * 1024,
  }
  try {
    await jsm.streams.info(opts.stream)
    await jsm.streams.update(opts.stream, { duplicate_window: config.duplicate_window, max_msg_size: config.max_msg_size })
  } catch {
    // Another aggregator starting at the same time may create it first (its add then fails, or on a
    // cluster times out): what counts is that the stream is there.
    await jsm.streams.add(config).catch(async (err) => {
      if (!(await jsm.streams.info(opts.stream).then(() => true, () => false))) throw err
    })
  }
}

export async function ensureConsumer(jsm: JetStreamManager, stream: string) {
  const config = {
    durable_name: CONSUMER,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    // Short enough that messages held by a process that died come back quickly after a restart;
    // facts are normally flushed and acked within FACTS_FLUSH_MS.
    ack_wait: nanos(10_000),
    max_ack_pending: 20_000,
    max_deliver: -1,
  }
  try {
    await jsm.consumers.info(stream, CONSUMER)
    await jsm.consumers.update(stream, CONSUMER, { ack_wait: config.ack_wait, max_ack_pending: config.max_ack_pending })
  } catch {
    await jsm.consumers.add(stream, config).catch(async (err) => {
      if (!(await jsm.consumers.info(stream, CONSUMER).then(() => true, () => false))) throw err
    })
  }
}

/** The stream's last sequence: every message published before this call has a sequence ≤ it. */
export async function lastSeq(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream)).state.last_seq
}

/**
 * Resolves once every message up to `seq` has been acked by the aggregators — and so, since they ack
 * only after the facts are stored, once ClickHouse holds the facts of all of them. JetStream has no
 * notification for this, so it asks every `everyMs` until `timeoutMs`; false on timeout.
 */
export async function waitForAcked(jsm: JetStreamManager, stream: string, seq: number, opts: { everyMs?: number; timeoutMs?: number } = {}): Promise<boolean> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000)
  for (;;) {
    const ci = await jsm.consumers.info(stream, CONSUMER)
    if (ci.ack_floor.stream_seq >= seq || (ci.num_pending === 0 && ci.num_ack_pending === 0 && ci.delivered.stream_seq >= seq)) return true
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, opts.everyMs ?? 100))
  }
}
