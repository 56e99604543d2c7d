import { z } from 'zod'
import { parseInstant } from './time.ts'

/**
 * The one event contract shared by every tier: what apps send (EventInput), what ingest puts on the
 * stream (StreamEvent / RejectedEvent) and what the aggregator reads back.
 */
export const EVENT_TYPES = ['signin', 'login', 'read', 'share_back', 'share_view', 'post', 'comment', 'like'] as const
export type EventType = (typeof EVENT_TYPES)[number]
export const CHANNELS = ['wechat', 'moments', 'qq', 'weibo', 'other'] as const
/** Items of one stream message at most: a fact's index in its message stays below 1,024 (the KPI bitmaps' share ids). */
export const MAX_EVENTS_PER_MESSAGE = 1000

export const USER_ID = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1–64 of [A-Za-z0-9_-]')
export const EVENT_ID = z.string().regex(/^[\x21-\x7e]{1,128}$/, 'must be 1–128 printable ASCII characters')
const instant = z.union([z.string(), z.number()]).refine((v) => parseInstant(v, true) !== null, {
  message: 'must be ISO-8601 with an offset or epoch milliseconds',
})
const opaque = z.string().min(1).max(128)

export const EventInputSchema = z
  .object({
    id: EVENT_ID,
    type: z.enum(EVENT_TYPES),
    user_id: USER_ID,
    ts: instant,
    sent_at: instant.optional(),
    content_id: opaque.optional(),
    channel: z.enum(CHANNELS).optional(),
    viewer: opaque.optional(),
  })
  .superRefine((e, ctx) => {
    const need = (field: 'content_id' | 'channel' | 'viewer') => {
      if (e[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `required for ${e.type}` })
    }
    if (e.type === 'read' || e.type === 'share_back' || e.type === 'share_view') need('content_id')
    if (e.type === 'share_back') need('channel')
    if (e.type === 'share_view') need('viewer')
  })
export type EventInput = z.infer<typeof EventInputSchema>

/** An accepted event as it travels on the stream. Times are epoch milliseconds. */
export const StreamEventSchema = z.object({
  kind: z.literal('event'),
  id: EVENT_ID,
  type: z.enum(EVENT_TYPES),
  user_id: USER_ID,
  /** Event time corrected for the device clock. */
  ts: z.number().int(),
  client_ts: z.number().int(),
  sent_at: z.number().int().nullable(),
  received_at: z.number().int(),
  app_id: z.string(),
  content_id: z.string().default(''),
  channel: z.string().default(''),
  viewer: z.string().default(''),
})
export type StreamEvent = z.infer<typeof StreamEventSchema>

/** An event ingest refused: it still becomes a fact, with its reason (the dead-letter path). */
export const RejectedEventSchema = z.object({
  kind: z.literal('rejected'),
  id: z.string(),
  user_id: z.string(),
  type: z.string(),
  code: z.string(),
  message: z.string(),
  received_at: z.number().int(),
  app_id: z.string(),
  raw: z.string(),
})
export type RejectedEvent = z.infer<typeof RejectedEventSchema>

/**
 * What one request puts on the stream (one message, or a few for a large request): its accepted
 * events and its refused ones. An event's place in the stream is (message sequence, index in
 * `[...events, ...rejected]`); a redelivered message brings every one back at the same place.
 */
export const StreamBatchSchema = z.object({
  kind: z.literal('batch'),
  events: z.array(StreamEventSchema).max(MAX_EVENTS_PER_MESSAGE),
  rejected: z.array(RejectedEventSchema).max(MAX_EVENTS_PER_MESSAGE),
})
export type StreamBatch = z.infer<typeof StreamBatchSchema>

/** A stream message: a batch, or (as messages were before batches, and as some routes still publish) one event. */
export const StreamMessageSchema = z.discriminatedUnion('kind', [StreamEventSchema, RejectedEventSchema, StreamBatchSchema])
export type StreamMessage = z.infer<typeof StreamMessageSchema>
/** One event or refused event of a message. */
export type StreamItem = StreamEvent | RejectedEvent

/** Its items, in the order their indexes count. */
export const itemsOf = (m: StreamMessage): StreamItem[] => (m.kind === 'batch' ? [...m.events, ...m.rejected] : [m])

export interface Rejection {
  code: 'invalid_event' | 'unknown_type' | 'too_old' | 'in_future'
  message: string
}

export interface TimeBounds {
  maxAgeMs: number
  maxFutureMs: number
}

/**
 * Validates one event and corrects its time for the device clock: the device's clock error is
 * received_at − sent_at, so the event happened at ts + (received_at − sent_at) on the server clock.
 */
export function admitEvent(
  raw: unknown,
  ctx: { receivedAt: number; appId: string },
  bounds: TimeBounds,
): { ok: true; event: StreamEvent } | { ok: false; rejection: Rejection } {
  const r = EventInputSchema.safeParse(raw)
  if (!r.success) {
    const issue = r.error.issues[0]
    const field = issue.path.join('.') || 'event'
    const code = field === 'type' && issue.code === 'invalid_value' ? 'unknown_type' : 'invalid_event'
    return { ok: false, rejection: { code, message: `${field}: ${issue.message}` } }
  }
  const e = r.data
  const clientTs = parseInstant(e.ts, true)!
  const sentAt = e.sent_at === undefined ? null : parseInstant(e.sent_at, true)!
  const ts = sentAt === null ? clientTs : clientTs + (ctx.receivedAt - sentAt)
  if (ts < ctx.receivedAt - bounds.maxAgeMs) {
    return { ok: false, rejection: { code: 'too_old', message: `event time is more than ${bounds.maxAgeMs / 3600_000} h in the past` } }
  }
  if (ts > ctx.receivedAt + bounds.maxFutureMs) {
    return { ok: false, rejection: { code: 'in_future', message: `event time is more than ${bounds.maxFutureMs / 60_000} min in the future` } }
  }
  return {
    ok: true,
    event: {
      kind: 'event',
      id: e.id,
      type: e.type,
      user_id: e.user_id,
      ts,
      client_ts: clientTs,
      sent_at: sentAt,
      received_at: ctx.receivedAt,
      app_id: ctx.appId,
      content_id: e.content_id ?? '',
      channel: e.channel ?? '',
      viewer: e.viewer ?? '',
    },
  }
}

/** Builds the dead-letter record for a refused event, keeping at most 2 KiB of what was sent. */
export function rejectedRecord(raw: unknown, rejection: Rejection, ctx: { receivedAt: number; appId: string }): RejectedEvent {
  const o = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>
  const str = (v: unknown) => (typeof v === 'string' ? v.slice(0, 128) : '')
  let text: string
  try {
    text = JSON.stringify(raw) ?? String(raw)
  } catch {
    text = String(raw)
  }
  return {
    kind: 'rejected',
    id: str(o.id),
    user_id: str(o.user_id),
    type: str(o.type),
    code: rejection.code,
    message: rejection.message,
    received_at: ctx.receivedAt,
    app_id: ctx.appId,
    raw: text.slice(0, 2048),
  }
}
