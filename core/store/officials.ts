import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { isRevisionConflict, releasePhone } from './kv-records.ts'

/**
 * Officials and operators, durable in NATS KV (bucket `officials`): `o.<id>` the account,
 * `p.<phone>` its phone, taken with `create` so one phone is one account. Passwords are hashed
 * with scrypt (memory-hard, from node:crypto); only the hash is stored.
 */
export type Scope = { region_code: string } | { institution_id: string } | { national: true }

export interface Official {
  id: string
  phone: string
  name: string
  role: 'official' | 'operator'
  scope: Scope
  password_hash: string
  created_at: number
}

export class OfficialConflict extends Error {}

const enc = new TextEncoder()
const dec = new TextDecoder()
const SCRYPT = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }

function scrypt(password: string, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((res, rej) => scryptCb(password, salt, 32, opts, (err, key) => (err ? rej(err) : res(key))))
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await scrypt(password, salt, SCRYPT)
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [alg, N, r, p, salt, hash] = stored.split('$')
  if (alg !== 'scrypt') return false
  const expected = Buffer.from(hash, 'base64')
  const key = await scrypt(password, Buffer.from(salt, 'base64'), { N: Number(N), r: Number(r), p: Number(p), maxmem: SCRYPT.maxmem })
  return key.length === expected.length && timingSafeEqual(key, expected)
}

export interface OfficialStore {
  create(input: Omit<Official, 'id' | 'created_at' | 'password_hash'> & { password: string }): Promise<Official>
  byPhone(phone: string): Promise<Official | null>
  /** Takes a just-created official back (the phone first, so a crash leaves no phone claimed by nothing reachable). */
  remove(o: Official): Promise<void>
}

export function createOfficialStore(kv: KV): OfficialStore {
  async function get(id: string): Promise<Official | null> {
    const e = await kv.get(`o.${id}`)
    return e && e.operation === 'PUT' && e.value.length ? (JSON.parse(dec.decode(e.value)) as Official) : null
  }
  return {
    async create(input) {
      const id = 'off_' + randomBytes(8).toString('hex')
      try {
        await kv.create(`p.${input.phone}`, enc.encode(id))
      } catch (err) {
        if (!isRevisionConflict(err)) throw err
        throw new OfficialConflict('an account with this phone number exists')
      }
      const { password, ...rest } = input
      const official: Official = { ...rest, id, password_hash: await hashPassword(password), created_at: Date.now() }
      await kv.create(`o.${id}`, enc.encode(JSON.stringify(official)))
      return official
    },
    async byPhone(phone) {
      if (!/^\d{11}$/.test(phone)) return null // not a phone number, and not a valid KV key either
      const e = await kv.get(`p.${phone}`)
      if (!e || e.operation !== 'PUT' || !e.value.length) return null
      return get(dec.decode(e.value))
    },
    async remove(o) {
      await releasePhone(kv, o.phone, o.id)
      await kv.delete(`o.${o.id}`)
    },
  }
}
