import { randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { z } from 'zod'
import { USER_ID } from '../events.ts'
import { listKeys } from './kv-keys.ts'
import { isRevisionConflict, releasePhone } from './kv-records.ts'

/**
 * Communicators, durable in NATS JetStream KV (bucket `users`): `u.<id>` holds the profile and
 * `p.<phone>` the owner of a phone number, taken with `create` so that one phone maps to one
 * account even under concurrent writers. Profile updates are revision-checked. Each communicator also
 * gets a dense numeric index `ix` (1, 2, 3, …, never reused), handed out in blocks from the counter
 * `m.ix` with compare-and-set so that processes never share one: the KPI rollups count distinct
 * active communicators as bitmaps of these indexes, which merge fast over long periods.
 */
export const PHONE = z.string().regex(/^1[3-9]\d{9}$/, 'must be a mainland mobile number (11 digits, 1[3-9]…)')
export const USER_KINDS = ['个人用户', '中国科协', '省级', '市级', '区县级', '乡镇街道'] as const

export interface User {
  id: string
  phone: string
  real_name: string
  region_code: string
  kind: string
  institution_id: string
  /** Epoch ms; events before it do not count. */
  certified_at: number
  /** Dense numeric index (≥ 1) for the KPI bitmaps; assigned at creation and never changed. */
  ix: number
  created_at: number
  updated_at: number
}

export interface UserStore {
  get(id: string): Promise<User | null>
  /**
   * Creates or updates by id (or by phone when no id). Returns the stored user and whether it is new.
   * `mayChange`, when given, is asked about the stored record before it is replaced (in the same
   * revision-checked write): false refuses with UserConflict('outside_scope') and changes nothing.
   */
  upsert(
    input: Omit<User, 'id' | 'ix' | 'created_at' | 'updated_at'> & { id?: string },
    mayChange?: (existing: User) => boolean,
  ): Promise<{ user: User; created: boolean; previous: User | null }>
  /** Every stored user, for rebuilding caches. */
  all(): AsyncIterable<User>
  /** The communicator holding a phone number, if any. */
  idByPhone(phone: string): Promise<string | null>
}

export class UserConflict extends Error {
  constructor(public code: 'phone_taken' | 'conflict' | 'outside_scope', message: string) {
    super(message)
  }
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const json = (v: unknown) => enc.encode(JSON.stringify(v))

export function newUserId(): string {
  return 'u' + randomBytes(9).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x')
}

const IX_BLOCK = 256

/** Hands out indexes from blocks reserved in the KV counter `m.ix` (compare-and-set). */
function createIndexAllocator(kv: KV) {
  let next = 0
  let end = 0
  let reserving: Promise<void> | null = null
  async function reserve() {
    for (;;) {
      const e = await kv.get('m.ix')
      const cur = e && e.operation === 'PUT' && e.value.length ? Number(dec.decode(e.value)) : 0
      try {
        if (e) await kv.update('m.ix', enc.encode(String(cur + IX_BLOCK)), e.revision)
        else await kv.create('m.ix', enc.encode(String(IX_BLOCK)))
      } catch (err) {
        if (isRevisionConflict(err)) continue // another process reserved a block in between
        throw err
      }
      next = cur + 1
      end = cur + IX_BLOCK
      return
    }
  }
  return async function allocate(): Promise<number> {
    while (next === 0 || next > end) {
      reserving ??= reserve().finally(() => (reserving = null))
      await reserving
    }
    return next++
  }
}

export function createUserStore(kv: KV): UserStore {
  const allocateIx = createIndexAllocator(kv)
  async function get(id: string) {
    const e = await kv.get(`u.${id}`)
    return e && e.operation === 'PUT' && e.value.length ? { user: JSON.parse(dec.decode(e.value)) as User, rev: e.revision } : null
  }
  async function ownerOfPhone(phone: string) {
    const e = await kv.get(`p.${phone}`)
    return e && e.operation === 'PUT' && e.value.length ? dec.decode(e.value) : null
  }
  async function claimPhone(phone: string, id: string) {
    try {
      await kv.create(`p.${phone}`, enc.encode(id))
    } catch {
      const owner = await ownerOfPhone(phone)
      if (owner !== id) throw new UserConflict('phone_taken', 'phone number belongs to another communicator')
    }
  }
  return {
    async get(id) {
      if (!USER_ID.safeParse(id).success) return null
      return (await get(id))?.user ?? null
    },
    async upsert(input, mayChange) {
      const id = input.id ?? (await ownerOfPhone(input.phone)) ?? newUserId()
      for (let attempt = 0; attempt < 3; attempt++) {
        const now = Date.now()
        const existing = await get(id)
        if (existing && mayChange && !mayChange(existing.user)) throw new UserConflict('outside_scope', 'this communicator is outside your scope')
        await claimPhone(input.phone, id)
        const user: User = {
          ...input,
          id,
          ix: existing?.user.ix || (await allocateIx()),
          created_at: existing?.user.created_at ?? now,
          updated_at: now,
        }
        try {
          if (existing) await kv.update(`u.${id}`, json(user), existing.rev)
          else await kv.create(`u.${id}`, json(user))
        } catch (err) {
          if (isRevisionConflict(err)) continue // someone else wrote in between: read again and retry
          throw err
        }
        if (existing && existing.user.phone !== input.phone) await releasePhone(kv, existing.user.phone, id)
        return { user, created: !existing, previous: existing?.user ?? null }
      }
      throw new UserConflict('conflict', 'communicator was changed concurrently; retry')
    },
    idByPhone: ownerOfPhone,
    async *all() {
      const ids = (await listKeys(kv, 'u.>')).map((k) => k.slice(2))
      for (let i = 0; i < ids.length; i += 500) {
        const got = await Promise.all(ids.slice(i, i + 500).map((id) => get(id)))
        for (const g of got) if (g) yield g.user
      }
    },
  }
}
