import { randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { createKvRecords, isRevisionConflict, releasePhone } from './kv-records.ts'
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
  /** Takes a just-created account back (the phone first, so a crash leaves only an unreachable record). */
  remove(a: Account): Promise<void>
  /** Read, change, write with the revision read; retried a few times on a concurrent write. */
  update(id: string, change: (a: Account) => Account | null): Promise<Account>
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export const newAccountId = () => 'a' + randomBytes(9).toString('hex')

export function createAccountStore(kv: KV): AccountStore {
  const records = createKvRecords<Account>(kv, 'a', {
    missing: () => new AccountConflict('conflict', 'no such account'),
    conflict: () => new AccountConflict('conflict', 'account was changed concurrently; retry'),
  })
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
      await records.create(id, account)
      try {
        await kv.create(`p.${input.phone}`, enc.encode(id))
      } catch (err) {
        await kv.delete(`a.${id}`).catch(() => {})
        if (!isRevisionConflict(err)) throw err
        throw new AccountConflict('phone_taken', 'an account with this phone number exists')
      }
      return account
    },
    get: records.get,
    async remove(a) {
      await releasePhone(kv, a.phone, a.id)
      await kv.delete(`a.${a.id}`)
    },
    async byPhone(phone) {
      if (!/^\d{11}$/.test(phone)) return null // not a phone number, and not a valid KV key either
      const e = await kv.get(`p.${phone}`)
      if (!e || e.operation !== 'PUT' || !e.value.length) return null
      return records.get(dec.decode(e.value))
    },
    async update(id, change) {
      return (await records.update(id, change)).after
    },
  }
}
