import type { KV } from '@nats-io/kv'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startKvBucket, type KvBucket } from '../../test/kv.ts'
import { createUserStore, UserConflict, type UpsertResult, type User, type UserInput, type UserStore } from './users.ts'

/** The user store's batch upsert (roster imports) on a real NATS KV bucket. */
let bucket: KvBucket
let kv: KV
let store: UserStore

beforeAll(async () => {
  bucket = await startKvBucket('users')
  kv = bucket.kv
  store = createUserStore(kv)
})
afterAll(async () => bucket?.stop())

const dec = new TextDecoder()
const row = (id: string, phone: string, over: Partial<UserInput> = {}): UserInput => ({
  id, phone, real_name: `名${id}`, region_code: '430623110', kind: '个人用户', institution_id: '', certified_at: 1_577_808_000_000, ...over,
})
const phoneOf = (n: number) => '139' + String(n).padStart(8, '0')
async function owner(phone: string) {
  const e = await kv.get(`p.${phone}`)
  return e && e.operation === 'PUT' ? dec.decode(e.value) : null
}
async function revision(id: string) {
  return (await kv.get(`u.${id}`))?.revision ?? 0
}
const ok = (r: PromiseSettledResult<UpsertResult>) => {
  if (r.status === 'rejected') throw r.reason
  return r.value
}
const code = (r: PromiseSettledResult<UpsertResult>) => (r.status === 'rejected' && r.reason instanceof UserConflict ? r.reason.code : r.status)

describe('upsertMany', () => {
  it('creates new rows with consecutive indexes and their phone claims; an unchanged re-import writes nothing', async () => {
    const rows = Array.from({ length: 300 }, (_, i) => row(`a${i}`, phoneOf(i)))
    const first = (await store.upsertMany(rows)).map(ok)
    expect(first.every((r) => r.created)).toBe(true)
    const ixs = first.map((r) => r.user.ix).sort((a, b) => a - b)
    expect(ixs[ixs.length - 1] - ixs[0]).toBe(rows.length - 1) // one reservation, no gaps
    expect(new Set(ixs).size).toBe(rows.length)
    expect(await owner(phoneOf(7))).toBe('a7')
    expect(await store.get('a7')).toMatchObject({ phone: phoneOf(7), real_name: '名a7', ix: first[7].user.ix })

    const revs = await Promise.all(['a0', 'a150', 'a299'].map(revision))
    const again = (await store.upsertMany(rows)).map(ok)
    expect(again.every((r) => !r.created)).toBe(true)
    expect(again[150].user).toEqual(first[150].user) // as stored, updated_at included
    expect(await Promise.all(['a0', 'a150', 'a299'].map(revision))).toEqual(revs)
  })

  it('updates changed rows, moves a phone and gives the old one back', async () => {
    const rows = Array.from({ length: 300 }, (_, i) => (i < 100 ? row(`a${i}`, phoneOf(i), { real_name: '改名' }) : i < 200 ? row(`a${i}`, phoneOf(10_000 + i)) : row(`a${i}`, phoneOf(i))))
    const res = (await store.upsertMany(rows)).map(ok)
    expect(res.filter((r) => r.created)).toHaveLength(0)
    expect((await store.get('a5'))?.real_name).toBe('改名')
    expect(await store.get('a120')).toMatchObject({ phone: phoneOf(10_120), ix: res[120].previous!.ix })
    expect(await owner(phoneOf(10_120))).toBe('a120')
    expect(await owner(phoneOf(120))).toBeNull()
  })

  it('refuses a phone held by another communicator and writes nothing for that row', async () => {
    const res = await store.upsertMany([row('b1', phoneOf(7)), row('b2', phoneOf(20_002)), row('b3', phoneOf(20_002))])
    expect(res.map(code)).toEqual(['phone_taken', 'fulfilled', 'phone_taken'])
    expect(await kv.get('u.b1')).toBeNull()
    expect(await kv.get('u.b3')).toBeNull()
    expect(await owner(phoneOf(7))).toBe('a7')
    expect(await owner(phoneOf(20_002))).toBe('b2')
  })

  it('finds a row without an id by its phone', async () => {
    const [r] = (await store.upsertMany([{ ...row('', phoneOf(8), { real_name: '按电话' }), id: undefined }])).map(ok)
    expect(r).toMatchObject({ created: false, user: { id: 'a8', real_name: '按电话' } })
    const [fresh] = (await store.upsertMany([{ ...row('', phoneOf(30_000)), id: undefined }])).map(ok)
    expect(fresh.created).toBe(true)
    expect(await owner(phoneOf(30_000))).toBe(fresh.user.id)
  })

  it('after a run of new rows (phone claimed first), still updates, moves phones and refuses taken ones', async () => {
    // A store of its own whose profile reads are seen.
    const read: string[] = []
    const spy = new Proxy(kv, {
      get(t, p) {
        const v = Reflect.get(t, p)
        if (p === 'get') return (k: string, o?: never) => (read.push(k), t.get(k, o))
        return typeof v === 'function' ? v.bind(t) : v
      },
    })
    const store = createUserStore(spy)
    // 400 new rows: most of the recent rows were new, so rows with an id claim their phone first.
    ;(await store.upsertMany(Array.from({ length: 400 }, (_, i) => row(`c${i}`, phoneOf(40_000 + i))))).map(ok)
    expect(read.filter((k) => k.startsWith('u.')).length).toBeLessThan(400)
    read.length = 0
    const rows = [
      row('c1', phoneOf(50_001)), // existing, new phone: the claim succeeds, the create finds the record
      row('c2', phoneOf(40_002), { real_name: '改' }), // existing, same phone
      row('c3', phoneOf(40_004)), // existing, phone of c4
      row('c4', phoneOf(40_004)), // unchanged
      row('c900', phoneOf(50_900)), // new
    ]
    const res = await store.upsertMany(rows)
    expect(res.map(code)).toEqual(['fulfilled', 'fulfilled', 'phone_taken', 'fulfilled', 'fulfilled'])
    expect(res.map((r) => (r.status === 'fulfilled' ? r.value.created : null))).toEqual([false, false, null, false, true])
    expect(await store.get('c1')).toMatchObject({ phone: phoneOf(50_001) })
    expect(await owner(phoneOf(50_001))).toBe('c1')
    expect(await owner(phoneOf(40_001))).toBeNull()
    expect((await store.get('c2'))?.real_name).toBe('改')
    expect(await store.get('c3')).toMatchObject({ phone: phoneOf(40_003) })
    expect(await owner(phoneOf(40_004))).toBe('c4')
    expect(read).not.toContain('u.c900') // new: claimed and created, never read
  })

  it('with mayChange, a refused row changes nothing and claims no phone, also after a run of new rows', async () => {
    ;(await store.upsertMany(Array.from({ length: 100 }, (_, i) => row(`d${i}`, phoneOf(60_000 + i))))).map(ok)
    const mayChange = (u: User) => u.id === 'd2' // judges the stored record
    const res = await store.upsertMany([row('d1', phoneOf(61_001)), row('d2', phoneOf(61_002)), row('d3', phoneOf(61_003))], mayChange)
    expect(res.map(code)).toEqual(['outside_scope', 'fulfilled', 'outside_scope'])
    expect(await owner(phoneOf(61_001))).toBeNull()
    expect(await store.get('d1')).toMatchObject({ phone: phoneOf(60_001) })
    expect(await owner(phoneOf(61_002))).toBe('d2')
    expect(await owner(phoneOf(60_002))).toBeNull()
  })

  it('concurrent imports of overlapping rosters keep one communicator per phone and lose no row', async () => {
    // Three rosters over the same 600 phones: e{i} in one, f{i} in another, e{i} again in the third.
    const mk = (p: string) => Array.from({ length: 600 }, (_, i) => row(`${p}${i}`, phoneOf(70_000 + i)))
    const [e1, f, e2] = await Promise.all([store.upsertMany(mk('e')), store.upsertMany(mk('f')), store.upsertMany(mk('e'))])
    for (let i = 0; i < 600; i++) {
      const who = await owner(phoneOf(70_000 + i))
      expect(['e' + i, 'f' + i]).toContain(who)
      const winner = (await store.get(who!))!
      expect(winner.phone).toBe(phoneOf(70_000 + i))
      const loser = who === 'e' + i ? 'f' + i : 'e' + i
      expect(await store.get(loser)).toBeNull() // the loser's row wrote nothing
      // The winner's rows succeeded (created once), the loser's were refused.
      const eWon = who === 'e' + i
      expect([e1[i], f[i], e2[i]].map(code)).toEqual(eWon ? ['fulfilled', 'phone_taken', 'fulfilled'] : ['phone_taken', 'fulfilled', 'phone_taken'])
      expect([e1[i], f[i], e2[i]].filter((r) => r.status === 'fulfilled' && r.value.created)).toHaveLength(1)
    }
  })
})
