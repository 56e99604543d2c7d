import { Kvm, type KV } from '@nats-io/kv'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createNats } from '../clients/nats.ts'
import { startKvBucket, type KvBucket } from '../../test/kv.ts'
import { createKvRecords, isRevisionConflict } from './kv-records.ts'

/** Revision-checked records on a real NATS KV bucket. */
interface Rec {
  id: string
  n: number
  updated_at: number
}

class Missing extends Error {}
class Conflict extends Error {}
const errors = { missing: () => new Missing('no such record'), conflict: () => new Conflict('changed concurrently') }

let bucket: KvBucket
let kv: KV

beforeAll(async () => {
  bucket = await startKvBucket('records')
  kv = bucket.kv
})
afterAll(async () => bucket?.stop())

describe('createKvRecords', () => {
  it('creates once and reads back; malformed or unknown ids read as null', async () => {
    const r = createKvRecords<Rec>(kv, 'r', errors)
    await r.create('a', { id: 'a', n: 1, updated_at: 1 })
    expect(await r.get('a')).toEqual({ id: 'a', n: 1, updated_at: 1 })
    const again = await r.create('a', { id: 'a', n: 2, updated_at: 2 }).catch((e: unknown) => e)
    expect(isRevisionConflict(again)).toBe(true)
    expect((await r.get('a'))?.n).toBe(1)
    expect(await r.get('nope')).toBeNull()
    expect(await r.get('a.b')).toBeNull()
    expect(await r.get('')).toBeNull()
  })

  it('lists every record under its prefix, skipping deleted ones', async () => {
    const r = createKvRecords<Rec>(kv, 'l', errors)
    await r.create('x', { id: 'x', n: 1, updated_at: 1 })
    await r.create('y', { id: 'y', n: 2, updated_at: 1 })
    await r.create('z', { id: 'z', n: 3, updated_at: 1 })
    await kv.delete('l.z')
    await kv.put('m.epoch', '1') // another prefix in the same bucket
    expect((await r.list()).map((x) => x.id).sort()).toEqual(['x', 'y'])
  })

  it('applies a change to a copy, stamps updated_at, and writes nothing for no change', async () => {
    const r = createKvRecords<Rec>(kv, 'r', errors)
    await r.create('b', { id: 'b', n: 1, updated_at: 1 })
    const rev = (await r.read('b'))!.rev
    const same = await r.update('b', (x) => {
      x.n = 99 // edits of the copy are not stored when the change says "none"
      return null
    })
    expect(same.after).toBe(same.before)
    expect((await r.read('b'))!).toEqual({ value: { id: 'b', n: 1, updated_at: 1 }, rev })
    const { before, after } = await r.update('b', (x) => ({ ...x, n: x.n + 1 }))
    expect(before.n).toBe(1)
    expect(after.n).toBe(2)
    expect(after.updated_at).toBeGreaterThan(1)
    expect(await r.get('b')).toEqual(after)
  })

  it('applies concurrent changes each once, retrying on the newer record', async () => {
    const r = createKvRecords<Rec>(kv, 'r', errors)
    await r.create('c', { id: 'c', n: 0, updated_at: 0 })
    await Promise.all(Array.from({ length: 4 }, () => r.update('c', (x) => ({ ...x, n: x.n + 1 }))))
    expect((await r.get('c'))?.n).toBe(4)
  })

  it('refuses a missing record, and gives up on one that always changes in between', async () => {
    const r = createKvRecords<Rec>(kv, 'r', errors)
    await expect(r.update('gone', (x) => x)).rejects.toBeInstanceOf(Missing)
    await r.create('d', { id: 'd', n: 0, updated_at: 0 })
    let calls = 0
    const racing = r.update('d', (x) => {
      calls++
      // Someone else writes before this change is stored: every attempt loses.
      void kv.put('r.d', new TextEncoder().encode(JSON.stringify({ ...x, n: -calls })))
      return { ...x, n: 1000 }
    })
    await expect(racing).rejects.toBeInstanceOf(Conflict)
    expect(calls).toBe(5)
    expect((await r.get('d'))?.n).toBe(-5)
  })

  it('passes a refusal from the change through, and does not retry a failure that is no conflict', async () => {
    const r = createKvRecords<Rec>(kv, 'r', errors)
    await r.create('e', { id: 'e', n: 0, updated_at: 0 })
    await expect(r.update('e', () => { throw new Error('refused') })).rejects.toThrow('refused')
    const other = await createNats(bucket.server.url, 'kv-records-closing')
    const kv2 = await new Kvm(other).open('records')
    const r2 = createKvRecords<Rec>(kv2, 'r', errors)
    let calls = 0
    const failing = r2.update('e', (x) => {
      calls++
      void other.close() // the connection is gone before the write
      return { ...x, n: 1 }
    })
    const err = await failing.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err).not.toBeInstanceOf(Conflict)
    expect(calls).toBe(1)
    expect((await r.get('e'))?.n).toBe(0)
  })
})
