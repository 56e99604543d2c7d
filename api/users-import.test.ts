import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readInfos } from '../core/keys.ts'
import { startStack, type Stack } from '../test/stack.ts'

/** POST /v1/users:import on a whole stack: row errors, re-imports, parts, concurrent imports. */
let s: Stack
beforeAll(async () => {
  s = await startStack()
})
afterAll(async () => s?.stop())

const phoneOf = (n: number) => '137' + String(n).padStart(8, '0')
const row = (id: string, n: number, over: Record<string, unknown> = {}) => ({ id, phone: phoneOf(n), real_name: `名${id}`, region_code: '430623110', certified_at: '2020-01-01', ...over })
const imp = async (users: unknown[]) => {
  const r = await s.call('POST', '/v1/users:import', { body: { users } })
  expect(r.status, r.text.slice(0, 300)).toBe(200)
  return r.json as { created: number; updated: number; errors: { row: number; code: string; message: string }[] }
}
async function registrations(ids: string[]) {
  const r = await s.deps.ch.query({
    query: 'SELECT user_id, sum(delta) AS n, count() AS rows FROM registrations WHERE user_id IN {ids:Array(String)} GROUP BY user_id ORDER BY user_id',
    query_params: { ids },
    format: 'JSONEachRow',
  })
  return new Map(((await r.json()) as { user_id: string; n: string; rows: string }[]).map((x) => [x.user_id, { n: Number(x.n), rows: Number(x.rows) }]))
}

describe('POST /v1/users:import', () => {
  it('reports a repeated phone as the later row, and a phone of another communicator, by row number', async () => {
    const r = await imp([row('ri1', 1), row('ri2', 2), row('ri3', 1), row('ri4', 4)])
    expect(r.created).toBe(3)
    expect(r.errors.map((e) => [e.row, e.code])).toEqual([[3, 'duplicate_row']])
    const again = await imp([row('ri5', 5), row('ri6', 2)])
    expect([again.created, again.errors.map((e) => [e.row, e.code])]).toEqual([1, [[2, 'phone_taken']]])
    expect((await s.call('GET', '/v1/users/ri6')).status).toBe(404)
  })

  it('imports more rows than one part: every row stored, cached, mirrored and registered once; unchanged again reports updated, records nothing', async () => {
    const rows = Array.from({ length: 6_000 }, (_, i) => row(`rp${i}`, 100_000 + i, i % 3 === 0 ? { institution_id: 'inst-1' } : {}))
    const ids = rows.map((r) => r.id)
    expect(await imp(rows)).toEqual({ created: 6_000, updated: 0, errors: [] })
    const infos = await readInfos(s.deps.redis, ids)
    expect(infos.size).toBe(6_000)
    expect(infos.get('rp3')).toMatchObject({ region_code: '430623110', institution_id: 'inst-1' })
    const mirrored = await s.deps.ch.query({ query: "SELECT count() AS n FROM users FINAL WHERE startsWith(id, 'rp')", format: 'JSONEachRow' })
    expect(Number(((await mirrored.json()) as { n: string }[])[0].n)).toBe(6_000)
    const before = await registrations(ids)
    expect(before.size).toBe(6_000)
    expect([...before.values()].every((x) => x.n === 1 && x.rows === 1)).toBe(true)
    const stored = (await s.call('GET', '/v1/users/rp5999')).json

    // The same roster again: reported as updated, nothing written, no registration row added.
    expect(await imp(rows)).toEqual({ created: 0, updated: 6_000, errors: [] })
    expect((await s.call('GET', '/v1/users/rp5999')).json).toEqual(stored)
    expect(await registrations(ids)).toEqual(before)

    // One row changed (its institution): one retraction and one assertion for that row only.
    const changed = rows.map((r) => (r.id === 'rp7' ? { ...r, institution_id: 'inst-2' } : r))
    expect(await imp(changed)).toEqual({ created: 0, updated: 6_000, errors: [] })
    const after = await registrations(ids)
    expect(after.get('rp7')).toEqual({ n: 1, rows: 3 })
    expect(after.get('rp8')).toEqual({ n: 1, rows: 1 })
    expect((await readInfos(s.deps.redis, ['rp7'])).get('rp7')?.institution_id).toBe('inst-2')
  })

  it('concurrent imports of overlapping rosters leave one communicator per phone', async () => {
    // Two rosters naming the same 2,000 phones under different ids, and the first roster twice.
    const a = Array.from({ length: 2_000 }, (_, i) => row(`ca${i}`, 200_000 + i))
    const b = Array.from({ length: 2_000 }, (_, i) => row(`cb${i}`, 200_000 + i))
    const [ra, rb, ra2] = await Promise.all([imp(a), imp(b), imp(a)])
    // Each phone went to one of the two ids; the other's rows were refused.
    expect(ra.created + rb.created).toBe(2_000)
    expect(ra.created + ra.updated + ra.errors.length).toBe(2_000)
    expect(ra2.created + ra2.updated + ra2.errors.length).toBe(2_000)
    expect(ra.created + ra.updated).toBe(ra2.created + ra2.updated)
    for (const r of [ra, rb, ra2]) expect(r.errors.every((e) => e.code === 'phone_taken')).toBe(true)
    for (let i = 0; i < 2_000; i += 97) {
      const [ua, ub] = await Promise.all([s.deps.users.get(`ca${i}`), s.deps.users.get(`cb${i}`)])
      expect([ua, ub].filter(Boolean)).toHaveLength(1)
      expect((ua ?? ub)!.phone).toBe(phoneOf(200_000 + i))
      expect(await s.deps.users.idByPhone(phoneOf(200_000 + i))).toBe((ua ?? ub)!.id)
    }
  })
})
