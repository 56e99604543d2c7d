import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startNats } from '../core/local-services.ts'
import { ADMIN, share, startStack, type Stack } from '../test/stack.ts'

let s: Stack
let key: string
const TOWN = '430623110'

beforeAll(async () => {
  s = await startStack({ INGEST_MAX_BACKLOG: '50' })
  key = await s.createAppKey()
  await s.importUsers([{ id: 'in1', phone: '13900000001', real_name: '王五', region_code: TOWN, certified_at: '2020-01-01' }])
})
afterAll(async () => s?.stop())

const nationalTotal = async () => (await s.call('GET', '/v1/leaderboards?metric=shares&period=all')).json.total as number
const send = (body: string, type = 'application/json', token: string | null = key) => s.call('POST', '/v1/events', { token, body, type })

describe('POST /v1/events — happy path', () => {
  it('accepts JSON and NDJSON, answering 202 with counts', async () => {
    const r = await s.postEvents(key, [share('in1', Date.now())])
    expect(r).toMatchObject({ status: 202, json: { accepted: 1, duplicates: 0, rejected: [] } })
    const nd = await send([share('in1', Date.now()), share('in1', Date.now())].map((e) => JSON.stringify(e)).join('\n') + '\n', 'application/x-ndjson')
    expect(nd.status).toBe(202)
    expect(nd.json.accepted).toBe(2)
    await s.waitForFacts(3)
    expect((await s.call('GET', '/v1/leaderboards/users/in1?period=all')).json.score).toBe(3)
  })
})

describe('POST /v1/events — bad input changes nothing', () => {
  it('answers each kind of bad input with its documented status and counts nothing', async () => {
    const before = (await s.call('GET', '/v1/leaderboards/users/in1?period=all')).json.score
    const facts = await s.factCount()

    // 400: the body as a whole is unreadable.
    const bad = await send('{"events": [')
    expect(bad.status).toBe(400)
    expect(bad.json.error).toMatchObject({ code: 'invalid_json', request_id: expect.any(String) })
    expect((await send('{"nope": 1}')).status).toBe(400)

    // 401: missing, wrong, or not an app key.
    expect((await send(JSON.stringify({ events: [share('in1', Date.now())] }), 'application/json', null)).status).toBe(401)
    expect((await send(JSON.stringify({ events: [share('in1', Date.now())] }), 'application/json', 'kpk_wrong')).status).toBe(401)
    expect((await send(JSON.stringify({ events: [share('in1', Date.now())] }), 'application/json', ADMIN)).status).toBe(401)

    // 413: more than 1,000 events, or more than 1 MiB.
    const many = Array.from({ length: 1001 }, () => share('in1', Date.now()))
    const tooMany = await send(JSON.stringify({ events: many }))
    expect(tooMany.status).toBe(413)
    expect(tooMany.json.error.code).toBe('too_many_events')
    const big = await send(JSON.stringify({ events: [{ ...share('in1', Date.now()), content_id: 'x'.repeat(1_100_000) }] }))
    expect(big.status).toBe(413)

    // 202 with per-event rejections: wrong types, unknown types, missing fields, bad times.
    const now = Date.now()
    const mixed = await s.postEvents(key, [
      { ...share('in1', now), ts: 'yesterday' },
      { ...share('in1', now), type: 'teleport' },
      { ...share('in1', now), channel: undefined },
      { ...share('in1', now), user_id: 42 },
      'not an object',
      { ...share('in1', now - 80 * 3600_000) },
      { ...share('in1', now + 3600_000) },
    ])
    expect(mixed.status).toBe(202)
    expect(mixed.json.accepted).toBe(0)
    expect(mixed.json.rejected.map((r: { index: number; code: string }) => [r.index, r.code])).toEqual([
      [0, 'invalid_event'],
      [1, 'unknown_type'],
      [2, 'invalid_event'],
      [3, 'invalid_event'],
      [4, 'invalid_event'],
      [5, 'too_old'],
      [6, 'in_future'],
    ])
    // Refused events are kept as facts with their reason (the dead-letter path), and count nowhere.
    await s.waitForFacts(facts + 7)
    expect(await s.factCount("decision = 'rejected' AND reason LIKE 'unknown_type%'")).toBe(1)
    expect(await s.factCount("decision = 'counted'")).toBe(facts)
    expect((await s.call('GET', '/v1/leaderboards/users/in1?period=all')).json.score).toBe(before)

    // Still serving.
    expect((await s.call('GET', '/healthz', { token: null })).status).toBe(200)
    expect((await s.postEvents(key, [share('in1', Date.now())])).status).toBe(202)
  })

  it('keeps a bad NDJSON line to itself', async () => {
    const r = await send(`${JSON.stringify(share('in1', Date.now()))}\n{oops\n`, 'application/x-ndjson')
    expect(r.status).toBe(202)
    expect(r.json.accepted).toBe(1)
    expect(r.json.rejected).toEqual([{ index: 1, id: null, code: 'invalid_event', message: 'line is not valid JSON' }])
  })

  it('counts an unknown user nowhere but keeps the fact', async () => {
    const facts = await s.factCount()
    const r = await s.postEvents(key, [share('ghost', Date.now())])
    expect(r.json.accepted).toBe(1)
    await s.waitForFacts(facts + 1)
    expect(await s.factCount("user_id = 'ghost' AND decision = 'unknown_user'")).toBe(1)
    expect((await s.call('GET', '/v1/leaderboards/users/ghost?period=all')).status).toBe(404)
  })
})

describe('POST /v1/events — one stream message per request', () => {
  const streamSeq = async () => (await s.deps.jsm.streams.info(s.config.nats.stream)).state.last_seq
  const users = Array.from({ length: 10 }, (_, i) => `bm${i}`)
  const score = async (u: string) => (await s.call('GET', `/v1/leaderboards/users/${u}?period=all`)).json.score as number
  beforeAll(async () => {
    await s.importUsers(users.map((id, i) => ({ id, phone: `1390000010${i}`, real_name: '批' + i, region_code: TOWN, certified_at: '2020-01-01' })))
  })

  it('puts a whole request on the stream as one message, every event counted once at its own place', async () => {
    const [seq0, facts] = [await streamSeq(), await s.factCount()]
    const before = await Promise.all(users.map(score))
    const t = Date.now()
    // 1,000 events of ten communicators (under the 300 cap), 50 of them refused (a bad time): one message holds both.
    const events: Record<string, unknown>[] = Array.from({ length: 1000 }, (_, i) => share(users[i % 10], t - i, { id: `one-msg-${t}-${i}` }))
    for (let i = 0; i < 50; i++) events[i * 20 + 1] = { ...events[i * 20 + 1], ts: 'never' }
    const r = await s.postEvents(key, events)
    expect(r.json).toMatchObject({ accepted: 950, duplicates: 0 })
    expect(r.json.rejected).toHaveLength(50)
    expect((await streamSeq()) - seq0).toBe(1)
    await s.waitForFacts(facts + 1000)
    expect(await s.factCount(`event_id LIKE 'one-msg-${t}-%' AND decision = 'counted'`)).toBe(950)
    expect(await s.factCount(`event_id LIKE 'one-msg-${t}-%' AND decision = 'rejected'`)).toBe(50)
    // Each fact has its own place in the message: 1,000 distinct indexes under one sequence.
    expect(await s.factCount(`event_id LIKE 'one-msg-${t}-%' AND stream_seq = ${seq0 + 1} AND stream_idx < 1000`)).toBe(1000)
    const after = await Promise.all(users.map(score))
    // users[1] had every refused event (index 20k+1): 100 sent, 50 refused.
    expect(after.map((v, i) => v - before[i])).toEqual(users.map((_, i) => (i === 1 ? 50 : 100)))
  })

  it('stores a refused event whose text holds a lone surrogate beside the good events of its request', async () => {
    const facts = await s.factCount()
    const t = Date.now()
    const body = `{"events":[${JSON.stringify(share(users[8], t, { id: `lone-ok-${t}` }))},{"id":"\\ud83d","type":"share_back","user_id":"${users[8]}","ts":${t},"content_id":"c","channel":"wechat"}]}`
    const r = await s.call('POST', '/v1/events', { token: key, body, type: 'application/json' })
    expect(r.json).toMatchObject({ accepted: 1, duplicates: 0 })
    expect(r.json.rejected).toHaveLength(1)
    // One message holds both: the bad one must not keep the good one (or itself) out of the facts.
    await s.waitForFacts(facts + 2)
    expect(await s.factCount(`event_id = 'lone-ok-${t}' AND decision = 'counted'`)).toBe(1)
    expect(await s.factCount(`event_id = '\uFFFD' AND decision = 'rejected'`)).toBeGreaterThanOrEqual(1)
  })

  it('answers duplicates inside a request and a resent request as such; any other resend still counts once', async () => {
    const u = users[9]
    const before = await score(u)
    const facts = await s.factCount()
    const t = Date.now()
    const a = share(u, t, { id: `dup-a-${t}` })
    const b = share(u, t, { id: `dup-b-${t}` })
    // The same event twice in one request: the second is a duplicate.
    expect((await s.postEvents(key, [a, a, b])).json).toMatchObject({ accepted: 2, duplicates: 1 })
    // The same request again: the stream drops the whole message.
    expect((await s.postEvents(key, [a, a, b])).json).toMatchObject({ accepted: 0, duplicates: 3 })
    // One of them inside another request: a new message, so accepted here — and a duplicate when counted.
    const c = share(u, t, { id: `dup-c-${t}` })
    expect((await s.postEvents(key, [b, c])).json).toMatchObject({ accepted: 2, duplicates: 0 })
    await s.waitForFacts(facts + 4)
    expect(await s.factCount(`event_id = 'dup-b-${t}' AND decision = 'duplicate'`)).toBe(1)
    expect(await score(u)).toBe(before + 3)
  })
})

describe('POST /v1/events — back-pressure', () => {
  it('answers 429 with Retry-After while counting is too far behind, and 202 once it caught up', async () => {
    const agg = s.service.aggregator!
    await agg.stop() // counting stops; the stream holds what arrives
    const facts = await s.factCount()
    expect((await s.postEvents(key, Array.from({ length: 60 }, () => share('in1', Date.now())))).status).toBe(202)
    // The backlog is read once a second: the first single post may already meet a 429, or a few
    // may still pass. Count what was accepted.
    let accepted = 60
    const deadline = Date.now() + 10_000
    let r = await s.postEvents(key, [share('in1', Date.now())])
    while (r.status === 202 && Date.now() < deadline) {
      accepted += 1
      await new Promise((res) => setTimeout(res, 200))
      r = await s.postEvents(key, [share('in1', Date.now())])
    }
    expect(r.status).toBe(429)
    expect(r.json.error.code).toBe('backlog')
    await agg.start()
    // Messages the stopped subscription had pulled but not handed over come back only after the
    // consumer's ack_wait (10 s): on a loaded machine the catch-up takes a while.
    await s.waitForFacts(facts + accepted, 60_000)
    expect(await s.factCount()).toBe(facts + accepted)
    const until = Date.now() + 10_000
    let ok = await s.postEvents(key, [share('in1', Date.now())])
    while (ok.status === 429 && Date.now() < until) {
      await new Promise((res) => setTimeout(res, 200))
      ok = await s.postEvents(key, [share('in1', Date.now())])
    }
    expect(ok.status).toBe(202)
  }, 120_000)
})

describe('POST /v1/events — NATS down', () => {
  it('answers 503 with Retry-After while NATS is down, and accepts again once it is back', async () => {
    const port = Number(new URL(s.natsServer.url).port)
    await s.natsServer.stop()
    const r = await s.postEvents(key, [share('in1', Date.now())])
    expect(r.status).toBe(503)
    const raw = await s.call('POST', '/v1/events', { token: key, body: { events: [share('in1', Date.now())] } })
    expect(raw.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(raw.json.error.code).toBe('unavailable')
    const ready = await s.call('GET', '/readyz', { token: null })
    expect(ready.status).toBe(503)
    expect(ready.json.down).toContain('nats')
    // Beyond ingest: a read from a NATS KV store says so too (503, not 500).
    const kvRead = await s.call('GET', '/v1/campaigns/cp0000000000000000') // at once, not after the 5 s request timeout
    expect(kvRead.status, kvRead.text).toBe(503)
    expect(kvRead.json.error).toMatchObject({ code: 'unavailable', message: 'nats is unavailable; retry later' })

    // Bring the same server back (same data dir and port); the client reconnects. The status
    // iterator is taken first so that no reconnect notice can slip by unseen.
    const statuses = s.deps.nc.status()[Symbol.asyncIterator]()
    const back = await startNats(s.dir, port)
    Object.assign(s.natsServer, back)
    const deadline = Date.now() + 20_000
    let status = 0
    while (Date.now() < deadline && status !== 202) {
      status = (await s.postEvents(key, [share('in1', Date.now(), { id: randomUUID() })])).status
      // Wait for the client's next status change, or at most half a second (a 503 can also come
      // from a reconnect that happened between the post and now).
      if (status !== 202) await Promise.race([statuses.next(), new Promise((r) => setTimeout(r, 500))])
    }
    expect(status).toBe(202)
  })
})
