import { randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { hashPassword } from './officials.ts'

/**
 * App accounts (the 科普中国 app's "我的"): durable in NATS KV (bucket `accounts`). `a.<id>` holds the
 * account, `p.<phone>` the owner of a phone number, taken with `create` so that one phone is one
 * account even under concurrent registrations (the losers get AccountConflict). The account record
 * is written before the phone is claimed, so a crash in between leaves only an unreachable record,
 * never a phone claimed by nothing. Updates are revision-checked.
 *
 * `user_id` is the communicator id the account counts as once certified: the id of a communicator
 * already holding this phone (imported from a roster), otherwise the account's own id.
 * `scope` is granted by an approved administrator certification (省级 … 乡镇街道: the region at that
 * level; 中国科协: national).
 */
export type AccountScope = { region_code: string } | { national: true }

export interface Account {
  id: string
  phone: string
  password_hash: string
  nickname: string
  signature: string
  user_id: string
  /** The latest certification application (id), if any. */
  certification_id: string | null
  scope: AccountScope | null
  institution_admin: string[]
  created_at: number
  updated_at: number
  password_changed_at: number
}

export class AccountConflict extends Error {
  constructor(public code: 'phone_taken' | 'conflict', message: string) {
    super(message)
  }
}

export interface AccountStore {
  create(input: { phone: string; password: string; nickname: string; signature: string; user_id?: string }): Promise<Account>
  get(id: string): Promise<Account | null>
  byPhone(phone: string): Promise<Account | null>
  /** Read, change, write with the revision read; retried a few times on a concurrent write. */
  update(id: string, change: (a: Account) => Account | null): Promise<Account>
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export const newAccountId = () => 'a' + randomBytes(9).toString('hex')

export function createAccountStore(kv: KV): AccountStore {
  async function read(id: string) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) return null
    const e = await kv.get(`a.${id}`)
    return e && e.operation === 'PUT' && e.value.length ? { a: JSON.parse(dec.decode(e.value)) as Account, rev: e.revision } : null
  }
  return {
    async create(input) {
      const id = newAccountId()
      const now = Date.now()
      const account: Account = {
        id,
        phone: input.phone,
        password_hash: await hashPassword(input.password),
        nickname: input.nickname,
        signature: input.signature,
        user_id: input.user_id ?? id,
        certification_id: null,
        scope: null,
        institution_admin: [],
        created_at: now,
        updated_at: now,
        password_changed_at: now,
      }
      await kv.create(`a.${id}`, enc.encode(JSON.stringify(account)))
      try {
        await kv.create(`p.${input.phone}`, enc.encode(id))
      } catch {
        await kv.delete(`a.${id}`).catch(() => {})
        throw new AccountConflict('phone_taken', 'an account with this phone number exists')
      }
      return account
    },
    async get(id) {
      return (await read(id))?.a ?? null
    },
    async byPhone(phone) {
      const e = await kv.get(`p.${phone}`)
      if (!e || e.operation !== 'PUT' || !e.value.length) return null
      return (await read(dec.decode(e.value)))?.a ?? null
    },
    async update(id, change) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const cur = await read(id)
        if (!cur) throw new AccountConflict('conflict', 'no such account')
        const next = change(structuredClone(cur.a))
        if (!next) return cur.a
        next.updated_at = Date.now()
        try {
          await kv.update(`a.${id}`, enc.encode(JSON.stringify(next)), cur.rev)
          return next
        } catch {
          continue
        }
      }
      throw new AccountConflict('conflict', 'account was changed concurrently; retry')
    },
  }
}
