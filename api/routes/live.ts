import { z, type OpenAPIHono } from '@hono/zod-openapi'
import type { NatsConnection, Subscription } from '@nats-io/nats-core'
import { streamSSE, type SSEStreamingApi } from 'hono/streaming'
import type { Logger } from 'pino'
import { badRequest } from '../../core/errors.ts'
import type { LiveNotice } from '../../core/stream.ts'
import { DAY_MS, isoDay, periodRange } from '../../core/time.ts'
import { bearer, requireStaff, type AuthEnv } from '../middleware/auth/index.ts'
import type { Sessions } from '../middleware/auth/sessions.ts'
import { mustRead } from '../middleware/scope/index.ts'
import { errorResponses } from '../schemas.ts'
import { scopedRegion, Kpi, regionKpis, type KpiDeps, type RegionKpi } from './kpis.ts'

/**
 * Live KPIs as server-sent events. The aggregator announces on core NATS (`SUBJECT_LIVE`) which
 * regions each stored batch touched; this route keeps one subscription per process, shared by
 * every open stream, and pushes fresh KPIs of the watched region to each stream whose region a
 * notice touches — at most one push per `throttleMs` per stream, the last change never dropped —
 * plus a heartbeat comment every `heartbeatMs` so proxies keep the connection open.
 *
 * Events: `kpis` (data: {region, name, at, day, month, year}, each the body of /v1/kpis for today,
 * this month and this year, children included) once when the stream opens and after each change.
 */
export interface LiveDeps extends KpiDeps {
  nc: NatsConnection
  log: Logger
  /** A stream opened with a login token ends once the token is void (logout, reset, expiry): checked at each heartbeat. */
  sessions: Pick<Sessions, 'verify'>
}

export interface LiveOptions {
  subject: string
  throttleMs?: number
  heartbeatMs?: number
}

type Listener = (n: LiveNotice, receivedAt: number) => void

/** One NATS subscription per process, opened with the first stream and closed with the last. */
function createHub(nc: NatsConnection, subject: string, log: Logger) {
  const listeners = new Set<Listener>()
  let sub: Subscription | null = null
  const open = () => {
    const s = nc.subscribe(subject)
    sub = s
    void (async () => {
      for await (const m of s) {
        let n: LiveNotice
        try {
          n = m.json<LiveNotice>()
        } catch {
          continue
        }
        const at = Date.now()
        for (const l of listeners) l(n, at)
      }
      if (sub === s) sub = null
    })().catch((err) => log.warn({ err: String(err) }, 'live subscription ended'))
  }
  return {
    add(l: Listener) {
      listeners.add(l)
      if (!sub || sub.isClosed()) open()
      return () => {
        listeners.delete(l)
        if (!listeners.size && sub) {
          sub.unsubscribe()
          sub = null
        }
      }
    },
    get size() {
      return listeners.size
    },
  }
}

/** A notice matters to a watched region when one of its regions lies inside it ('' = national). */
export function touches(n: LiveNotice, region: string): boolean {
  return region === '' ? n.rows > 0 || n.regions.length > 0 : n.regions.some((r) => r.startsWith(region))
}

export type LiveKpis = {
  region: string | null
  name: string
  at: number
  day: RegionKpi & { from: string; to: string; children: RegionKpi[] }
  month: RegionKpi & { from: string; to: string; children: RegionKpi[] }
  year: RegionKpi & { from: string; to: string; children: RegionKpi[] }
}

export function mountLive(app: OpenAPIHono<AuthEnv>, deps: LiveDeps, opts: LiveOptions) {
  const throttleMs = opts.throttleMs ?? 300
  const heartbeatMs = opts.heartbeatMs ?? 15_000
  const hub = createHub(deps.nc, opts.subject, deps.log)

  /** KPIs of a region for today, this month and this year; shared by streams watching the same region. */
  const inFlight = new Map<string, { startedAt: number; p: Promise<LiveKpis> }>()
  const snapshot = (region: string, notBefore: number): Promise<LiveKpis> => {
    const cur = inFlight.get(region)
    if (cur && cur.startedAt >= notBefore) return cur.p
    const startedAt = Date.now()
    const p = (async () => {
      const now = Date.now()
      const span = async (period: 'day' | 'month' | 'year') => {
        const r = periodRange(period, now)
        const { top, children } = await regionKpis(deps, region, r.startMs, r.endMs)
        return { ...top, from: isoDay(r.startMs), to: isoDay(r.endMs - DAY_MS), children }
      }
      const [day, month, year] = await Promise.all([span('day'), span('month'), span('year')])
      return { region: region || null, name: day.name, at: now, day, month, year }
    })()
    const entry = { startedAt, p }
    inFlight.set(region, entry)
    const drop = () => {
      if (inFlight.get(region) === entry) inFlight.delete(region)
    }
    p.then(drop, drop)
    return p
  }

  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/v1/live',
    summary: 'Live KPIs of a region as server-sent events (officials and operators)',
    description:
      'A `text/event-stream` that never ends by itself. Event `kpis` (JSON: region, name, at, and day / month / year, each ' +
      'shaped like the body of `GET /v1/kpis` for today, this month and this year) is sent when the stream opens and again ' +
      `within a second of events of the region being counted — at most one every ${throttleMs} ms. A comment line (\`: ping\`) ` +
      `is sent every ${Math.round(heartbeatMs / 1000)} s. Send the token in the Authorization header (read the stream with fetch; ` +
      'never put tokens in URLs). Scope is checked like /v1/kpis: 403 outside yours.',
    security: [{ bearer: [] }],
    request: { query: z.object({ region: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/).optional() }) },
    responses: {
      200: {
        description: 'The event stream',
        content: {
          'text/event-stream': {
            schema: z.string().openapi({
              description: 'event: kpis\\ndata: {"region":"430623","name":"华容县","at":…,"day":{…},"month":{…},"year":{…}}',
            }),
          },
        },
      },
      ...errorResponses(400, 401, 403, 404),
    },
  })
  // Only for the OpenAPI document: the payload of a `kpis` event.
  app.openAPIRegistry.register(
    'LiveKpis',
    z.object({
      region: z.string().nullable(),
      name: z.string(),
      at: z.number().int(),
      day: Kpi.extend({ from: z.string(), to: z.string(), children: z.array(Kpi) }),
      month: Kpi.extend({ from: z.string(), to: z.string(), children: z.array(Kpi) }),
      year: Kpi.extend({ from: z.string(), to: z.string(), children: z.array(Kpi) }),
    }),
  )

  app.get('/v1/live', requireStaff(), async (c) => {
    const p = c.get('principal')
    const q = c.req.query('region')
    if (q !== undefined && !/^(\d{2}|\d{4}|\d{6}|\d{9})$/.test(q)) throw badRequest('region: must be a GB/T 2260 code')
    const region = scopedRegion(p, q, deps.tree, mustRead)
    const signal = c.req.raw.signal
    const token = bearer(c.req.header('authorization'))
    const login = token && token.split('.').length === 3 ? token : null // not the admin token

    // Proxies (nginx) must pass each event on at once, not buffer the stream.
    c.header('X-Accel-Buffering', 'no')
    return streamSSE(
      c,
      async (stream: SSEStreamingApi) => {
        let closed = false
        let finish!: () => void
        const done = new Promise<void>((res) => (finish = res))
        const close = () => {
          if (closed) return
          closed = true
          finish()
        }
        stream.onAbort(close)
        signal.addEventListener('abort', close, { once: true })

        // Writes go one after another; a client that stops reading stalls only its own stream.
        let writing: Promise<unknown> = Promise.resolve()
        const write = (f: () => Promise<unknown>) => (writing = writing.then(() => (closed ? undefined : f())).catch(close))

        let lastPush = 0
        let dirtyAt = 0
        let pushing = false
        let timer: NodeJS.Timeout | null = null
        const push = async () => {
          timer = null
          if (closed) return
          pushing = true
          lastPush = Date.now()
          const since = dirtyAt
          try {
            const k = await snapshot(region, since)
            await write(() => stream.writeSSE({ event: 'kpis', data: JSON.stringify(k) }))
          } catch (err) {
            deps.log.warn({ err: String(err) }, 'live push failed')
          } finally {
            pushing = false
          }
          if (dirtyAt > since) schedule()
        }
        const schedule = () => {
          if (closed || timer || pushing) return
          timer = setTimeout(() => void push(), Math.max(0, lastPush + throttleMs - Date.now()))
        }
        const unlisten = hub.add((n, at) => {
          if (!touches(n, region)) return
          dirtyAt = at
          schedule()
        })
        // A voided login ends the stream; a store that cannot answer now does not.
        const stillValid = async () => !login || (await deps.sessions.verify(login).catch(() => true)) !== null
        const heartbeat = setInterval(() => void stillValid().then((ok) => (ok ? write(() => stream.write(': ping\n\n')) : close())), heartbeatMs)
        try {
          dirtyAt = Date.now()
          await push()
          await done
        } finally {
          clearInterval(heartbeat)
          if (timer) clearTimeout(timer)
          unlisten()
        }
      },
      async (err) => {
        deps.log.warn({ err: String(err) }, 'live stream failed')
      },
    )
  })
  return { listeners: () => hub.size }
}
