import { timingSafeEqual, createHash } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'
import { unauthorized, forbidden, unavailable } from '../../../core/errors.ts'
import type { App, AppStore } from '../../../core/store/apps.ts'
import type { Sessions } from './sessions.ts'

/**
 * Who is calling: a national operator (the admin token, or an official account with the operator
 * role), an official scoped to a region subtree or an institution (a login token), or an app.
 */
export type Principal =
  | { kind: 'operator'; officialId?: string; account?: AccountRef }
  | { kind: 'official'; officialId: string; scope: { region_code: string } | { institution_id: string }; account?: AccountRef }
  | { kind: 'app'; app: App }
  | { kind: 'communicator'; account: AccountRef }

/**
 * An app account behind a login token: a communicator, or an administrator whose approved
 * certification gave her an official's scope (then the principal is an official or operator that also
 * carries her account, so the "me" routes work for her too).
 */
export interface AccountRef {
  id: string
  userId: string
  /** The token's id, for logout. */
  jti?: string
  exp?: number
}

export type AuthEnv = { Variables: { principal: Principal; requestId: string } }

const digest = (s: string) => createHash('sha256').update(s).digest()

export function bearer(header: string | undefined): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  return m ? m[1] : null
}

/** Resolves the bearer credential into a principal; rejects with 401 when there is none. */
export function authenticate(deps: { adminToken: string; apps: AppStore; sessions: Sessions; open?: string[] }): MiddlewareHandler<AuthEnv> {
  const admin = digest(deps.adminToken)
  const open = new Set(deps.open ?? [])
  return async (c, next) => {
    if (open.has(c.req.path)) return next()
    const token = bearer(c.req.header('authorization'))
    if (!token) throw unauthorized('send Authorization: Bearer <token>')
    if (timingSafeEqual(digest(token), admin)) {
      c.set('principal', { kind: 'operator' })
      return next()
    }
    if (token.split('.').length === 3) {
      const principal = await deps.sessions.verify(token)
      if (!principal) throw unauthorized('invalid or expired token; log in again')
      c.set('principal', principal)
      return next()
    }
    let app: App | null
    try {
      app = await deps.apps.byKey(token)
    } catch {
      throw unavailable('nats')
    }
    if (!app) throw unauthorized('unknown or revoked credential')
    c.set('principal', { kind: 'app', app })
    return next()
  }
}

export function requireOperator(): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    if (c.get('principal').kind !== 'operator') throw forbidden('operators only')
    return next()
  }
}

export function requireApp(): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    if (c.get('principal').kind !== 'app') throw unauthorized('events must be sent with an app key')
    return next()
  }
}

/** Operators and officials (people with an account), not apps. */
export function requireStaff(): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const k = c.get('principal').kind
    if (k === 'app' || k === 'communicator') throw forbidden('officials and operators only')
    return next()
  }
}

/** A logged-in app account (communicator or administrator). */
export function requireAccount(): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    if (!accountOf(c.get('principal'))) throw forbidden('log in with an app account')
    return next()
  }
}

export function accountOf(p: Principal): AccountRef | null {
  return p.kind === 'app' ? null : (p.account ?? null)
}
