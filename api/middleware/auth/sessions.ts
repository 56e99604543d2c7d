import { createHmac, randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { sign, verify } from 'hono/jwt'
import type { Account } from '../../../core/store/accounts.ts'
import type { Official } from '../../../core/store/officials.ts'
import { shanghaiIso } from '../../../core/time.ts'
import type { Principal } from './index.ts'

/**
 * Login tokens: HS256 JWTs (hono/jwt) that expire. The signing key is derived from the admin
 * token, so every process of one deployment verifies the tokens of the others without a shared
 * session store, and rotating the admin token logs everyone out.
 *
 * Logout and password changes need revocation before expiry: a logged-out token's id (`jti`) is kept
 * in Redis (`rv:<jti>`) until the token would have expired, and a password change records the time
 * (`rva:<account>`) before which that account's tokens are void. Verification reads both in one MGET
 * when Redis is given.
 */
export interface Sessions {
  issue(o: Official): Promise<{ token: string; expires_at: string }>
  /** A token for an app account (communicator; with the scope an approved administrator certification gave). */
  issueAccount(a: Account): Promise<{ token: string; expires_at: string }>
  verify(token: string): Promise<Principal | null>
  /** Voids one valid token (logout) until it would have expired; false when it was not valid. */
  revoke(token: string): Promise<boolean>
  /** Voids every token of an account issued before now (password reset). */
  revokeAccount(accountId: string): Promise<void>
}

export function createSessions(adminToken: string, opts: { ttlSeconds?: number; redis?: Redis } = {}): Sessions {
  const ttlSeconds = opts.ttlSeconds ?? 12 * 3600
  const redis = opts.redis
  const key = createHmac('sha256', adminToken).update('kepu-session-v1').digest('base64url')
  const jti = () => randomBytes(12).toString('base64url')
  async function revoked(p: { jti?: string; sub: string; iat?: number }): Promise<boolean> {
    if (!redis) return false
    // Two GETs, not one MGET: on a Redis Cluster the keys lie in different slots (sent together, one round trip).
    const [one, all] = await Promise.all([redis.get(`rv:${p.jti ?? '-'}`), redis.get(`rva:${p.sub}`)])
    return one !== null || (all !== null && (p.iat ?? 0) * 1000 < Number(all))
  }
  return {
    async issue(o) {
      const now = Math.floor(Date.now() / 1000)
      const exp = now + ttlSeconds
      const token = await sign({ sub: o.id, role: o.role, scope: o.scope, exp, iat: now, jti: jti() }, key, 'HS256')
      return { token, expires_at: shanghaiIso(exp * 1000) }
    },
    async issueAccount(a) {
      // iat in ms precision is not available in JWTs: a token issued in the same second as a password
      // change is kept valid by rounding the change down (see revokeAccount).
      const now = Math.floor(Date.now() / 1000)
      const exp = now + ttlSeconds
      const token = await sign({ sub: a.id, role: 'account', uid: a.user_id, scope: a.scope, exp, iat: now, jti: jti() }, key, 'HS256')
      return { token, expires_at: shanghaiIso(exp * 1000) }
    },
    async verify(token) {
      let p: { sub: string; role: string; scope: Record<string, unknown> | null; uid?: string; jti?: string; iat?: number; exp?: number }
      try {
        p = (await verify(token, key, 'HS256')) as typeof p
      } catch {
        return null
      }
      if (await revoked(p)) return null
      if (p.role === 'account') {
        const account = { id: p.sub, userId: String(p.uid ?? p.sub), jti: p.jti, exp: p.exp }
        const s = p.scope
        if (s?.national === true) return { kind: 'operator', officialId: `acct:${p.sub}`, account }
        if (typeof s?.region_code === 'string') return { kind: 'official', officialId: `acct:${p.sub}`, scope: { region_code: s.region_code }, account }
        return { kind: 'communicator', account }
      }
      if (p.role === 'operator') return { kind: 'operator', officialId: p.sub }
      const s = p.scope
      if (typeof s?.region_code === 'string') return { kind: 'official', officialId: p.sub, scope: { region_code: s.region_code } }
      if (typeof s?.institution_id === 'string') return { kind: 'official', officialId: p.sub, scope: { institution_id: s.institution_id } }
      return null
    },
    async revoke(token) {
      let p: { jti?: string; exp?: number }
      try {
        p = (await verify(token, key, 'HS256')) as typeof p
      } catch {
        return false
      }
      const ttl = (p.exp ?? 0) - Math.floor(Date.now() / 1000)
      if (p.jti && ttl > 0 && redis) await redis.set(`rv:${p.jti}`, '1', 'EX', ttl)
      return true
    },
    async revokeAccount(accountId) {
      // Tokens issued before this second are void; the record lives as long as a token can.
      if (redis) await redis.set(`rva:${accountId}`, String(Math.floor(Date.now() / 1000) * 1000), 'EX', ttlSeconds)
    },
  }
}
