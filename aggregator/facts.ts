import type { ClickHouseClient } from '@clickhouse/client'
import type { RejectedEvent, StreamEvent } from '../core/events.ts'
import { chTime } from '../core/schema.ts'
import { RULE_VERSION } from '../core/scoring.ts'
import { isoDay } from '../core/time.ts'
import type { Decision } from './user-step.ts'

export interface FactRow {
  event_id: string
  stream_seq: number
  /** Index in its stream message (a batch holds a request's events). */
  stream_idx: number
  type: string
  user_id: string
  user_ix: number
  app_id: string
  ts: string
  client_ts: string
  sent_at: string | null
  received_at: string
  day: string
  decision: string
  reason: string
  shares: number
  points: number
  streak: number
  rule_version: number
  region_code: string
  institution_id: string
  content_id: string
  channel: string
  viewer: string
  raw: string
}

const REASONS: Record<string, string> = {
  counted: '',
  capped: 'daily cap reached',
  duplicate: 'event id already counted',
  unknown_user: 'user_id is not a known communicator',
  uncertified: 'event time is before the communicator was certified',
}

/**
 * Text as ClickHouse takes it: a lone UTF-16 surrogate (from a client, or a cut at 2,048 code units)
 * makes a JSON insert fail, and with it every fact of the batch, redelivered for ever. It becomes U+FFFD.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
const text = (s: string) => s.replace(LONE_SURROGATE, '\uFFFD')

export function eventFact(ev: StreamEvent, seq: number, d: Decision, idx = 0): FactRow {
  return {
    event_id: ev.id,
    stream_seq: seq,
    stream_idx: idx,
    type: ev.type,
    user_id: ev.user_id,
    user_ix: d.user_ix,
    app_id: ev.app_id,
    ts: chTime(ev.ts),
    client_ts: chTime(ev.client_ts),
    sent_at: ev.sent_at === null ? null : chTime(ev.sent_at),
    received_at: chTime(ev.received_at),
    day: isoDay(ev.ts),
    decision: d.decision,
    reason: d.decision === 'capped' ? `daily cap reached for ${ev.type}` : REASONS[d.decision],
    shares: d.shares,
    points: d.points,
    streak: d.streak,
    rule_version: RULE_VERSION,
    region_code: d.region_code,
    institution_id: d.institution_id,
    content_id: text(ev.content_id),
    channel: text(ev.channel),
    viewer: text(ev.viewer),
    raw: '',
  }
}

/** A refused event (or an unreadable stream message) as a fact: the dead-letter record. */
export function rejectedFact(r: RejectedEvent, seq: number, idx = 0): FactRow {
  return {
    event_id: text(r.id),
    stream_seq: seq,
    stream_idx: idx,
    type: text(r.type.slice(0, 32)),
    user_id: text(r.user_id),
    user_ix: 0,
    app_id: text(r.app_id),
    ts: chTime(r.received_at),
    client_ts: chTime(r.received_at),
    sent_at: null,
    received_at: chTime(r.received_at),
    day: isoDay(r.received_at),
    decision: 'rejected',
    reason: text(`${r.code}: ${r.message}`),
    shares: 0,
    points: 0,
    streak: 0,
    rule_version: RULE_VERSION,
    region_code: '',
    institution_id: '',
    content_id: '',
    channel: '',
    viewer: '',
    raw: text(r.raw),
  }
}

/**
 * Inserts facts. Rows of redelivered messages may already be stored (a crash between the insert and
 * the ack): those are looked up and skipped, so a redelivery does not even write a copy.
 */
export async function insertFacts(ch: ClickHouseClient, rows: FactRow[], maybeStored: FactRow[]): Promise<number> {
  let skip = new Set<string>()
  if (maybeStored.length) {
    // Narrow by the sorting key (day, user_id) first, then match (event_id, stream_seq) pairs here.
    const r = await ch.query({
      query: `SELECT event_id, stream_seq FROM facts
              WHERE day IN {days:Array(Date)} AND user_id IN {users:Array(String)} AND event_id IN {ids:Array(String)}`,
      query_params: {
        days: [...new Set(maybeStored.map((f) => f.day))],
        users: [...new Set(maybeStored.map((f) => f.user_id))],
        ids: [...new Set(maybeStored.map((f) => f.event_id))],
      },
      format: 'JSONEachRow',
    })
    const found = (await r.json()) as { event_id: string; stream_seq: string | number }[]
    skip = new Set(found.map((f) => `${f.event_id}\u0000${f.stream_seq}`))
  }
  const values = skip.size ? rows.filter((f) => !skip.has(`${f.event_id}\u0000${f.stream_seq}`)) : rows
  if (values.length) await ch.insert({ table: 'facts', values, format: 'JSONEachRow' })
  return values.length
}
