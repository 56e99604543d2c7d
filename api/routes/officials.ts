import { getConnInfo } from '@hono/node-server/conninfo'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import type { Redis } from 'ioredis'
import { ApiError, badRequest, forbidden, unauthorized } from '../../core/errors.ts'
import type { RegionTree } from '../../core/regions.ts'
import { OfficialConflict, verifyPassword, type Official, type OfficialStore } from '../../core/store/officials.ts'
import { PHONE } from '../../core/store/users.ts'
import type { AccountStore } from '../../core/store/accounts.ts'
import type { AuthEnv } from '../middleware/auth/index.ts'
import type { Sessions } from '../middleware/auth/sessions.ts'
import { institutionTarget, mustCover } from '../middleware/scope/index.ts'
import type { InstitutionStore } from '../../core/store/institutions.ts'
import { errorResponses } from '../schemas.ts'

export interface OfficialsDeps {
  officials: OfficialStore
  institutions: Pick<InstitutionStore, 'get'>
  accounts: AccountStore
  sessions: Sessions
  redis: Redis
  tree: RegionTree
}

const PASSWORD = z
  .string()
  .min(8)
  .max(64)
  .regex(/[A-Za-z]/, 'must contain a letter')
  .regex(/\d/, 'must contain a digit')
const ScopeSchema = z.union([
  z.object({ region_code: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/) }).strict(),
  z.object({ institution_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/) }).strict(),
])
export const ScopeOut = z.union([z.object({ region_code: z.string() }), z.object({ institution_id: z.string() }), z.object({ national: z.literal(true) })])

const LOGIN_LIMITS = { perPhone: 5, perIp: 30, windowS: 60 }

/** Fixed-window counters in Redis; returns the seconds to wait when over the limit. */
export async function overLimit(redis: Redis, key: string, limit: number, windowS: number): Promise<number | null> {
  const n = await redis.incr(key)
  if (n === 1) await redis.expire(key, windowS)
  if (n <= limit) return null
  const ttl = await redis.ttl(key)
  return ttl > 0 ? ttl : windowS
}

export function mountOfficials(app: OpenAPIHono<AuthEnv>, deps: OfficialsDeps) {
  const create = createRoute({
    method: 'post',
    path: '/v1/officials',
    summary: 'Create an official (scoped to a region subtree or an institution) or an operator',
    description: 'Operators may create anyone; an official may create officials inside her own scope. One login per phone: 409 phone_taken when an official or an app account holds the phone.',
    security: [{ bearer: [] }],
    request: {
      body: {
        required: true,
        content: {
          'application/json': {
            schema: z.object({
              phone: PHONE,
              password: PASSWORD,
              name: z.string().trim().min(1).max(64),
              scope: ScopeSchema.optional(),
              role: z.enum(['official', 'operator']).default('official'),
            }),
          },
        },
      },
    },
    responses: {
      201: {
        description: 'Created',
        content: { 'application/json': { schema: z.object({ id: z.string(), name: z.string(), role: z.string(), scope: ScopeOut }) } },
      },
      ...errorResponses(400, 401, 403, 409),
    },
  })
  app.openapi(create, async (c) => {
    const body = c.req.valid('json')
    const p = c.get('principal')
    if (body.role === 'operator') {
      if (p.kind !== 'operator') throw forbidden('only operators create operators')
    } else {
      if (!body.scope) throw badRequest('scope: required for an official ({region_code} or {institution_id})')
      if ('region_code' in body.scope && !deps.tree.get(body.scope.region_code)) throw badRequest(`scope.region_code ${body.scope.region_code} is not a GB/T 2260 division`, 'unknown_region')
      // An institution's official: the institution's region decides who may appoint her.
      mustCover(p, 'institution_id' in body.scope ? await institutionTarget(body.scope.institution_id, deps.institutions) : body.scope)
    }
    const scope = body.role === 'operator' ? ({ national: true } as const) : body.scope!
    // One login per phone, officials and app accounts together (they log in at the same route).
    const taken = () => new ApiError(409, 'phone_taken', 'an account with this phone number exists')
    if (await deps.accounts.byPhone(body.phone)) throw taken()
    let o: Official
    try {
      o = await deps.officials.create({ phone: body.phone, password: body.password, name: body.name, role: body.role, scope })
    } catch (e) {
      if (e instanceof OfficialConflict) throw taken()
      throw e
    }
    // Each side claims the phone in its own store, then looks at the other's: of two racing
    // creations at least one sees the other and takes itself back.
    if (await deps.accounts.byPhone(body.phone)) {
      await deps.officials.remove(o)
      throw taken()
    }
    return c.json({ id: o.id, name: o.name, role: o.role, scope: o.scope }, 201)
  })

  const login = createRoute({
    method: 'post',
    path: '/v1/auth/login',
    summary: 'Log in with phone and password (officials and app accounts alike); returns a bearer token that expires',
    description: `Rate limited: ${LOGIN_LIMITS.perPhone} attempts per phone and ${LOGIN_LIMITS.perIp} per IP address a minute. An official's phone logs in as the official; otherwise the app account with that phone logs in (role \`communicator\`, or \`administrator\` with the scope an approved administrator certification granted; \`scope\` is null for a plain communicator).`,
    request: { body: { required: true, content: { 'application/json': { schema: z.object({ phone: PHONE, password: z.string().max(128) }) } } } },
    responses: {
      200: {
        description: 'Logged in',
        content: {
          'application/json': {
            schema: z.object({
              token: z.string(), expires_at: z.string(), scope: ScopeOut.nullable(), role: z.string(), name: z.string(),
              account_id: z.string().optional(), user_id: z.string().optional(),
            }),
          },
        },
      },
      ...errorResponses(400, 401, 429),
    },
  })
  app.openapi(login, async (c) => {
    const { phone, password } = c.req.valid('json')
    let ip = 'unknown'
    try {
      ip = getConnInfo(c).remote.address ?? 'unknown'
    } catch {
      /* not behind a Node socket (in-process requests) */
    }
    for (const [key, limit] of [[`rl:login:ip:${ip}`, LOGIN_LIMITS.perIp], [`rl:login:p:${phone}`, LOGIN_LIMITS.perPhone]] as const) {
      const wait = await overLimit(deps.redis, key, limit, LOGIN_LIMITS.windowS)
      if (wait !== null) throw new ApiError(429, 'too_many_attempts', 'too many login attempts; retry later', { 'Retry-After': String(wait) })
    }
    const o = await deps.officials.byPhone(phone)
    const a = o ? null : await deps.accounts.byPhone(phone)
    // The same answer, and a hash computed either way, whether or not the phone exists.
    const ok = await verifyPassword(password, o?.password_hash ?? a?.password_hash ?? 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA')
    if (!ok || !(o || a)) throw unauthorized('wrong phone or password')
    if (o) {
      const { token, expires_at } = await deps.sessions.issue(o)
      return c.json({ token, expires_at, scope: o.scope, role: o.role, name: o.name }, 200)
    }
    const { token, expires_at } = await deps.sessions.issueAccount(a!)
    return c.json({ token, expires_at, scope: a!.scope, role: a!.scope ? 'administrator' : 'communicator', name: a!.nickname, account_id: a!.id, user_id: a!.user_id }, 200)
  })
}
