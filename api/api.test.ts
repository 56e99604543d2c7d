import { Kvm } from '@nats-io/kv'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { share, startStack, type Stack } from '../test/stack.ts'

let s: Stack
let key: string
beforeAll(async () => {
  s = await startStack()
  key = await s.createAppKey()
})
afterAll(async () => s?.stop())

describe('operations', () => {
  it('serves healthz, readyz, metrics and the OpenAPI document without credentials', async () => {
    expect((await s.call('GET', '/healthz', { token: null })).status).toBe(200)
    expect((await s.call('GET', '/readyz', { token: null })).json).toEqual({ status: 'ready', down: [] })
    const m = await s.call('GET', '/metrics', { token: null })
    expect(m.text).toMatch(/^# TYPE events_received_total counter/m)
    expect(m.text).toMatch(/consumer_lag_messages/)
    const doc = (await s.call('GET', '/openapi.json', { token: null })).json
    for (const p of ['/v1/events', '/v1/apps', '/v1/users:import', '/v1/users/{id}', '/v1/leaderboards', '/v1/leaderboards/users/{user_id}', '/v1/admin/rebuild'])
      expect(doc.paths[p], p).toBeDefined()
  })
  it('answers unknown routes with the error envelope', async () => {
    const r = await s.call('GET', '/v1/nope')
    expect(r.status).toBe(404)
    expect(r.json.error).toMatchObject({ code: 'not_found', request_id: expect.any(String) })
  })
})

describe('request bodies', () => {
  it('answers 413 for a body over 1 MiB on any route, before authentication; bulk uploads keep their own larger limits', async () => {
    const big = JSON.stringify({ phone: '13800000000', password: 'x'.repeat(1024 * 1024 + 10) })
    for (const [method, path, token] of [['POST', '/v1/auth/login', null], ['POST', '/v1/campaigns', undefined], ['POST', '/v1/apps', 'not-a-token']] as const) {
      const r = await s.call(method, path, { token, body: big })
      expect([r.status, r.json.error.code], path).toEqual([413, 'payload_too_large'])
    }
    // A task breakdown of 10,000 units (over 1 MiB) is read: its rows are judged one by one.
    const units = Array.from({ length: 10_000 }, (_, i) => ({ region_code: '430623110', name: `单位${i}`.padEnd(40, '·'), registration_target: 1, share_target: 1 }))
    expect(JSON.stringify({ units }).length).toBeGreaterThan(1024 * 1024)
    const tasks = await s.call('PUT', '/v1/tasks/2026', { body: { units } })
    expect(tasks.status, tasks.text.slice(0, 200)).toBe(200)
    // A users import of 2 MiB is read too (its limit is 10 MiB): every row is judged.
    const rows = Array.from({ length: 10_000 }, (_, i) => ({ phone: 'bad', real_name: '某'.repeat(60), region_code: '430623110', note: i }))
    const imp = await s.call('POST', '/v1/users:import', { body: { users: rows } })
    expect([imp.status, imp.json.errors?.length]).toEqual([200, 10_000])
  })
})

describe('POST /v1/apps', () => {
  it('creates an app whose key is shown once and stored only as a hash', async () => {
    const r = await s.call('POST', '/v1/apps', { body: { name: '科普中国 App' } })
    expect(r.status).toBe(201)
    expect(r.json).toMatchObject({ id: expect.stringMatching(/^app_/), name: '科普中国 App', key: expect.stringMatching(/^kpk_/) })
    // Times in Asia/Shanghai, like every other route.
    expect(r.json.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+08:00$/)
    expect(Math.abs(Date.parse(r.json.created_at) - Date.now())).toBeLessThan(60_000)
    const kv = await new Kvm(s.deps.nc).open('apps')
    const raw = new TextDecoder().decode((await kv.get(`a.${r.json.id}`))!.value)
    expect(raw).not.toContain(r.json.key)
    expect(JSON.parse(raw).key_hash).toMatch(/^[0-9a-f]{64}$/)
    // The key works for ingest.
    expect((await s.postEvents(r.json.key, [])).status).toBe(202)
  })
  it('refuses callers without the admin token, and bad bodies', async () => {
    const none = await s.call('POST', '/v1/apps', { token: null, body: { name: 'x' } })
    expect(none.status).toBe(401)
    expect(none.json.error).toMatchObject({ code: 'unauthorized', request_id: expect.any(String) })
    expect((await s.call('POST', '/v1/apps', { token: 'wrong-token-123', body: { name: 'x' } })).status).toBe(401)
    expect((await s.call('POST', '/v1/apps', { token: key, body: { name: 'x' } })).status).toBe(403)
    const bad = await s.call('POST', '/v1/apps', { body: { name: '' } })
    expect(bad.status).toBe(400)
    expect(bad.json.error.code).toBe('invalid_request')
  })
})

describe('POST /v1/users:import', () => {
  it('imports JSON and CSV, reporting bad rows by number and keeping the good ones', async () => {
    const r = await s.call('POST', '/v1/users:import', {
      body: {
        users: [
          { id: 'imp1', phone: '13500000001', real_name: '一', region_code: '430623110', institution_id: 'inst-1' },
          { id: 'imp2', phone: '1350000000', real_name: '二', region_code: '430623110' },
          { id: 'imp3', phone: '13500000003', real_name: '三', region_code: '999999' },
          { phone: '13500000004', real_name: '四', region_code: '4306' },
          { id: 'imp5', phone: '13500000001', real_name: '五', region_code: '430623110' },
        ],
      },
    })
    expect(r.status).toBe(200)
    expect(r.json.created).toBe(2)
    expect(r.json.errors.map((e: any) => [e.row, e.code])).toEqual([[2, 'invalid_row'], [3, 'unknown_region'], [5, 'duplicate_row']])
    const csv = await s.call('POST', '/v1/users:import', {
      type: 'text/csv',
      body: '\uFEFFid,phone,real_name,region_code,certified_at\nimp1,13500000001,一改,430623110,2024-01-01\nimp6,13500000006,六,430623101,\nimp7,bad,七,430623101,\nimp8,13500000004,八,430623101,\n',
    })
    expect(csv.status).toBe(200)
    expect(csv.json).toMatchObject({ created: 1, updated: 1 })
    // CSV rows are numbered as lines of the file: the header is line 1.
    expect(csv.json.errors.map((e: any) => [e.row, e.code])).toEqual([[4, 'invalid_row'], [5, 'phone_taken']])
    const u = (await s.call('GET', '/v1/users/imp1')).json
    expect(u).toMatchObject({ id: 'imp1', real_name: '一改', region_code: '430623110', certified_at: '2024-01-01T00:00:00.000+08:00', points: 0 })
    expect((await s.call('GET', '/v1/users/nobody')).status).toBe(404)
    // Unauthenticated, or an app: refused, nothing created.
    expect((await s.call('POST', '/v1/users:import', { token: null, body: { users: [] } })).status).toBe(401)
    expect((await s.call('POST', '/v1/users:import', { token: key, body: { users: [] } })).status).toBe(403)
    expect((await s.call('POST', '/v1/users:import', { body: '{' })).status).toBe(400)
  })
})

describe('GET /v1/leaderboards', () => {
  it('validates its parameters', async () => {
    expect((await s.call('GET', '/v1/leaderboards?metric=likes')).status).toBe(400)
    expect((await s.call('GET', '/v1/leaderboards?period=decade')).status).toBe(400)
    expect((await s.call('GET', '/v1/leaderboards?region=12345')).status).toBe(400)
    expect((await s.call('GET', '/v1/leaderboards?region=999999')).status).toBe(404)
    expect((await s.call('GET', '/v1/leaderboards?date=2021-02-30')).status).toBe(400)
    expect((await s.call('GET', '/v1/leaderboards?limit=1001')).status).toBe(400)
    expect((await s.call('GET', '/v1/leaderboards?after=garbage')).status).toBe(400)
    expect((await s.call('GET', '/v1/leaderboards', { token: null })).status).toBe(401)
  })
  it('gives period bounds and masks real names for apps', async () => {
    await s.importUsers([{ id: 'lb1', phone: '13500000101', real_name: '欧阳修', region_code: '430623110', certified_at: '2020-01-01' }])
    const facts = await s.factCount()
    await s.postEvents(key, [share('lb1', Date.now())])
    await s.waitForFacts(facts + 1)
    const b = (await s.call('GET', '/v1/leaderboards?metric=shares&period=week&date=2026-11-25&region=430623', { token: key })).json
    expect(b).toMatchObject({ metric: 'shares', region: '430623', period: 'week', from: '2026-11-23', to: '2026-11-29' })
    const today = (await s.call('GET', '/v1/leaderboards?metric=shares&period=all&region=430623', { token: key })).json
    expect(today.entries.find((e: any) => e.user_id === 'lb1').name).toBe('欧**')
    const op = (await s.call('GET', '/v1/leaderboards?metric=shares&period=all&region=430623')).json
    expect(op.entries.find((e: any) => e.user_id === 'lb1').name).toBe('欧阳修')
  })
})

describe('POST /v1/admin/rebuild', () => {
  it('rebuilds a running aggregator for operators only', async () => {
    expect((await s.call('POST', '/v1/admin/rebuild', { token: key })).status).toBe(403)
    const r = await s.call('POST', '/v1/admin/rebuild')
    expect(r.status).toBe(200)
    expect(r.json.rebuilt).toBe(true)
  })
})
