import { randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { createKvRecords } from './kv-records.ts'

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

export function createItemStore(kv: KV): ItemStore {
  const records = createKvRecords<Item>(kv, 'i', { missing: () => new Error('no such item'), conflict: () => new Error('item was changed concurrently; retry') })
  return {
    async create(input) {
      const now = Date.now()
      const item: Item = { ...input, id: 'item_' + randomBytes(6).toString('hex'), created_at: now, updated_at: now }
      await records.create(item.id, item)
      return item
    },
    get: records.get,
    async list() {
      return (await records.list()).sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id))
    },
    update: (id, change) => records.update(id, change),
  }
}
