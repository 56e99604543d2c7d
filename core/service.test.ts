import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN, share, startStack, type Stack } from '../test/stack.ts'
import { parseConfig } from './config.ts'
import { startService, trackRequests, type Service } from './service.ts'

/** Each tier alone: an ingest-only and an api-only process in front of the same stream and stores. */
let s: Stack
let ingest: Service
let api: Service
beforeAll(async () => {
  s = await startStack()
  const cfg = (ROLE: string) => parseConfig({ DATA_DIR: s.dir, PORT: '0', HOST: '127.0.0.1', ADMIN_TOKEN: ADMIN, ROLE })
  ingest = await startService(cfg('ingest'), s.deps)
  api = await startService(cfg('api'), s.deps)
})
afterAll(async () => {
  await ingest?.stop()
  await api?.stop()
  await s?.stop()
})

const call = (svc: Service, method: string, path: string, token: string, body?: unknown) =>
  fetch(`http://127.0.0.1:${svc.port}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  })

describe('roles', () => {
  it('an ingest process takes events and serves no API routes; an api process the reverse; the aggregator counts', async () => {
    expect(ingest.aggregator).toBeNull()
    expect(api.aggregator).toBeNull()
    const key = (await (await call(api, 'POST', '/v1/apps', ADMIN, { name: 'roles' })).json()).key as string
    expect((await call(ingest, 'POST', '/v1/apps', ADMIN, { name: 'x' })).status).toBe(404)
    expect((await call(api, 'POST', '/v1/users:import', ADMIN, { users: [{ id: 'ro1', phone: '13300000001', real_name: '角', region_code: '430623110', certified_at: '2020-01-01' }] })).status).toBe(200)
    expect((await call(api, 'POST', '/v1/events', key, { events: [share('ro1', Date.now())] })).status).toBe(404)
    const facts = await s.factCount()
    const r = await call(ingest, 'POST', '/v1/events', key, { events: [share('ro1', Date.now())] })
    expect(r.status).toBe(202)
    await s.waitForFacts(facts + 1)
    expect((await call(ingest, 'GET', '/v1/leaderboards', ADMIN)).status).toBe(404)
    const me = await (await call(api, 'GET', '/v1/leaderboards/users/ro1?period=all', ADMIN)).json()
    expect(me).toMatchObject({ rank: 1, score: 1 })
    for (const svc of [ingest, api]) expect((await fetch(`http://127.0.0.1:${svc.port}/readyz`)).status).toBe(200)
  })
})

describe('graceful stop', () => {
  it('waits for requests still being handled, even when their client has gone', async () => {
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    const requests = trackRequests(async () => {
      await held
      return new Response('ok')
    })
    const pending = requests.fetch(new Request('http://x/'))
    expect(requests.active).toBe(1)
    let idle = false
    const done = requests.idle().then(() => (idle = true))
    await new Promise((r) => setImmediate(r))
    expect(idle).toBe(false)
    release()
    await pending
    await done
    expect(idle).toBe(true)
    expect(requests.active).toBe(0)
    await requests.idle() // and at once when nothing runs
  })

})
