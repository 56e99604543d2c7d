import { pipelineFor } from '../../core/clients/redis.ts'
import type { ClickHouseClient } from '@clickhouse/client'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import type { MiddlewareHandler } from 'hono'
import type { Redis } from 'ioredis'
import { publishCommunicators } from '../../core/communicators.ts'
import { ApiError, badRequest, forbidden, notFound } from '../../core/errors.ts'
import { readInfos } from '../../core/keys.ts'
import type { RegionTree } from '../../core/regions.ts'
import { chTime } from '../../core/schema.ts'
import { boardKey, unpackScore } from '../../core/scoring.ts'
import { maskPhone } from '../../core/sms.ts'
import { INST_ID, INSTITUTION_KINDS, InstConflict, nameKey, type Institution, type InstitutionStore } from '../../core/store/institutions.ts'
import type { User, UserStore } from '../../core/store/users.ts'
import { DAY_MS, isoDay, parseDay, PERIODS, shanghaiIso, type Period } from '../../core/time.ts'
import { accountOf, requireAccount, requireStaff, type AuthEnv, type Principal } from '../middleware/auth/index.ts'
import { covers } from '../middleware/scope/index.ts'
import { errorResponses } from '../schemas.ts'
import { cursor } from '../cursor.ts'
import { rollupCounts } from './kpis.ts'
import { periodOn } from './leaderboards.ts'
import { decide, decisionBody, reviewFilter, type ReviewAction } from '../review-queue.ts'

/**
 * Institutions (机构入驻, seed 004: "科普员认证成功后，可在个人中心点击图标'机构入驻'。完善机构资料，上传营业执照照片，
 * 通过审核完成注册"; "新科普员注册时选择本机构"; "可查看本机构所属科普员概况"). A certified communicator registers
 * her unit; operators and officials whose scope covers its region review it like a certification
 * (pending → approved / rejected with a reason; the applicant edits and resubmits). On approval the
 * applicant becomes its admin. Communicators search approved institutions by name and join one (or
 * leave): her profile changes through the same path as an import or an approval, so Redis, the
 * ClickHouse mirror and the registration facts follow (the change retracts and re-asserts her
 * registration under the new institution). Admins, officials covering its region and operators see
 * its members with their share volume and its KPIs.
 */
export interface InstitutionsDeps {
  institutions: InstitutionStore
  users: UserStore
  redis: Redis
  ch: ClickHouseClient
  tree: RegionTree
}

const REGION = z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/, 'must be a GB/T 2260 code of 2, 4, 6 or 9 digits')
const NAME = z.string().trim().refine((s) => [...s].length >= 1 && [...s].length <= 64, { message: 'must be 1–64 characters' })
/** A reference to an uploaded image (not the image): an http(s) URL or an object-store key. */
const LICENCE = z
  .string()
  .trim()
  .max(512)
  .refine(
    (s) => {
      if (/^https?:\/\//i.test(s)) {
        try {
          const u = new URL(s)
          return !!u.hostname && !u.username && !u.password
        } catch {
          return false
        }
      }
      return /^[A-Za-z0-9][A-Za-z0-9/_.=-]{0,255}$/.test(s) && !s.split('/').includes('..')
    },
    { message: 'must be an http(s) URL or an object key of [A-Za-z0-9/_.=-]' },
  )
const ID_PARAM = z.object({ id: z.string().regex(INST_ID, 'not an institution id') })

const InstOut = z.object({
  id: z.string(),
  name: z.string(),
  region_code: z.string(),
  region_name: z.string(),
  kind: z.string(),
  status: z.enum(['pending', 'approved', 'rejected']),
  reason: z.string().optional(),
  licence_image: z.string().optional(),
  applicant_user_id: z.string().optional(),
  admins: z.array(z.string()).optional(),
  submitted_at: z.string().optional(),
  reviewed_at: z.string().nullable().optional(),
})
type InstView = z.infer<typeof InstOut>

async function rows<T>(ch: ClickHouseClient, query: string, params: Record<string, unknown>) {
  const r = await ch.query({ query, query_params: params, format: 'JSONEachRow' })
  return (await r.json()) as T[]
}

/** A communicator, or an official / operator (people, not apps). */
function requirePerson(): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    if (c.get('principal').kind === 'app') throw forbidden('log in as a communicator or an official')
    return next()
  }
}

export function mountInstitutions(app: OpenAPIHono<AuthEnv>, deps: InstitutionsDeps) {
  const regionName = (code: string) => deps.tree.get(code)?.name ?? ''
  const isApplicant = (p: Principal, i: Institution) => accountOf(p)?.id === i.applicant_account
  const isAdmin = (p: Principal, i: Institution) => {
    const a = accountOf(p)
    return !!a && i.status === 'approved' && i.admins.includes(a.userId)
  }
  /** Reviewers: operators and officials whose region scope covers the institution's region. */
  const mayReview = (p: Principal, i: Institution) => covers(p, { region_code: i.region_code })
  /** Who sees members and KPIs: reviewers, an official scoped to this institution, its admins. */
  const mayManage = (p: Principal, i: Institution) => mayReview(p, i) || covers(p, { institution_id: i.id }) || isAdmin(p, i)

  /** The full record to the applicant, its admins, reviewers; the public card (approved only) to others. */
  function view(i: Institution, p: Principal): InstView {
    const pub: InstView = { id: i.id, name: i.name, region_code: i.region_code, region_name: regionName(i.region_code), kind: i.kind, status: i.status }
    if (!(isApplicant(p, i) || mayManage(p, i))) return pub
    return {
      ...pub, reason: i.reason, licence_image: i.licence_image, applicant_user_id: i.applicant_user, admins: i.admins,
      submitted_at: shanghaiIso(i.submitted_at), reviewed_at: i.reviewed_at === null ? null : shanghaiIso(i.reviewed_at),
    }
  }

  async function mirror(i: Institution) {
    await deps.ch.insert({
      table: 'institutions',
      format: 'JSONEachRow',
      values: [{
        id: i.id, name: i.name, region_code: i.region_code, kind: i.kind, status: i.status, applicant_account: i.applicant_account,
        applicant_user: i.applicant_user, admins: i.admins, submitted_at: chTime(i.submitted_at), updated_at: chTime(i.updated_at),
      }],
    })
  }

  /** Loads an institution for `allowed`; outside it (or unknown) a non-operator learns nothing: 403. */
  async function load(p: Principal, id: string, allowed: (i: Institution) => boolean): Promise<Institution> {
    const i = await deps.institutions.get(id)
    if (i ? !allowed(i) : p.kind !== 'operator') throw forbidden('outside your scope')
    if (!i) throw notFound('no such institution')
    return i
  }

  const conflict = <T>(f: () => Promise<T>): Promise<T> =>
    f().catch((e) => {
      if (e instanceof InstConflict) throw e.code === 'missing' ? notFound(e.message) : new ApiError(409, e.code, e.message)
      throw e
    })

  /** The caller's certified communicator profile (institutions are registered and joined by 科普员 only). */
  async function certifiedSelf(p: Principal): Promise<User> {
    const a = accountOf(p)
    const u = a ? await deps.users.get(a.userId) : null
    if (!u) throw forbidden('certify as a 科普员 first')
    return u
  }

  const checkRegion = (code: string) => {
    if (!deps.tree.get(code)) throw badRequest(`region_code ${code} is not a GB/T 2260 division`, 'unknown_region')
  }

  // ——— registration ———

  const register = createRoute({
    method: 'post',
    path: '/v1/institutions',
    summary: 'Register an institution (机构入驻): name, region, kind, licence image reference → pending review',
    description: 'A certified communicator only. One pending or approved institution per (name, region): 409 otherwise (names compare without case, width or spacing differences). The licence image is a reference (URL or object key) to an upload made elsewhere.',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    request: {
      body: {
        required: true,
        content: { 'application/json': { schema: z.object({ name: NAME, region_code: REGION, kind: z.enum(INSTITUTION_KINDS), licence_image: LICENCE }) } },
      },
    },
    responses: { 201: { description: 'Submitted', content: { 'application/json': { schema: InstOut } } }, ...errorResponses(400, 401, 403, 409) },
  })
  app.openapi(register, async (c) => {
    const body = c.req.valid('json')
    const p = c.get('principal')
    const me = await certifiedSelf(p)
    checkRegion(body.region_code)
    const inst = await conflict(() => deps.institutions.create({ ...body, applicant_account: accountOf(p)!.id, applicant_user: me.id }))
    await mirror(inst)
    return c.json(view(inst, p), 201)
  })

  const edit = createRoute({
    method: 'patch',
    path: '/v1/institutions/{id}',
    summary: 'Edit a pending registration, or resubmit a rejected one (back to pending)',
    description: 'The applicant only, while pending or rejected; 409 once approved or when the new name is taken in the region.',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    request: {
      params: ID_PARAM,
      body: {
        required: true,
        content: { 'application/json': { schema: z.object({ name: NAME.optional(), region_code: REGION.optional(), kind: z.enum(INSTITUTION_KINDS).optional(), licence_image: LICENCE.optional() }) } },
      },
    },
    responses: { 200: { description: 'Resubmitted', content: { 'application/json': { schema: InstOut } } }, ...errorResponses(400, 401, 403, 404, 409) },
  })
  app.openapi(edit, async (c) => {
    const p = c.get('principal')
    const body = c.req.valid('json')
    const cur = await load(p, c.req.valid('param').id, (i) => isApplicant(p, i))
    if (cur.status === 'approved') throw new ApiError(409, 'already_decided', 'the institution is approved')
    if (body.region_code) checkRegion(body.region_code)
    const name = body.name ?? cur.name
    const region = body.region_code ?? cur.region_code
    const key = nameKey(name, region)
    const keyChanged = key !== nameKey(cur.name, cur.region_code)
    // A rejected registration gave its name back: take it (again) before going back to the queue.
    const claim = keyChanged || cur.status === 'rejected'
    if (claim) await conflict(() => deps.institutions.claimName(cur.id, name, region))
    let next: Institution
    try {
      next = await conflict(() =>
        deps.institutions.update(cur.id, (i) => {
          if (i.status === 'approved') throw new ApiError(409, 'already_decided', 'the institution is approved')
          return { ...i, ...body, name, region_code: region, status: 'pending', reason: '', submitted_at: Date.now(), reviewed_at: null, reviewer: '' }
        }),
      )
    } catch (e) {
      if (claim) await deps.institutions.releaseName(cur.id, name, region)
      throw e
    }
    if (keyChanged) await deps.institutions.releaseName(cur.id, cur.name, cur.region_code)
    await mirror(next)
    return c.json(view(next, p), 200)
  })

  // ——— search (registered before /{id} so the static path wins) ———

  const search = createRoute({
    method: 'get',
    path: '/v1/institutions/search',
    summary: 'Search approved institutions by name (substring), optionally within a region',
    description: 'Any logged-in communicator or official. Best matches first: where the text occurs earlier in the name, then shorter names.',
    security: [{ bearer: [] }],
    middleware: [requirePerson()] as const,
    request: {
      query: z.object({
        q: z.string().trim().min(1).max(64),
        region: REGION.optional(),
        limit: z.coerce.number().int().min(1).max(100).default(20),
      }),
    },
    responses: { 200: { description: 'Matches', content: { 'application/json': { schema: z.object({ entries: z.array(InstOut) }) } } }, ...errorResponses(400, 401, 403) },
  })
  app.openapi(search, async (c) => {
    const q = c.req.valid('query')
    const p = c.get('principal')
    const found = await rows<{ id: string }>(
      deps.ch,
      `SELECT id, name FROM institutions FINAL
       WHERE status = 'approved' AND positionCaseInsensitiveUTF8(name, {q:String}) > 0 AND startsWith(region_code, {region:String})
       ORDER BY positionCaseInsensitiveUTF8(name, {q:String}), lengthUTF8(name), name, id LIMIT {limit:UInt32}`,
      { q: q.q, region: q.region ?? '', limit: q.limit },
    )
    const insts = (await Promise.all(found.map((x) => deps.institutions.get(x.id)))).filter((x): x is Institution => x?.status === 'approved')
    return c.json({ entries: insts.map((i) => view(i, p)) }, 200)
  })

  // ——— review ———

  const queue = createRoute({
    method: 'get',
    path: '/v1/institutions',
    summary: 'The institution review queue (operators; officials see registrations inside their scope), oldest first',
    description: '`region` (default: the caller’s scope) filters by region subtree, `kind` by kind, `q` by a name substring, `status` (default pending). Keyset paged.',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: {
      query: z.object({
        status: z.enum(['pending', 'approved', 'rejected']).default('pending'),
        region: REGION.optional(),
        kind: z.enum(INSTITUTION_KINDS).optional(),
        q: z.string().trim().min(1).max(64).optional(),
        limit: z.coerce.number().int().min(1).max(1000).default(100),
        after: z.string().max(300).optional(),
      }),
    },
    responses: {
      200: { description: 'Registrations', content: { 'application/json': { schema: z.object({ entries: z.array(InstOut), next: z.string().nullable() }) } } },
      ...errorResponses(400, 401, 403),
    },
  })
  app.openapi(queue, async (c) => {
    const q = c.req.valid('query')
    const p = c.get('principal')
    const { where, params } = reviewFilter(p, q, 'id')
    if (q.q) {
      where.push('positionCaseInsensitiveUTF8(name, {q:String}) > 0')
      params.q = q.q
    }
    if (q.after) {
      const [ms, id] = cursor.dec<[number, string]>(q.after, (v) => v.length === 2 && typeof v[0] === 'number' && typeof v[1] === 'string')
      where.push('(submitted_at, id) > (fromUnixTimestamp64Milli({ams:Int64}), {aid:String})')
      Object.assign(params, { ams: ms, aid: id })
    }
    const found = await rows<{ id: string; ms: string }>(
      deps.ch,
      `SELECT id, toUnixTimestamp64Milli(submitted_at) AS ms FROM institutions FINAL WHERE ${where.join(' AND ')} ORDER BY submitted_at, id LIMIT {limit:UInt32}`,
      params,
    )
    const page = found.slice(0, q.limit)
    // The durable store is the truth; the mirror only finds them. Drop any that changed since.
    const insts = (await Promise.all(page.map((x) => deps.institutions.get(x.id)))).filter(
      (x): x is Institution => !!x && x.status === q.status && (mayReview(p, x) || covers(p, { institution_id: x.id })),
    )
    const last = page[page.length - 1]
    return c.json({ entries: insts.map((i) => view(i, p)), next: found.length > q.limit && last ? cursor.enc(Number(last.ms), last.id) : null }, 200)
  })

  const decisionRoute = (action: ReviewAction) =>
    createRoute({
      method: 'post',
      path: `/v1/institutions/{id}/${action}`,
      summary: action === 'approve' ? 'Approve a registration: the institution can be joined and its applicant becomes its admin' : 'Reject a registration with a reason the applicant sees (the name is free again)',
      description: 'Operators and officials whose scope covers the institution’s region; never one’s own registration. Deciding again the same way changes nothing; the other way is 409.',
      security: [{ bearer: [] }],
      middleware: [requireStaff()] as const,
      request: {
        params: ID_PARAM,
        body: decisionBody(action),
      },
      responses: { 200: { description: 'Decided', content: { 'application/json': { schema: InstOut } } }, ...errorResponses(400, 401, 403, 404, 409) },
    })
  const loadForReview = async (p: Principal, id: string) => {
    const i = await load(p, id, (x) => mayReview(p, x))
    if (isApplicant(p, i)) throw forbidden('you cannot review your own registration')
    return i
  }

  app.openapi(decisionRoute('approve'), async (c) => {
    const p = c.get('principal')
    const { id } = c.req.valid('param')
    const reason = c.req.valid('json')?.reason ?? ''
    await loadForReview(p, id)
    const inst = await conflict(() =>
      deps.institutions.update(id, (x) => {
        const d = decide(x, 'approve', reason, p, 'the registration was rejected; the applicant may resubmit')
        // Its applicant becomes its first admin.
        return d && (d.admins.includes(d.applicant_user) ? d : { ...d, admins: [d.applicant_user, ...d.admins] })
      }),
    )
    await mirror(inst)
    return c.json(view(inst, p), 200)
  })

  app.openapi(decisionRoute('reject'), async (c) => {
    const p = c.get('principal')
    const { id } = c.req.valid('param')
    const { reason } = c.req.valid('json')
    await loadForReview(p, id)
    const inst = await conflict(() =>
      deps.institutions.update(id, (x) => decide(x, 'reject', reason, p, 'the registration was approved')),
    )
    // Idempotent, so a retry after a crash here gives the name back too.
    await deps.institutions.releaseName(inst.id, inst.name, inst.region_code)
    await mirror(inst)
    return c.json(view(inst, p), 200)
  })

  const one = createRoute({
    method: 'get',
    path: '/v1/institutions/{id}',
    summary: 'An institution: the full registration (status, reason, licence, admins) to its applicant, admins and reviewers; the public card of an approved one to any communicator or official',
    security: [{ bearer: [] }],
    middleware: [requirePerson()] as const,
    request: { params: ID_PARAM },
    responses: { 200: { description: 'Institution', content: { 'application/json': { schema: InstOut } } }, ...errorResponses(401, 403, 404) },
  })
  app.openapi(one, async (c) => {
    const p = c.get('principal')
    const i = await load(p, c.req.valid('param').id, (x) => x.status === 'approved' || isApplicant(p, x) || mayManage(p, x))
    return c.json(view(i, p), 200)
  })

  const mine = createRoute({
    method: 'get',
    path: '/v1/me/institutions',
    summary: 'Institutions I registered (any status, with the reason of a rejection) or administer',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    responses: { 200: { description: 'Institutions', content: { 'application/json': { schema: z.object({ entries: z.array(InstOut) }) } } }, ...errorResponses(401, 403) },
  })
  app.openapi(mine, async (c) => {
    const p = c.get('principal')
    const a = accountOf(p)!
    const found = await rows<{ id: string }>(
      deps.ch,
      `SELECT id FROM institutions FINAL WHERE applicant_account = {a:String} OR has(admins, {u:String}) ORDER BY submitted_at DESC, id LIMIT 200`,
      { a: a.id, u: a.userId },
    )
    const insts = (await Promise.all(found.map((x) => deps.institutions.get(x.id)))).filter((x): x is Institution => !!x && (isApplicant(p, x) || isAdmin(p, x)))
    return c.json({ entries: insts.map((i) => view(i, p)) }, 200)
  })

  // ——— admins ———

  const addAdmin = createRoute({
    method: 'post',
    path: '/v1/institutions/{id}/admins',
    summary: 'Add an admin (a certified communicator, by user id) to an approved institution',
    description: 'Its admins, officials whose scope covers it, operators. Adding an admin again changes nothing.',
    security: [{ bearer: [] }],
    middleware: [requirePerson()] as const,
    request: {
      params: ID_PARAM,
      body: { required: true, content: { 'application/json': { schema: z.object({ user_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/) }) } } },
    },
    responses: { 200: { description: 'Institution with its admins', content: { 'application/json': { schema: InstOut } } }, ...errorResponses(400, 401, 403, 404, 409) },
  })
  app.openapi(addAdmin, async (c) => {
    const p = c.get('principal')
    const { id } = c.req.valid('param')
    const { user_id } = c.req.valid('json')
    const i = await load(p, id, (x) => mayManage(p, x))
    if (i.status !== 'approved') throw new ApiError(409, 'not_approved', 'the institution is not approved')
    if (!(await deps.users.get(user_id))) throw notFound('no such certified communicator')
    const next = await conflict(() => deps.institutions.update(id, (x) => (x.admins.includes(user_id) ? null : { ...x, admins: [...x.admins, user_id] })))
    await mirror(next)
    return c.json(view(next, p), 200)
  })

  const removeAdmin = createRoute({
    method: 'delete',
    path: '/v1/institutions/{id}/admins/{user_id}',
    summary: 'Remove an admin from an institution (an admin may step down)',
    description: 'Its admins, officials whose scope covers it, operators. The last admin cannot be removed (409: add another first); removing one who is no admin changes nothing.',
    security: [{ bearer: [] }],
    middleware: [requirePerson()] as const,
    request: { params: ID_PARAM.extend({ user_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/) }) },
    responses: { 200: { description: 'Institution with its admins', content: { 'application/json': { schema: InstOut } } }, ...errorResponses(400, 401, 403, 404, 409) },
  })
  app.openapi(removeAdmin, async (c) => {
    const p = c.get('principal')
    const { id, user_id } = c.req.valid('param')
    await load(p, id, (x) => mayManage(p, x))
    const next = await conflict(() =>
      deps.institutions.update(id, (x) => {
        if (!x.admins.includes(user_id)) return null
        if (x.admins.length === 1) throw new ApiError(409, 'last_admin', 'the institution’s only admin cannot be removed; add another first')
        return { ...x, admins: x.admins.filter((u) => u !== user_id) }
      }),
    )
    await mirror(next)
    // The caller may have removed herself: she sees what she may now see.
    return c.json(view(next, p), 200)
  })

  // ——— members and KPIs ———

  const Member = z.object({
    user_id: z.string(),
    name: z.string(),
    phone: z.string(),
    region_code: z.string(),
    shares: z.number().int(),
    points: z.number().int(),
  })
  const members = createRoute({
    method: 'get',
    path: '/v1/institutions/{id}/members',
    summary: 'An institution’s communicators with their share volume and points for a period (本机构所属科普员概况)',
    description: 'Its admins, officials whose scope covers its region (or the institution), operators. Members in user id order, keyset paged; `shares`/`points` are what counted on the institution’s boards in the period (while she belonged to it). Phones masked except to operators.',
    security: [{ bearer: [] }],
    middleware: [requirePerson()] as const,
    request: {
      params: ID_PARAM,
      query: z.object({
        period: z.enum(PERIODS as [Period, ...Period[]]).default('all'),
        date: z.string().optional(),
        limit: z.coerce.number().int().min(1).max(1000).default(100),
        after: z.string().max(200).optional(),
      }),
    },
    responses: {
      200: {
        description: 'Members',
        content: {
          'application/json': {
            schema: z.object({
              institution_id: z.string(), period: z.string(), from: z.string().nullable(), to: z.string().nullable(), total: z.number().int(),
              entries: z.array(Member), next: z.string().nullable(),
            }),
          },
        },
      },
      ...errorResponses(400, 401, 403, 404),
    },
  })
  app.openapi(members, async (c) => {
    const p = c.get('principal')
    const q = c.req.valid('query')
    const i = await load(p, c.req.valid('param').id, (x) => mayManage(p, x))
    const range = periodOn(q.period, q.date)
    const after = q.after ? cursor.dec<[string]>(q.after, (v) => v.length === 1 && typeof v[0] === 'string')[0] : ''
    const [found, [{ n }]] = await Promise.all([
      rows<{ id: string; phone: string; real_name: string; region_code: string }>(
        deps.ch,
        `SELECT id, phone, real_name, region_code FROM users FINAL WHERE institution_id = {inst:String} AND id > {after:String} ORDER BY id LIMIT {limit:UInt32}`,
        { inst: i.id, after, limit: q.limit + 1 },
      ),
      rows<{ n: string }>(deps.ch, 'SELECT count() AS n FROM users FINAL WHERE institution_id = {inst:String}', { inst: i.id }),
    ])
    const page = found.slice(0, q.limit)
    // The mirror finds them; Redis (what counting uses) confirms she still belongs.
    const infos = await readInfos(deps.redis, page.map((x) => x.id))
    const scope = { kind: 'institution', id: i.id } as const
    const pipe = pipelineFor(deps.redis)
    for (const m of page) pipe.zscore(boardKey('shares', scope, range.key), m.id).zscore(boardKey('points', scope, range.key), m.id)
    const scores = ((await pipe.exec()) ?? []).map(([err, v]) => {
      if (err) throw err
      return v === null ? 0 : unpackScore(range.period, range.startMs, Number(v)).count
    })
    const entries = page.flatMap((m, k) => {
      const info = infos.get(m.id)
      if (info && info.institution_id !== i.id) return []
      return [{
        user_id: m.id, name: info?.name ?? m.real_name, phone: p.kind === 'operator' ? m.phone : maskPhone(m.phone),
        region_code: info?.region_code ?? m.region_code, shares: scores[2 * k], points: scores[2 * k + 1],
      }]
    })
    const last = page[page.length - 1]
    return c.json({
      institution_id: i.id, period: range.period, from: range.from, to: range.to, total: Number(n),
      entries, next: found.length > q.limit && last ? cursor.enc(last.id) : null,
    }, 200)
  })

  const kpis = createRoute({
    method: 'get',
    path: '/v1/institutions/{id}/kpis',
    summary: 'An institution’s KPIs for a range of days: certified members, new registrations, shares, active, points',
    description: 'Its admins, officials whose scope covers its region (or the institution), operators. `from`/`to` are Shanghai days (default today).',
    security: [{ bearer: [] }],
    middleware: [requirePerson()] as const,
    request: { params: ID_PARAM, query: z.object({ from: z.string().optional(), to: z.string().optional() }) },
    responses: {
      200: {
        description: 'KPIs',
        content: {
          'application/json': {
            schema: z.object({
              institution_id: z.string(), name: z.string(), region_code: z.string(), from: z.string(), to: z.string(),
              certified: z.number().int(), new_registrations: z.number().int(), shares: z.number().int(), active: z.number().int(),
              activity_rate: z.number().nullable(), points: z.number().int(),
            }),
          },
        },
      },
      ...errorResponses(400, 401, 403, 404),
    },
  })
  app.openapi(kpis, async (c) => {
    const p = c.get('principal')
    const q = c.req.valid('query')
    const i = await load(p, c.req.valid('param').id, (x) => mayManage(p, x))
    const today = isoDay(Date.now())
    const fromMs = parseDay(q.from ?? q.to ?? today)
    const toMs = parseDay(q.to ?? q.from ?? today)
    if (fromMs === null || toMs === null) throw badRequest('from/to: must be days YYYY-MM-DD')
    if (fromMs > toMs) throw badRequest('from: must not be after to')
    const from = isoDay(fromMs)
    const to = isoDay(toMs + DAY_MS - 1)
    const n = (await rollupCounts(deps.ch, [''], i.id, from, to)).get(`|${i.id}`)
    const k = { certified: n?.certified ?? 0, new_registrations: n?.new_registrations ?? 0, shares: n?.shares ?? 0, active: n?.active ?? 0, points: n?.points ?? 0 }
    return c.json({ institution_id: i.id, name: i.name, region_code: i.region_code, from, to, ...k, activity_rate: k.certified ? k.active / k.certified : null }, 200)
  })

  // ——— joining ———

  const MyInst = z.object({ institution_id: z.string().nullable(), institution: InstOut.nullable() })
  const myInst = async (u: User, p: Principal): Promise<z.infer<typeof MyInst>> => {
    const i = u.institution_id ? await deps.institutions.get(u.institution_id) : null
    return { institution_id: u.institution_id || null, institution: i ? view(i, p) : null }
  }
  /** Her profile with another institution, through the path an import or approval takes. */
  async function setInstitution(u: User, institutionId: string): Promise<User> {
    const { user } = await deps.users.upsert({
      id: u.id, phone: u.phone, real_name: u.real_name, region_code: u.region_code, kind: u.kind, institution_id: institutionId, certified_at: u.certified_at,
    })
    await publishCommunicators(deps, [user], 'institution')
    return user
  }

  const getMine = createRoute({
    method: 'get',
    path: '/v1/me/institution',
    summary: 'The institution I belong to (null when none)',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    responses: { 200: { description: 'Membership', content: { 'application/json': { schema: MyInst } } }, ...errorResponses(401, 403) },
  })
  app.openapi(getMine, async (c) => {
    const p = c.get('principal')
    return c.json(await myInst(await certifiedSelf(p), p), 200)
  })

  const join = createRoute({
    method: 'post',
    path: '/v1/me/institution',
    summary: 'Join an approved institution (选择所属机构); replaces the one I belonged to',
    description: 'A certified communicator only. Her registration moves to the institution (retracted from the previous one, asserted for this one) and her events count on its boards from now on.',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    request: { body: { required: true, content: { 'application/json': { schema: z.object({ institution_id: z.string().regex(INST_ID, 'not an institution id') }) } } } },
    responses: { 200: { description: 'Joined', content: { 'application/json': { schema: MyInst } } }, ...errorResponses(400, 401, 403, 404) },
  })
  app.openapi(join, async (c) => {
    const p = c.get('principal')
    const { institution_id } = c.req.valid('json')
    const me = await certifiedSelf(p)
    const inst = await deps.institutions.get(institution_id)
    if (inst?.status !== 'approved') throw notFound('no such approved institution')
    const user = me.institution_id === inst.id ? me : await setInstitution(me, inst.id)
    return c.json(await myInst(user, p), 200)
  })

  const leave = createRoute({
    method: 'delete',
    path: '/v1/me/institution',
    summary: 'Leave my institution',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    responses: { 200: { description: 'Left', content: { 'application/json': { schema: MyInst } } }, ...errorResponses(401, 403) },
  })
  app.openapi(leave, async (c) => {
    const p = c.get('principal')
    const me = await certifiedSelf(p)
    const user = me.institution_id ? await setInstitution(me, '') : me
    return c.json(await myInst(user, p), 200)
  })
}
