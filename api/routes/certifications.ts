import type { ClickHouseClient } from '@clickhouse/client'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import type { Redis } from 'ioredis'
import { publishCommunicators } from '../../core/communicators.ts'
import { ApiError, badRequest, forbidden, notFound } from '../../core/errors.ts'
import type { RegionTree } from '../../core/regions.ts'
import { chTime } from '../../core/schema.ts'
import { maskPhone } from '../../core/sms.ts'
import type { AccountScope, AccountStore } from '../../core/store/accounts.ts'
import { CertConflict, type Certification, type CertificationStore } from '../../core/store/certifications.ts'
import type { InstitutionStore } from '../../core/store/institutions.ts'
import { USER_KINDS, type UserStore } from '../../core/store/users.ts'
import { parseInstant, shanghaiIso } from '../../core/time.ts'
import { accountOf, requireAccount, requireStaff, type AuthEnv, type Principal } from '../middleware/auth/index.ts'
import { covers, type Target } from '../middleware/scope/index.ts'
import { errorResponses } from '../schemas.ts'
import { decide, decisionBody, reviewFilter, type ReviewAction } from '../review-queue.ts'

/**
 * 科普员 certification (seed 001: 姓名、省市区（到乡镇街道）、单位名称、科普员类型、所属机构（可不填）,
 * then 人工审核): an account applies; operators and officials in scope review a queue; approval makes
 * the account a certified communicator (the same steps as a roster import, source `review`: Redis
 * info, ClickHouse mirror, registration facts), so she counts in `/v1/kpis` and on leaderboards from
 * the approval on. Administrator kinds, approved, grant the account an official's scope over the
 * region at that level (省级 → province, 市级 → city, 区县级 → county, 乡镇街道 → town; 中国科协 →
 * national, which only an operator may approve). A rejection carries a reason the applicant sees; she
 * may apply again (a new application; the rejected one is kept).
 */
export interface CertificationsDeps {
  accounts: AccountStore
  certifications: CertificationStore
  users: UserStore
  redis: Redis
  ch: ClickHouseClient
  tree: RegionTree
  institutions: Pick<InstitutionStore, 'get'>
}

const LEVEL: Record<string, number> = { 省级: 2, 市级: 4, 区县级: 6, 乡镇街道: 9 }

/** The scope an approved certification of this kind grants, or null for 个人用户. */
export function grantedScope(kind: string, region: string): AccountScope | null {
  if (kind === '中国科协') return { national: true }
  const n = LEVEL[kind]
  return n ? { region_code: region.slice(0, n) } : null
}

const CertOut = z.object({
  id: z.string(),
  status: z.enum(['pending', 'approved', 'rejected']),
  reason: z.string(),
  real_name: z.string(),
  phone: z.string(),
  region_code: z.string(),
  unit_name: z.string(),
  kind: z.string(),
  institution_id: z.string().nullable(),
  user_id: z.string(),
  submitted_at: z.string(),
  reviewed_at: z.string().nullable(),
})

/** Phones unmasked to the owner and operators only; real names only to the owner and to reviewers in scope (who alone reach this). */
function out(c: Certification, p: Principal): z.infer<typeof CertOut> {
  const owner = accountOf(p)?.id === c.account_id
  return {
    id: c.id, status: c.status, reason: c.reason, real_name: c.real_name,
    phone: owner || p.kind === 'operator' ? c.phone : maskPhone(c.phone),
    region_code: c.region_code, unit_name: c.unit_name, kind: c.kind, institution_id: c.institution_id || null, user_id: c.user_id,
    submitted_at: shanghaiIso(c.submitted_at), reviewed_at: c.reviewed_at === null ? null : shanghaiIso(c.reviewed_at),
  }
}

async function mirror(ch: ClickHouseClient, c: Certification) {
  await ch.insert({
    table: 'certifications',
    format: 'JSONEachRow',
    values: [{
      ...c, submitted_at: chTime(c.submitted_at), reviewed_at: c.reviewed_at === null ? null : chTime(c.reviewed_at), updated_at: chTime(c.updated_at),
    }],
  })
}

/** Who may review an application: whoever covers the applicant's town (or her institution), and, for an administrator kind, the whole scope it grants. */
function mayReview(p: Principal, c: Certification): boolean {
  const applicant = covers(p, { region_code: c.region_code }) || (!!c.institution_id && covers(p, { institution_id: c.institution_id }))
  const g = grantedScope(c.kind, c.region_code)
  const grant: Target | null = g ? ('national' in g ? { national: true } : { region_code: g.region_code }) : null
  return applicant && (!grant || covers(p, grant))
}

const cursor = {
  enc: (ms: number, id: string) => Buffer.from(`${ms}:${id}`).toString('base64url'),
  dec: (s: string) => {
    const m = /^(\d+):([A-Za-z0-9_-]+)$/.exec(Buffer.from(s, 'base64url').toString())
    if (!m) throw badRequest('after: not a cursor from this list', 'invalid_cursor')
    return { ms: Number(m[1]), id: m[2] }
  },
}

export function mountCertifications(app: OpenAPIHono<AuthEnv>, deps: CertificationsDeps) {
  const submit = createRoute({
    method: 'post',
    path: '/v1/me/certification',
    summary: 'Apply for 科普员 certification (real name, town, unit, kind, optional institution)',
    description: 'One application at a time: 409 while one is pending or after approval. After a rejection, apply again.',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    request: {
      body: {
        required: true,
        content: {
          'application/json': {
            schema: z.object({
              real_name: z.string().trim().min(1).max(32),
              region_code: z.string().regex(/^\d{9}$/, 'must be a town / street code (9 digits)'),
              unit_name: z.string().trim().min(1).max(64),
              kind: z.enum(USER_KINDS),
              institution_id: z.string().trim().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
            }),
          },
        },
      },
    },
    responses: { 201: { description: 'Submitted', content: { 'application/json': { schema: CertOut } } }, ...errorResponses(400, 401, 403, 409) },
  })
  app.openapi(submit, async (c) => {
    const body = c.req.valid('json')
    const me = accountOf(c.get('principal'))!
    if (!deps.tree.get(body.region_code)) throw badRequest(`region_code ${body.region_code} is not a GB/T 2260 town`, 'unknown_region')
    // Only an approved institution (as joining one asks): a made-up id would appear on boards and rankings.
    if (body.institution_id && (await deps.institutions.get(body.institution_id))?.status !== 'approved') {
      throw badRequest(`institution_id ${body.institution_id} is not an approved institution`, 'unknown_institution')
    }
    const account = await deps.accounts.get(me.id)
    if (!account) throw notFound('account removed')
    const prevId = account.certification_id
    const prev = prevId ? await deps.certifications.get(prevId) : null
    if (prev?.status === 'pending') throw new ApiError(409, 'pending', 'an application is under review')
    if (prev?.status === 'approved') throw new ApiError(409, 'already_certified', 'already certified')
    const cert = await deps.certifications.create({
      account_id: account.id, user_id: account.user_id, phone: account.phone, real_name: body.real_name, region_code: body.region_code,
      unit_name: body.unit_name, kind: body.kind, institution_id: body.institution_id ?? '',
    })
    // The account points at its latest application; of two concurrent submissions one wins here and
    // the other's record stays outside the queue (it is never mirrored).
    await deps.accounts.update(account.id, (a) => {
      if (a.certification_id !== prevId) throw new ApiError(409, 'pending', 'an application was submitted concurrently')
      return { ...a, certification_id: cert.id }
    })
    await mirror(deps.ch, cert)
    return c.json(out(cert, c.get('principal')), 201)
  })

  const mine = createRoute({
    method: 'get',
    path: '/v1/me/certification',
    summary: 'My latest certification application: status and, when rejected, the reason',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    responses: { 200: { description: 'Application', content: { 'application/json': { schema: CertOut } } }, ...errorResponses(401, 403, 404) },
  })
  app.openapi(mine, async (c) => {
    const account = await deps.accounts.get(accountOf(c.get('principal'))!.id)
    const cert = account?.certification_id ? await deps.certifications.get(account.certification_id) : null
    if (!cert) throw notFound('no application yet')
    return c.json(out(cert, c.get('principal')), 200)
  })

  const queue = createRoute({
    method: 'get',
    path: '/v1/certifications',
    summary: 'The review queue (operators; officials see applications inside their scope), oldest first',
    description: '`region` (default: the caller’s scope) filters by region subtree; `older_than` keeps applications submitted before an instant (ISO-8601 / epoch ms) or longer ago than a duration (`12h`, `3d`).',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: {
      query: z.object({
        status: z.enum(['pending', 'approved', 'rejected']).default('pending'),
        region: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/).optional(),
        kind: z.enum(USER_KINDS).optional(),
        older_than: z.string().max(40).optional(),
        limit: z.coerce.number().int().min(1).max(1000).default(100),
        after: z.string().max(200).optional(),
      }),
    },
    responses: {
      200: { description: 'Applications', content: { 'application/json': { schema: z.object({ entries: z.array(CertOut), next: z.string().nullable() }) } } },
      ...errorResponses(400, 401, 403),
    },
  })
  app.openapi(queue, async (c) => {
    const q = c.req.valid('query')
    const p = c.get('principal')
    const { where, params } = reviewFilter(p, q, 'institution_id')
    if (q.older_than) {
      const d = /^(\d+)([hd])$/.exec(q.older_than)
      const before = d ? Date.now() - Number(d[1]) * (d[2] === 'h' ? 3600_000 : 86_400_000) : parseInstant(q.older_than)
      if (before === null) throw badRequest('older_than: an instant (ISO-8601 with offset, epoch ms) or a duration like 12h or 3d')
      where.push('submitted_at < fromUnixTimestamp64Milli({before:Int64})')
      params.before = before
    }
    if (q.after) {
      const k = cursor.dec(q.after)
      where.push('(submitted_at, id) > (fromUnixTimestamp64Milli({ams:Int64}), {aid:String})')
      Object.assign(params, { ams: k.ms, aid: k.id })
    }
    const r = await deps.ch.query({
      query: `SELECT id FROM certifications FINAL WHERE ${where.join(' AND ')} ORDER BY submitted_at, id LIMIT {limit:UInt32}`,
      query_params: params,
      format: 'JSONEachRow',
    })
    const ids = ((await r.json()) as { id: string }[]).map((x) => x.id)
    const page = ids.slice(0, q.limit)
    // The durable store is the truth; the mirror only finds them. Drop any that changed status since.
    const certs = (await Promise.all(page.map((id) => deps.certifications.get(id)))).filter((x): x is Certification => !!x && x.status === q.status && mayReviewOrSee(p, x))
    const last = page.length ? await deps.certifications.get(page[page.length - 1]) : null
    return c.json({ entries: certs.map((x) => out(x, p)), next: ids.length > q.limit && last ? cursor.enc(last.submitted_at, last.id) : null }, 200)
  })
  const mayReviewOrSee = (p: Principal, x: Certification) => covers(p, { region_code: x.region_code }) || (!!x.institution_id && covers(p, { institution_id: x.institution_id }))

  const decisionRoute = (action: ReviewAction) =>
    createRoute({
      method: 'post',
      path: `/v1/certifications/{id}/${action}`,
      summary: action === 'approve' ? 'Approve an application: the applicant becomes a certified communicator (and, for administrator kinds, gets the scope)' : 'Reject an application with a reason the applicant sees',
      description: 'Only a reviewer whose scope covers the applicant’s town (and, for an administrator kind, the whole scope it grants); never one’s own. Idempotent: deciding again the same way changes nothing; the other way is 409.',
      security: [{ bearer: [] }],
      middleware: [requireStaff()] as const,
      request: {
        params: z.object({ id: z.string().max(64) }),
        body: decisionBody(action),
      },
      responses: { 200: { description: 'Decided', content: { 'application/json': { schema: CertOut } } }, ...errorResponses(400, 401, 403, 404, 409, 503) },
    })

  async function load(p: Principal, id: string): Promise<Certification> {
    const cert = await deps.certifications.get(id)
    // Outside her scope an official learns nothing, not even whether the id exists.
    if (cert ? !mayReview(p, cert) : p.kind !== 'operator') throw forbidden('outside your scope')
    if (!cert) throw notFound('no such application')
    if (accountOf(p)?.id === cert.account_id) throw forbidden('you cannot review your own application')
    return cert
  }

  /** The approval's effects; each idempotent, so approving an approved application again completes a crashed one. */
  async function certify(cert: Certification) {
    const owner = await deps.users.idByPhone(cert.phone)
    const id = owner ?? cert.user_id
    const existing = await deps.users.get(id)
    const { user } = await deps.users.upsert({
      id, phone: cert.phone, real_name: cert.real_name, region_code: cert.region_code, kind: cert.kind, institution_id: cert.institution_id,
      certified_at: existing?.certified_at ?? cert.reviewed_at!,
    })
    await publishCommunicators(deps, [user], 'review')
    const scope = grantedScope(cert.kind, cert.region_code)
    await deps.accounts.update(cert.account_id, (a) => (a.user_id === user.id && JSON.stringify(a.scope) === JSON.stringify(scope) ? null : { ...a, user_id: user.id, scope }))
  }

  app.openapi(decisionRoute('approve'), async (c) => {
    const p = c.get('principal')
    const { id } = c.req.valid('param')
    const { reason } = c.req.valid('json') ?? { reason: '' }
    await load(p, id)
    let cert: Certification
    try {
      cert = await deps.certifications.update(id, (x) => decide(x, 'approve', reason ?? '', p, 'the application was rejected; the applicant may apply again'))
    } catch (e) {
      if (e instanceof CertConflict) throw new ApiError(409, 'conflict', e.message)
      throw e
    }
    await certify(cert)
    await mirror(deps.ch, cert)
    return c.json(out(cert, p), 200)
  })

  app.openapi(decisionRoute('reject'), async (c) => {
    const p = c.get('principal')
    const { id } = c.req.valid('param')
    const { reason } = c.req.valid('json')
    await load(p, id)
    let cert: Certification
    try {
      cert = await deps.certifications.update(id, (x) => decide(x, 'reject', reason, p, 'the application was approved'))
    } catch (e) {
      if (e instanceof CertConflict) throw new ApiError(409, 'conflict', e.message)
      throw e
    }
    await mirror(deps.ch, cert)
    return c.json(out(cert, p), 200)
  })
}
