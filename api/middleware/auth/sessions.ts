import { createHmac } from 'node:crypto'
import { sign, verify } from 'hono/jwt'
import type { Official } from '../../../core/store/officials.ts'
import type { Principal } from './index.ts'

/**
 * Login tokens: HS256 JWTs (hono/jwt) that expire. The signing key is derived from the admin
 * token, so every process of one deployment verifies the tokens of the others without a shared
 * session store, and rotating the admin token logs everyone out.
 */
export interface Sessions {
  issue(o: Official): Promise<{ token: string; expires_at: string }>
  verify(token: string): Promise<Principal | null>
}

export function createSessions(adminToken: string, ttlSeconds = 12 * 3600): Sessions {
  const key = createHmac('sha256', adminToken).update('kepu-session-v1').digest('base64url')
  return {
    async issue(o) {
      const exp = Math.floor(Date.now() / 1000) + ttlSeconds
      const token = await sign({ sub: o.id, role: o.role, scope: o.scope, exp }, key, 'HS256')
      return { token, expires_at: new Date(exp * 1000).toISOString() }
    },
    async verify(token) {
      try {
        const p = (await verify(token, key, 'HS256')) as { sub: string; role: string; scope: Record<string, unknown> }
        if (p.role === 'operator') return { kind: 'operator', officialId: p.sub }
        const s = p.scope
        if (typeof s?.region_code === 'string') return { kind: 'official', officialId: p.sub, scope: { region_code: s.region_code } }
        if (typeof s?.institution_id === 'string') return { kind: 'official', officialId: p.sub, scope: { institution_id: s.institution_id } }
        return null
      } catch {
        return null
      }
    },
  }
}
