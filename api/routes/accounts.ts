import { getConnInfo } from '@hono/node-server/conninfo'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import type { Context } from 'hono'
import type { Redis } from 'ioredis'
import { ApiError, badRequest, notFound, unauthorized } from '../../core/errors.ts'
import { createSmsCodes, SMS_RULES, type CheckResult, type SmsSender } from '../../core/sms.ts'
import { AccountConflict, type Account, type AccountStore } from '../../core/store/accounts.ts'
import type { CertificationStore } from '../../core/store/certifications.ts'
import { hashPassword, type OfficialStore } from '../../core/store/officials.ts'
import { PHONE, type UserStore } from '../../core/store/users.ts'
import { shanghaiIso } from '../../core/time.ts'
import { accountOf, bearer, requireAccount, type AuthEnv } from '../middleware/auth/index.ts'
import type { Sessions } from '../middleware/auth/sessions.ts'
import { errorResponses } from '../schemas.ts'
import { overLimit, ScopeOut } from './officials.ts'

/**
 * App accounts (seed 000 科猫 registration rules, seed 001 "登录/注册"): an SMS code to a mainland
 * mobile number, a password of 8–12 letters and digits with both present (case-sensitive), a
 * nickname of 1–12 characters and a signature of at most 140. One account per phone, enforced by the
 * durable store (`p.<phone>` taken with `create`). Login is `POST /v1/auth/login` (shared with
 * officials); logout revokes the token; a forgotten password is reset with an SMS code.
 */
export interface AccountsDeps {
  accounts: AccountStore
  /** Officials log in at the same route: a phone holds an official or an app account, never both. */
  officials: Pick<OfficialStore, 'byPhone'>
  users: UserStore
  certifications: CertificationStore
  sessions: Sessions
  redis: Redis
  sms: SmsSender
}

export const APP_PASSWORD = z
  .string()
  .regex(/^[A-Za-z0-9]{8,12}$/, 'must be 8–12 letters and digits')
  .regex(/[A-Za-z]/, 'must contain a letter')
  .regex(/\d/, 'must contain a digit')
const chars = (min: number, max: number) =>
  z.string().trim().refine((s) => [...s].length >= min && [...s].length <= max, { message: `must be ${min}–${max} characters` })
export const NICKNAME = chars(1, 12)
export const SIGNATURE = chars(0, 140)
const CODE = z.string().regex(/^\d{6}$/, 'must be the 6-digit code')

const Me = z.object({
  id: z.string(),
  phone: z.string(),
  nickname: z.string(),
  signature: z.string(),
  user_id: z.string(),
  certified: z.boolean(),
  certification: z.object({ id: z.string(), status: z.string(), reason: z.string() }).nullable(),
  scope: ScopeOut.nullable(),
  created_at: z.string(),
})

export function clientIp(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown'
  } catch {
    return 'unknown' // not behind a Node socket (in-process requests)
  }
}

function codeError(r: Exclude<CheckResult, 'ok'>): ApiError {
  if (r === 'locked') return badRequest('too many wrong codes; request a new one', 'code_locked')
  if (r === 'expired') return badRequest('no valid code for this phone; request one', 'code_expired')
  return badRequest('wrong code', 'wrong_code')
}

export function mountAccounts(app: OpenAPIHono<AuthEnv>, deps: AccountsDeps) {
  const codes = createSmsCodes(deps.redis, deps.sms)

  async function view(a: Account): Promise<z.infer<typeof Me>> {
    const cert = a.certification_id ? await deps.certifications.get(a.certification_id) : null
    const user = await deps.users.get(a.user_id)
    return {
      id: a.id, phone: a.phone, nickname: a.nickname, signature: a.signature, user_id: a.user_id,
      certified: !!user, certification: cert ? { id: cert.id, status: cert.status, reason: cert.reason } : null,
      scope: a.scope, created_at: shanghaiIso(a.created_at),
    }
  }

  const sms = createRoute({
    method: 'post',
    path: '/v1/auth/sms',
    summary: 'Send a 6-digit SMS code (registration or password reset)',
    description: `The code is valid ${SMS_RULES.ttlS / 60} min and takes ${SMS_RULES.maxAttempts} wrong guesses; a new one no sooner than ${SMS_RULES.resendS} s after the last (429 with Retry-After). For \`reset\` the answer is the same whether or not the phone has an account (nothing is sent when it has none).`,
    request: { body: { required: true, content: { 'application/json': { schema: z.object({ phone: PHONE, purpose: z.enum(['register', 'reset']).default('register') }) } } } },
    responses: {
      202: { description: 'Sent', content: { 'application/json': { schema: z.object({ expires_in: z.number().int(), resend_after: z.number().int() }) } } },
      ...errorResponses(400, 409, 429, 503),
    },
  })
  app.openapi(sms, async (c) => {
    const { phone, purpose } = c.req.valid('json')
    const wait = await overLimit(deps.redis, `rl:sms:ip:${clientIp(c)}`, SMS_RULES.perIpPerHour, 3600)
    if (wait !== null) throw new ApiError(429, 'too_many_requests', 'too many codes requested from this address; retry later', { 'Retry-After': String(wait) })
    const exists = !!(await deps.accounts.byPhone(phone))
    if (purpose === 'register' && (exists || (await deps.officials.byPhone(phone)))) throw new ApiError(409, 'phone_taken', 'an account with this phone number exists; log in or reset the password')
    if (purpose === 'register' || exists) {
      const r = await codes.send(phone, purpose)
      if (!r.ok) throw new ApiError(429, 'too_soon', `a code was sent less than ${SMS_RULES.resendS} s ago`, { 'Retry-After': String(r.retryAfterS) })
    }
    return c.json({ expires_in: SMS_RULES.ttlS, resend_after: SMS_RULES.resendS }, 202)
  })

  const register = createRoute({
    method: 'post',
    path: '/v1/accounts',
    summary: 'Register an app account with the SMS code; returns a login token',
    description: 'One account per phone number, also under concurrent attempts (409 phone_taken for the others), and none for a phone an official holds. When a communicator with this phone was imported from a roster, the account counts as her.',
    request: {
      body: {
        required: true,
        content: { 'application/json': { schema: z.object({ phone: PHONE, code: CODE, password: APP_PASSWORD, nickname: NICKNAME, signature: SIGNATURE.default('') }) } },
      },
    },
    responses: {
      201: { description: 'Registered', content: { 'application/json': { schema: Me.extend({ token: z.string(), expires_at: z.string() }) } } },
      ...errorResponses(400, 409, 503),
    },
  })
  app.openapi(register, async (c) => {
    const body = c.req.valid('json')
    const checked = await codes.check(body.phone, 'register', body.code)
    if (checked !== 'ok') throw codeError(checked)
    const taken = () => new ApiError(409, 'phone_taken', 'an account with this phone number exists')
    if ((await deps.accounts.byPhone(body.phone)) || (await deps.officials.byPhone(body.phone))) throw taken()
    let account: Account
    try {
      account = await deps.accounts.create({
        phone: body.phone, password: body.password, nickname: body.nickname, signature: body.signature,
        user_id: (await deps.users.idByPhone(body.phone)) ?? undefined,
      })
    } catch (e) {
      if (e instanceof AccountConflict) throw new ApiError(409, e.code, e.message)
      throw e
    }
    // An official created meanwhile with this phone: each side claims in its own store, then looks at
    // the other's, so at least one of the two sees the other and takes itself back.
    if (await deps.officials.byPhone(body.phone)) {
      await deps.accounts.remove(account)
      throw taken()
    }
    await codes.consume(body.phone, 'register')
    const session = await deps.sessions.issueAccount(account)
    return c.json({ ...(await view(account)), ...session }, 201)
  })

  const logout = createRoute({
    method: 'post',
    path: '/v1/auth/logout',
    summary: 'Log out: the bearer token is void from now on (until it would have expired)',
    security: [{ bearer: [] }],
    responses: { 204: { description: 'Logged out' }, ...errorResponses(401) },
  })
  app.openapi(logout, async (c) => {
    const token = bearer(c.req.header('authorization'))
    if (!token || !(await deps.sessions.revoke(token))) throw unauthorized('not a login token')
    return c.body(null, 204)
  })

  const reset = createRoute({
    method: 'post',
    path: '/v1/auth/reset',
    summary: 'Reset a forgotten password with an SMS code (purpose reset); logs out every session of the account',
    request: { body: { required: true, content: { 'application/json': { schema: z.object({ phone: PHONE, code: CODE, password: APP_PASSWORD }) } } } },
    responses: { 204: { description: 'Password changed' }, ...errorResponses(400, 503) },
  })
  app.openapi(reset, async (c) => {
    const body = c.req.valid('json')
    const checked = await codes.check(body.phone, 'reset', body.code)
    if (checked !== 'ok') throw codeError(checked)
    const a = await deps.accounts.byPhone(body.phone)
    if (!a) throw codeError('expired')
    const hash = await hashPassword(body.password)
    await deps.accounts.update(a.id, (x) => ({ ...x, password_hash: hash, password_changed_at: Date.now() }))
    await deps.sessions.revokeAccount(a.id)
    await codes.consume(body.phone, 'reset')
    return c.body(null, 204)
  })

  const me = createRoute({
    method: 'get',
    path: '/v1/me',
    summary: 'My account: nickname, signature, certification status, granted scope (phone unmasked: it is mine)',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    responses: { 200: { description: 'Me', content: { 'application/json': { schema: Me } } }, ...errorResponses(401, 403, 404) },
  })
  app.openapi(me, async (c) => {
    const a = await deps.accounts.get(accountOf(c.get('principal'))!.id)
    if (!a) throw notFound('account removed')
    return c.json(await view(a), 200)
  })

  const patch = createRoute({
    method: 'patch',
    path: '/v1/me',
    summary: 'Change my nickname or signature',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    request: { body: { required: true, content: { 'application/json': { schema: z.object({ nickname: NICKNAME.optional(), signature: SIGNATURE.optional() }).strict() } } } },
    responses: { 200: { description: 'Me', content: { 'application/json': { schema: Me } } }, ...errorResponses(400, 401, 403) },
  })
  app.openapi(patch, async (c) => {
    const body = c.req.valid('json')
    const a = await deps.accounts.update(accountOf(c.get('principal'))!.id, (x) => ({ ...x, ...body }))
    return c.json(await view(a), 200)
  })
}
