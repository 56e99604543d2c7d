import { randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { listKeys } from './kv-keys.ts'

/**
 * Points-store items (积分商城), durable in NATS KV (bucket `store`, `i.<id>`). `stock` is the number
 * of units ever supplied; what is left is kept in Redis (see api/store/redemptions.ts) and follows
 * from stock − redemptions + refunds, which the ledger facts record.
 */
export interface Item {
  id: string
  name: string
  description: string
  price: number
  stock: number
  per_user_limit: number | null
  starts_at: number | null
  ends_at: number | null
  active: boolean
  created_at: number
  updated_at: number
}

export interface ItemStore {
  create(input: Omit<Item, 'id' | 'created_at' | 'updated_at'>): Promise<Item>
  get(id: string): Promise<Item | null>
  list(): Promise<Item[]>
  update(id: string, change: (i: Item) => Item): Promise<{ before: Item; after: Item }>
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export function createItemStore(kv: KV): ItemStore {
  async function read(id: string) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) return null
    const e = await kv.get(`i.${id}`)
    return e && e.operation === 'PUT' && e.value.length ? { i: JSON.parse(dec.decode(e.value)) as Item, rev: e.revision } : null
  }
  return {
    async create(input) {
      const now = Date.now()
      const item: Item = { ...input, id: 'item_' + randomBytes(6).toString('hex'), created_at: now, updated_at: now }
      await kv.create(`i.${item.id}`, enc.encode(JSON.stringify(item)))
      return item
    },
    async get(id) {
      return (await read(id))?.i ?? null
    },
    async list() {
      const ids = (await listKeys(kv, 'i.>')).map((k) => k.slice(2))
      const got = await Promise.all(ids.map(read))
      return got.filter((g) => g !== null).map((g) => g.i).sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id))
    },
    async update(id, change) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const cur = await read(id)
        if (!cur) throw new Error('no such item')
        const next = { ...change(structuredClone(cur.i)), updated_at: Date.now() }
        try {
          await kv.update(`i.${id}`, enc.encode(JSON.stringify(next)), cur.rev)
          return { before: cur.i, after: next }
        } catch {
          continue
        }
      }
      throw new Error('item was changed concurrently; retry')
    },
  }
}
