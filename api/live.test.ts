import { serve } from '@hono/node-server'
import { OpenAPIHono } from '@hono/zod-openapi'
import type { Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SUBJECT_LIVE, type LiveNotice } from '../core/stream.ts'
import { createOfficial } from '../test/accounts.ts'
import { ADMIN, share, startStack, type Stack } from '../test/stack.ts'
import { createSessions } from './middleware/auth/sessions.ts'
import type { AuthEnv } from './middleware/auth/index.ts'
import { mountLive, touches } from './routes/live.ts'

/**
 * GET /v1/live: server-sent events of a region's KPIs, fed by the aggregator's notices on core NATS.
 * Read with fetch and a stream reader, as the dashboard does (EventSource cannot send a token).
 */
let s: Stack
let key: string
let county: string // token of an official of 华容县
let neighbour: string // token of an official of the neighbouring 岳阳县
const TOWN = '430623110' // 插旗镇, 华容县

const login = (phone: string, region: string) => createOfficial(s, { phone, name: `官员${region}`, scope: { region_code: region } })

beforeAll(async () => {
  s = await startStack()
  key = await s.createAppKey()
  await s.importUsers([
    { id: 'lv1', phone: '13800001001', real_name: '赵一', region_code: TOWN, certified_at: '2020-01-01' },
    { id: 'lv2', phone: '13800001002', real_name: '钱二', region_code: '430621100', certified_at: '2020-01-01' },
  ])
  county = await login('13900001001', '430623')
  neighbour = await login('13900001002', '430621')
})
afterAll(async () => s?.stop())

/** An SSE client over fetch: parses `event:` / `data:` blocks and lets the test wait for one. */
function open(base: string, path: string, token: string | null) {
  const ctl = new AbortController()
  const events: { event: string; data: string }[] = []
  const comments: string[] = []
  const waiters: (() => void)[] = []
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {}
  const response = fetch(base + path, { headers, signal: ctl.signal })
  const pump = (async () => {
    const r = await response
    if (r.status !== 200 || !r.body) return
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader()
    let buf = ''
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buf += value
        let i: number
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i)
          buf = buf.slice(i + 2)
          let event = 'message'
          const data: string[] = []
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line)
            else if (line.startsWith('event:')) event = line.slice(6).trim()
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
          }
          if (data.length) events.push({ event, data: data.join('\n') })
          for (const w of waiters.splice(0)) w()
        }
      }
    } catch {
      /* aborted */
    }
  })()
  return {
    response,
    events,
    comments,
    /** Resolves when the server ends the stream (or it is closed here). */
    ended: pump,
    /** Resolves with the first event (from index `from` on) that satisfies `pred`. */
    async next<T>(pred: (e: { event: string; data: any }) => boolean, from = 0, timeoutMs = 15_000): Promise<T> {
      const t0 = Date.now()
      for (;;) {
        for (let i = from; i < events.length; i++) {
          const e = { event: events[i].event, data: JSON.parse(events[i].data) }
          if (pred(e)) return e.data as T
        }
        if (Date.now() - t0 > timeoutMs) throw new Error('timed out waiting for an event')
        await new Promise<void>((res) => {
          waiters.push(res)
          setTimeout(res, 500)
        })
      }
    },
    close: async () => {
      ctl.abort()
      await pump
    },
  }
}

describe('GET /v1/live', () => {
  it('answers 401 without a token and 403 outside the scope, with the JSON error body', async () => {
    const anon = await fetch(`${s.base}/v1/live?region=430623`)
    expect(anon.status).toBe(401)
    expect((await anon.json()).error.code).toBe('unauthorized')
    const out = await fetch(`${s.base}/v1/live?region=430623`, { headers: { authorization: `Bearer ${neighbour}` } })
    expect(out.status).toBe(403)
    const body = await out.json()
    expect(body.error.code).toBe('forbidden')
    expect(JSON.stringify(body)).not.toContain('华容')
    // Apps are not staff.
    expect((await fetch(`${s.base}/v1/live?region=430623`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(403)
    expect((await fetch(`${s.base}/v1/live?region=43x`, { headers: { authorization: `Bearer ${county}` } })).status).toBe(400)
    expect((await fetch(`${s.base}/v1/live?region=430623999`, { headers: { authorization: `Bearer ${county}` } })).status).toBe(404)
  })

  it('sends the KPIs at once, then pushes fresh KPIs within a second of events being counted', async () => {
    const c = open(s.base, '/v1/live', county) // default region: her scope
    const r = await c.response
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toContain('text/event-stream')
    const first = await c.next<any>((e) => e.event === 'kpis')
    expect(first).toMatchObject({ region: '430623', name: '华容县', day: { region: '430623', shares: 0 } })
    expect(first.day.children.find((k: any) => k.region === TOWN)).toMatchObject({ shares: 0 })
    const seen = c.events.length
    const posted = Date.now()
    expect((await s.postEvents(key, [share('lv1', Date.now() - 1000), share('lv1', Date.now() - 900)])).status).toBe(202)
    const pushed = await c.next<any>((e) => e.event === 'kpis' && e.data.day.shares === 2, seen)
    const latency = Date.now() - posted
    console.log(`[live] 202 → pushed KPIs in ${latency} ms`)
    expect(pushed).toMatchObject({ day: { shares: 2, active: 1 }, month: { shares: 2 }, year: { shares: 2 } })
    expect(pushed.day.children.find((k: any) => k.region === TOWN)).toMatchObject({ shares: 2, active: 1 })
    await c.close()
  })

  it('does not push for events outside the watched region', async () => {
    const c = open(s.base, '/v1/live?region=430623', county)
    await c.next((e) => e.event === 'kpis')
    const watcher = open(s.base, '/v1/live?region=430621', neighbour)
    await watcher.next((e) => e.event === 'kpis')
    const before = c.events.length
    const seen = watcher.events.length
    expect((await s.postEvents(key, [share('lv2', Date.now() - 1000)])).status).toBe(202)
    // The neighbour's stream gets the push; by then the county's has had every chance to get one.
    await watcher.next((e) => e.event === 'kpis' && e.data.day.shares === 1, seen)
    expect(c.events.length).toBe(before)
    await Promise.all([c.close(), watcher.close()])
  })
})

describe('the stream itself', () => {
  const subject = 'live.test.flushed'
  let server: Server
  let base: string
  let live: ReturnType<typeof mountLive>
  beforeAll(async () => {
    const app = new OpenAPIHono<AuthEnv>()
    app.use(async (c, next) => {
      c.set('principal', { kind: 'operator' })
      await next()
    })
    // The stack's own sessions (same key, same Redis): a token it issued, and its logout, count here.
    live = mountLive(app, { ...s.deps, sessions: createSessions(ADMIN, { redis: s.deps.redis }) }, { subject, throttleMs: 300, heartbeatMs: 200 })
    server = await new Promise<Server>((res) => {
      const srv = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => res(srv as Server))
    })
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  })
  afterAll(async () => {
    server?.closeAllConnections()
    await new Promise((res) => server?.close(res))
  })

  const notice = (regions: string[]): LiveNotice => ({ regions, institutions: [], users: [], rows: regions.length, at: Date.now() })
  const waitFor = async (cond: () => boolean) => {
    while (!cond()) await new Promise((res) => setTimeout(res, 20))
  }

  it('throttles a burst of notices to at most one push per 300 ms, sends heartbeats, and unsubscribes on disconnect', async () => {
    const c = open(base, '/v1/live?region=4306', null)
    await c.next((e) => e.event === 'kpis')
    expect(live.listeners()).toBe(1)
    const start = c.events.length
    const t0 = Date.now()
    // 20 notices over ~1 s, every 50 ms.
    let lastNotice = 0
    for (let i = 0; i < 20; i++) {
      // Taken before the last publish: the push that follows it starts no earlier than its arrival.
      lastNotice = Date.now()
      s.deps.nc.publish(subject, JSON.stringify(notice(['430623110'])))
      await new Promise((res) => setTimeout(res, 50))
    }
    // The last change is never dropped: a push computed after the last notice arrives.
    const trailing = await c.next<{ at: number }>((e) => e.event === 'kpis' && e.data.at >= lastNotice, start)
    expect(trailing.at).toBeGreaterThanOrEqual(lastNotice)
    // A burst is coalesced: 20 notices give at most one push per 300 ms of the burst, plus the trailing
    // one. (Counted, not timed pair by pair: a snapshot may be shared by pushes, and on a loaded
    // machine its timestamp is not the push's.)
    const pushes = c.events.length - start
    expect(pushes).toBeLessThan(20)
    expect(pushes).toBeLessThanOrEqual(Math.ceil((Date.now() - t0) / 300) + 1)
    await waitFor(() => c.comments.length > 0)
    expect(c.comments[0]).toBe(': ping')
    // A notice for another province changes nothing.
    expect(touches(notice(['110101001']), '4306')).toBe(false)
    expect(touches(notice(['430623110']), '43')).toBe(true)
    expect(touches(notice(['110101001']), '')).toBe(true)
    await c.close()
    await waitFor(() => live.listeners() === 0)
    expect(live.listeners()).toBe(0)
  })

  it('ends a stream opened with a login token once that token is void (logout), at the next heartbeat', async () => {
    const token = await createOfficial(s, { phone: '13900000077', name: '会退出', scope: { region_code: '4306' } })
    const c = open(base, '/v1/live?region=4306', token)
    await c.next((e) => e.event === 'kpis')
    await waitFor(() => c.comments.length > 0) // heartbeats pass while the token holds
    expect((await s.call('POST', '/v1/auth/logout', { token })).status).toBe(204)
    await c.ended // the server closes it: nothing here aborts the fetch
    await waitFor(() => live.listeners() === 0)
  })
})
