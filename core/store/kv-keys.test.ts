import type { KV } from '@nats-io/kv'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startKvBucket, type KvBucket } from '../../test/kv.ts'
import { listKeys } from './kv-keys.ts'

let bucket: KvBucket
let kv: KV

beforeAll(async () => {
  bucket = await startKvBucket('keys')
  kv = bucket.kv
  for (const k of ['c.a', 'c.b', 'c.c', 'u.x.1', 'u.y.2', 'm.epoch']) await kv.put(k, 'v')
})
afterAll(async () => bucket?.stop())

describe('listKeys', () => {
  it('lists the keys a filter matches, with NATS wildcards', async () => {
    expect((await listKeys(kv, 'c.*')).sort()).toEqual(['c.a', 'c.b', 'c.c'])
    expect((await listKeys(kv, 'u.>')).sort()).toEqual(['u.x.1', 'u.y.2'])
    expect(await listKeys(kv, 'none.*')).toEqual([])
  })

  it('lists each key once and ends while listed keys are being written', async () => {
    let writing = true
    const writer = (async () => {
      // One listed key rewritten again and again (paced like real updates, not a tight loop).
      for (let n = 0; writing; n++) {
        await kv.put('c.b', String(n))
        await new Promise((r) => setTimeout(r, 5))
      }
    })()
    try {
      // kv.keys() did not end under such writes; this must, every time, with each key once.
      for (let i = 0; i < 30; i++) expect((await listKeys(kv, 'c.*')).sort()).toEqual(['c.a', 'c.b', 'c.c'])
    } finally {
      writing = false
      await writer
    }
  })

  it('includes a deleted key, which reads as a delete (callers skip it)', async () => {
    await kv.put('c.gone', 'v')
    await kv.delete('c.gone')
    expect(await listKeys(kv, 'c.*')).toContain('c.gone')
    expect((await kv.get('c.gone'))?.operation).toBe('DEL')
  })
})
