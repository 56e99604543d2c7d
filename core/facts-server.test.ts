import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ClickHouseClient } from '@clickhouse/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClickHouse, createEmbeddedClickHouse } from './clients/clickhouse.ts'
import { FACTS_USER, serveFacts } from './facts-server.ts'
import { migrate } from './schema.ts'

/**
 * The embedded ClickHouse served to other processes (issue 12): the same @clickhouse/client and SQL
 * that talk to a ClickHouse server work through it, values round-trip exactly, errors keep their
 * ClickHouse codes, and nobody without the password gets in.
 */
let dir: string
let local: Awaited<ReturnType<typeof createEmbeddedClickHouse>>
let server: Awaited<ReturnType<typeof serveFacts>>
let remote: ClickHouseClient
const PASSWORD = 'facts-test-token-0123456789'

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kepu-facts-'))
  local = await createEmbeddedClickHouse(dir)
  server = await serveFacts(local.connection, { host: '127.0.0.1', port: 0, user: FACTS_USER, password: PASSWORD })
  remote = await createClickHouse({ url: `http://${FACTS_USER}:${PASSWORD}@127.0.0.1:${server.port}/`, dataDir: dir })
  await migrate(remote)
})
afterAll(async () => {
  await remote?.close()
  await server?.close()
  await local?.client.close()
  rmSync(dir, { recursive: true, force: true })
})

const odd = ["it's", 'back\\slash', 'tab\there', 'new\nline', '\\N', '科普中国 🚀', "'; DROP TABLE facts; --", '']

describe('the facts store over HTTP', () => {
  it('answers ping and runs the schema migration (DDL) through the client', async () => {
    expect((await remote.ping()).success).toBe(true)
    const r = await remote.query({ query: "SELECT count() AS n FROM system.tables WHERE name = 'facts'", format: 'JSONEachRow' })
    expect(((await r.json()) as { n: unknown }[]).map((x) => Number(x.n))).toEqual([1])
  })

  it('inserts rows and reads them back exactly, with strings, arrays and dates as query parameters', async () => {
    const rows = odd.map((s, i) => ({ event_id: `e${i}`, stream_seq: i + 1, stream_idx: 0, type: 'share_back', user_id: `u${i}`, app_id: 'a', ts: '2026-12-01 10:00:00.000', client_ts: '2026-12-01 10:00:00.000', sent_at: null, received_at: '2026-12-01 10:00:00.000', day: '2026-12-01', decision: 'counted', reason: '', shares: 1, points: 1, streak: 0, rule_version: 1, region_code: '430623110', institution_id: '', content_id: s, channel: 'wechat', viewer: '', raw: '' }))
    await remote.insert({ table: 'facts', values: rows, format: 'JSONEachRow' })
    // Seen by the process that holds the store, too.
    const mine = await local.client.query({ query: "SELECT content_id FROM facts WHERE region_code = '430623110' ORDER BY stream_seq", format: 'JSONEachRow' })
    expect(((await mine.json()) as { content_id: string }[]).map((r) => r.content_id)).toEqual(odd)
    for (const s of odd) {
      const r = await remote.query({ query: 'SELECT user_id FROM facts WHERE content_id = {s:String} AND day IN {days:Array(Date)}', query_params: { s, days: ['2026-12-01'] }, format: 'JSONEachRow' })
      expect(await r.json(), JSON.stringify(s)).toEqual([{ user_id: `u${odd.indexOf(s)}` }])
    }
    // Thousands of ids in the URL, as a redelivered batch's lookup sends them (insertFacts).
    const many = [...odd.slice(0, 4), ...Array.from({ length: 5000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`)]
    const big = await remote.query({ query: 'SELECT count() AS n FROM facts WHERE content_id IN {ids:Array(String)}', query_params: { ids: many }, format: 'JSONEachRow' })
    expect(((await big.json()) as { n: unknown }[]).map((x) => Number(x.n))).toEqual([4])
    const arr = await remote.query({ query: 'SELECT count() AS n FROM facts WHERE content_id IN {ids:Array(String)}', query_params: { ids: odd.slice(0, 4) }, format: 'JSONEachRow' })
    expect(((await arr.json()) as { n: unknown }[]).map((x) => Number(x.n))).toEqual([4])
  })

  it('keeps ClickHouse error codes: a syntax error is code 62 and changes nothing', async () => {
    await expect(remote.query({ query: 'SELEC 1', format: 'JSONEachRow' })).rejects.toMatchObject({ code: '62' })
    await expect(remote.command({ query: 'DROP TABLE no_such_table' })).rejects.toMatchObject({ code: '60' })
  })

  it('refuses a wrong password or none, before running anything', async () => {
    const wrong = await createClickHouse({ url: `http://${FACTS_USER}:nope@127.0.0.1:${server.port}/`, dataDir: dir })
    await expect(wrong.command({ query: 'DROP TABLE facts' })).rejects.toMatchObject({ code: '516' })
    await wrong.close()
    const bare = await fetch(`http://127.0.0.1:${server.port}/?query=DROP%20TABLE%20facts`, { method: 'POST' })
    expect(bare.status).toBe(401)
    const r = await local.client.query({ query: "SELECT count() AS n FROM system.tables WHERE name = 'facts'", format: 'JSONEachRow' })
    expect(((await r.json()) as { n: unknown }[]).map((x) => Number(x.n))).toEqual([1])
  })
})
