import type { OpenAPIHono } from '@hono/zod-openapi'
import { z } from '@hono/zod-openapi'
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream'
import type { Logger } from 'pino'
import type { Config } from '../core/config.ts'
import { ApiError, badRequest, unavailable } from '../core/errors.ts'
import { admitEvent, EventInputSchema, rejectedRecord, type StreamEvent } from '../core/events.ts'
import type { Metrics } from '../core/metrics.ts'
import { CONSUMER, msgId, SUBJECT_EVENTS, SUBJECT_REJECTED } from '../core/stream.ts'
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
 * Back-pressure, not loss: the stream's backlog (messages not yet counted and stored) is read once a
 * second; above the limit ingest answers 429 with Retry-After instead of letting the queue grow
 * without bound. 0 disables the check.
 */
export function watchBacklog(jsm: JetStreamManager, stream: string, everyMs = 1000) {
  let backlog = 0
  let reading = false // one read at a time: a slow one must not land after, and over, a newer one
  const read = async () => {
    if (reading) return
    reading = true
    try {
      const info = await jsm.consumers.info(stream, CONSUMER)
      backlog = info.num_pending + info.num_ack_pending
    } catch {
      /* no consumer yet, or NATS down: the publish path answers for that */
    } finally {
      reading = false
    }
  }
  void read()
  const timer = setInterval(() => void read(), everyMs)
  timer.unref()
  return { backlog: () => backlog, stop: () => clearInterval(timer) }
}

export function mountIngest(app: OpenAPIHono<AuthEnv>, config: Config, deps: IngestDeps): void {
  const { js, log, metrics } = deps
  const backlog = config.events.maxBacklog ? watchBacklog(deps.jsm, config.nats.stream) : null
  const subject = SUBJECT_EVENTS(config.nats.stream)
  const rejectedSubject = SUBJECT_REJECTED(config.nats.stream)
  const { maxBatch, maxBytes } = config.events
  const enc = new TextEncoder()

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
      if (backlog && backlog.backlog() > config.events.maxBacklog) {
        throw new ApiError(429, 'backlog', `counting is ${backlog.backlog()} messages behind; retry later`, { 'Retry-After': '2' })
      }

      const rejected: z.infer<typeof IngestResponseSchema>['rejected'] = []
      const accepted: StreamEvent[] = []
      const deadLetters: Uint8Array[] = []
      raw.forEach((r, index) => {
        const type = typeof (r as { type?: unknown })?.type === 'string' ? (r as { type: string }).type : 'unknown'
        metrics.eventsReceived.inc({ type: type.slice(0, 20) })
        const res = unreadable.has(index)
          ? ({ ok: false, rejection: { code: 'invalid_event', message: unreadable.get(index)! } } as const)
          : admitEvent(r, ctx, config.events)
        if (res.ok) return void accepted.push(res.event)
        const id = typeof (r as { id?: unknown })?.id === 'string' ? (r as { id: string }).id : null
        rejected.push({ index, id, ...res.rejection })
        metrics.eventsRejected.inc({ code: res.rejection.code })
        deadLetters.push(enc.encode(JSON.stringify(rejectedRecord(r, res.rejection, ctx))))
      })

      const pubs = await Promise.allSettled([
        ...accepted.map((e) => js.publish(subject, enc.encode(JSON.stringify(e)), { msgID: msgId(e), timeout: 5000 })),
        ...deadLetters.map((d) => js.publish(rejectedSubject, d, { timeout: 5000 })),
      ])
      const failed = pubs.find((p) => p.status === 'rejected')
      if (failed) {
        log.warn({ err: String((failed as PromiseRejectedResult).reason), events: raw.length }, 'publish failed; answering 503')
        throw unavailable('nats')
      }
      let duplicates = 0
      accepted.forEach((e, i) => {
        const p = pubs[i] as PromiseFulfilledResult<{ duplicate: boolean }>
        if (p.value.duplicate) duplicates++
        else metrics.eventsAccepted.inc({ type: e.type })
      })
      if (duplicates) metrics.eventsDuplicate.inc({ stage: 'ingest' }, duplicates)
      return c.json({ accepted: accepted.length - duplicates, duplicates, rejected }, 202)
    },
  )
}
