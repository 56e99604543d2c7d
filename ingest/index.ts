import type { OpenAPIHono } from '@hono/zod-openapi'
import { z } from '@hono/zod-openapi'
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream'
import type { Logger } from 'pino'
import type { Config } from '../core/config.ts'
import { ApiError, badRequest, unavailable } from '../core/errors.ts'
import { createHash } from 'node:crypto'
import { admitEvent, EventInputSchema, MAX_EVENTS_PER_MESSAGE, rejectedRecord, type RejectedEvent, type StreamEvent } from '../core/events.ts'
import type { Metrics } from '../core/metrics.ts'
import { CONSUMER, msgId, SUBJECT_EVENTS } from '../core/stream.ts'
import { requireApp, type AuthEnv } from '../api/middleware/auth/index.ts'
import { limitBody } from '../api/middleware/body-limit/index.ts'
import { ErrorSchema } from '../api/schemas.ts'

export interface IngestDeps {
  js: JetStreamClient
  jsm: JetStreamManager
  natsUp: () => boolean
  log: Logger
  metrics: Metrics
}

export const IngestResponseSchema = z.object({
  accepted: z.number().int(),
  duplicates: z.number().int(),
  rejected: z.array(z.object({ index: z.number().int(), id: z.string().nullable(), code: z.string(), message: z.string() })),
})

/** Splits the body into raw events: {events:[…]} (or a bare array) as JSON, or one event per NDJSON line. */
export function parseBody(text: string, contentType: string): { raw: unknown[]; unreadable: Map<number, string> } {
  const unreadable = new Map<number, string>()
  if (/ndjson|jsonl|json-seq/i.test(contentType)) {
    const lines = text.split('\n').map((l) => l.trim()).filter(Boolean)
    const raw = lines.map((l, i) => {
      try {
        return JSON.parse(l) as unknown
      } catch {
        unreadable.set(i, 'line is not valid JSON')
        return undefined
      }
    })
    return { raw, unreadable }
  }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw badRequest('body is not valid JSON', 'invalid_json')
  }
  const events = Array.isArray(body) ? body : (body as { events?: unknown })?.events
  if (!Array.isArray(events)) throw badRequest('body must be {"events": [...]} or NDJSON', 'invalid_body')
  return { raw: events, unreadable }
}

/**
 * Back-pressure, not loss: the stream's backlog (events not yet counted and stored) is read once a
 * second; above the limit ingest answers 429 with Retry-After instead of letting the queue grow
 * without bound. 0 disables the check. A message holds a whole request, so the backlog in events
 * is estimated from the work queue's bytes (what is not yet acked) and the bytes per event this
 * process has published: exact enough for a limit, and one call a second whatever the rate.
 */
export function watchBacklog(jsm: JetStreamManager, stream: string, everyMs = 1000) {
  let backlog = 0
  let readAt = 0
  let reading: Promise<void> | null = null // one read at a time: a slow one must not land after, and over, a newer one
  let published = { bytes: 0, events: 0 }
  const read = () =>
    (reading ??= (async () => {
      try {
        const [info, si] = await Promise.all([jsm.consumers.info(stream, CONSUMER), jsm.streams.info(stream)])
        const perEvent = published.events ? published.bytes / published.events : 300
        backlog = Math.max(info.num_pending + info.num_ack_pending, Math.round(si.state.bytes / perEvent))
        readAt = Date.now()
      } catch {
        /* no consumer yet, or NATS down: the publish path answers for that */
      } finally {
        reading = null
      }
    })())
  void read()
  const timer = setInterval(() => void read(), everyMs)
  timer.unref()
  return {
    backlog: () => backlog,
    /** Above `limit`? A refusal is decided on a reading at most 100 ms old, not on the last tick's. */
    async over(limit: number): Promise<boolean> {
      if (backlog <= limit) return false
      if (Date.now() - readAt > 100) await read()
      return backlog > limit
    },
    /** What this process put on the stream, for the bytes-per-event estimate. */
    published(bytes: number, events: number) {
      if (published.events > 1e9) published = { bytes: 0, events: 0 }
      published.bytes += bytes
      published.events += events
    },
    stop: () => clearInterval(timer),
  }
}

/** Bytes of one stream message at most (the stream's max_msg_size is 1 MiB; headers and margins fit beside). */
const MAX_MESSAGE_BYTES = 512 * 1024

/**
 * The messages of one request: its accepted events and dead letters, cut where a message would pass
 * MAX_MESSAGE_BYTES or MAX_EVENTS_PER_MESSAGE items. Each message with events is identified by a
 * hash of their identities (msgId), so the stream drops a resent request within its duplicate window.
 */
export function toMessages(accepted: StreamEvent[], rejected: RejectedEvent[]): { data: Uint8Array; msgID?: string; events: number }[] {
  const enc = new TextEncoder()
  const out: { data: Uint8Array; msgID?: string; events: number }[] = []
  let events: string[] = []
  let dead: string[] = []
  let ids: string[] = []
  let bytes = 0
  const cut = () => {
    if (!events.length && !dead.length) return
    const data = enc.encode(`{"kind":"batch","events":[${events.join(',')}],"rejected":[${dead.join(',')}]}`)
    out.push({ data, msgID: ids.length ? 'b' + createHash('sha256').update(ids.join('\n')).digest('base64url').slice(0, 32) : undefined, events: events.length })
    events = []
    dead = []
    ids = []
    bytes = 0
  }
  const add = (json: string, list: string[], id?: string) => {
    if (bytes + json.length + 64 > MAX_MESSAGE_BYTES || events.length + dead.length >= MAX_EVENTS_PER_MESSAGE) cut()
    list.push(json)
    if (id) ids.push(id)
    bytes += Buffer.byteLength(json) + 1
  }
  for (const e of accepted) add(JSON.stringify(e), events, msgId(e))
  for (const r of rejected) add(JSON.stringify(r), dead)
  cut()
  return out
}

export function mountIngest(app: OpenAPIHono<AuthEnv>, config: Config, deps: IngestDeps): void {
  const { js, log, metrics } = deps
  const backlog = config.events.maxBacklog ? watchBacklog(deps.jsm, config.nats.stream) : null
  const subject = SUBJECT_EVENTS(config.nats.stream)
  const { maxBatch, maxBytes } = config.events

  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/v1/events',
    summary: 'Post a batch of events (app key)',
    description: `At most ${maxBatch} events and 1 MiB, as {"events": [...]} or application/x-ndjson. 202 once the accepted events are in the stream.`,
    security: [{ bearer: [] }],
    request: {
      body: {
        content: {
          'application/json': { schema: z.object({ events: z.array(EventInputSchema) }) },
          'application/x-ndjson': { schema: EventInputSchema },
        },
      },
    },
    responses: {
      202: { description: 'Accepted events are durably in the stream', content: { 'application/json': { schema: IngestResponseSchema } } },
      400: { description: 'Body unreadable as a whole', content: { 'application/json': { schema: ErrorSchema } } },
      401: { description: 'No or bad app key', content: { 'application/json': { schema: ErrorSchema } } },
      413: { description: 'More than 1,000 events or 1 MiB', content: { 'application/json': { schema: ErrorSchema } } },
      429: { description: 'Counting is too far behind (INGEST_MAX_BACKLOG); retry after Retry-After', content: { 'application/json': { schema: ErrorSchema } } },
      503: { description: 'The stream is unavailable; retry after Retry-After', content: { 'application/json': { schema: ErrorSchema } } },
    },
  })

  app.post(
    '/v1/events',
    requireApp(),
    limitBody(maxBytes, '1 MiB'),
    async (c) => {
      const principal = c.get('principal')
      if (principal.kind !== 'app') throw new ApiError(401, 'unauthorized', 'app key required')
      const receivedAt = Date.now()
      const ctx = { receivedAt, appId: principal.app.id }
      const { raw, unreadable } = parseBody(await c.req.text(), c.req.header('content-type') ?? '')
      if (raw.length > maxBatch) throw new ApiError(413, 'too_many_events', `at most ${maxBatch} events per request, got ${raw.length}`)
      if (!deps.natsUp()) throw unavailable('nats')
      if (backlog && (await backlog.over(config.events.maxBacklog))) {
        throw new ApiError(429, 'backlog', `counting is about ${backlog.backlog()} events behind; retry later`, { 'Retry-After': '2' })
      }

      const rejected: z.infer<typeof IngestResponseSchema>['rejected'] = []
      const accepted: StreamEvent[] = []
      const deadLetters: RejectedEvent[] = []
      // The same event twice in one request: the second is a duplicate, answered as such here.
      const seen = new Set<string>()
      let repeatedHere = 0
      raw.forEach((r, index) => {
        const type = typeof (r as { type?: unknown })?.type === 'string' ? (r as { type: string }).type : 'unknown'
        metrics.eventsReceived.inc({ type: type.slice(0, 20) })
        const res = unreadable.has(index)
          ? ({ ok: false, rejection: { code: 'invalid_event', message: unreadable.get(index)! } } as const)
          : admitEvent(r, ctx, config.events)
        if (res.ok) {
          const id = msgId(res.event)
          if (seen.has(id)) return void repeatedHere++
          seen.add(id)
          return void accepted.push(res.event)
        }
        const id = typeof (r as { id?: unknown })?.id === 'string' ? (r as { id: string }).id : null
        rejected.push({ index, id, ...res.rejection })
        metrics.eventsRejected.inc({ code: res.rejection.code })
        deadLetters.push(rejectedRecord(r, res.rejection, ctx))
      })

      // One message per request (a few for a large one): the stream's cost is per message, not per event.
      const messages = toMessages(accepted, deadLetters)
      const pubs = await Promise.allSettled(messages.map((m) => js.publish(subject, m.data, { ...(m.msgID ? { msgID: m.msgID } : {}), timeout: 5000 })))
      const failed = pubs.find((p) => p.status === 'rejected')
      if (failed) {
        log.warn({ err: String((failed as PromiseRejectedResult).reason), events: raw.length }, 'publish failed; answering 503')
        throw unavailable('nats')
      }
      // A message the stream already holds (the same request sent again): all its events are duplicates.
      let first = 0
      let resent = 0
      messages.forEach((m, i) => {
        const p = pubs[i] as PromiseFulfilledResult<{ duplicate: boolean }>
        const mine = accepted.slice(first, (first += m.events))
        if (p.value.duplicate) resent += mine.length
        else {
          backlog?.published(m.data.length, m.events || 1)
          for (const e of mine) metrics.eventsAccepted.inc({ type: e.type })
        }
      })
      const duplicates = repeatedHere + resent
      if (duplicates) metrics.eventsDuplicate.inc({ stage: 'ingest' }, duplicates)
      return c.json({ accepted: accepted.length - resent, duplicates, rejected }, 202)
    },
  )
}
