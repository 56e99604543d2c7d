import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { ApiError, badRequest, notFound } from '../../core/errors.ts'
import type { RegionTree } from '../../core/regions.ts'
import { campaignProblems, campaignStatus, CampaignConflict, Tier, type Campaign, type CampaignStore } from '../../core/store/campaigns.ts'
import { DAY_MS, parseDay, parseInstant, shanghaiIso } from '../../core/time.ts'
import { requireStaff, type AuthEnv, type Principal } from '../middleware/auth/index.ts'
import { covers, mustCover, mustRead, type Target } from '../middleware/scope/index.ts'
import { errorResponses } from '../schemas.ts'

/**
 * Campaigns (issue 4, first part): create, read, list, edit before the start, cancel. An official
 * manages campaigns of regions or institutions inside her scope; apps may read them (to show them in
 * the app). Standings, settlement and exports build on these records.
 */
export interface CampaignsDeps {
  campaigns: CampaignStore
  tree: RegionTree
}

const STATUSES = ['scheduled', 'running', 'settling', 'final', 'cancelled'] as const
const Instant = z.union([z.string(), z.number()])

const Fields = {
  name: z.string().trim().min(1).max(100),
  region_code: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/, 'must be a GB/T 2260 code'),
  institution_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1–64 of [A-Za-z0-9_-]'),
  starts_at: Instant,
  ends_at: Instant,
  metric: z.enum(['shares', 'points']),
  min_score: z.number().int().min(0),
  top_n: z.number().int().min(1).max(1000),
  tiers: z.array(Tier).max(20),
  grace_seconds: z.number().int().min(0).max(7 * 86400),
}
const CampaignInput = z.object({
  ...Fields,
  region_code: Fields.region_code.optional(),
  institution_id: Fields.institution_id.optional(),
  metric: Fields.metric.default('shares'),
  min_score: Fields.min_score.default(0),
  top_n: Fields.top_n.default(100),
  tiers: Fields.tiers.default([]),
  grace_seconds: Fields.grace_seconds.default(3600),
})
/** An edit names only what changes (no defaults). */
const CampaignPatch = z.object(Fields).partial()

const CampaignOut = z.object({
  id: z.string(),
  name: z.string(),
  region_code: z.string().nullable(),
  institution_id: z.string().nullable(),
  starts_at: z.string(),
  ends_at: z.string(),
  metric: z.enum(['shares', 'points']),
  min_score: z.number().int(),
  top_n: z.number().int(),
  tiers: z.array(Tier),
  grace_seconds: z.number().int(),
  status: z.enum(STATUSES),
  created_at: z.string(),
  cancelled_at: z.string().nullable(),
  settled_at: z.string().nullable(),
})

export function campaignJson(c: Campaign, now = Date.now()): z.infer<typeof CampaignOut> {
  return {
    id: c.id, name: c.name, region_code: c.region_code, institution_id: c.institution_id,
    starts_at: shanghaiIso(c.starts_at), ends_at: shanghaiIso(c.ends_at), metric: c.metric, min_score: c.min_score,
    top_n: c.top_n, tiers: c.tiers, grace_seconds: c.grace_seconds, status: campaignStatus(c, now),
    created_at: shanghaiIso(c.created_at), cancelled_at: c.cancelled_at === null ? null : shanghaiIso(c.cancelled_at),
    settled_at: c.settled_at === null ? null : shanghaiIso(c.settled_at),
  }
}

/** A bare day is that Shanghai day's start (for starts_at) or its end (for ends_at, exclusive). */
function instant(field: string, v: string | number, end: boolean): number {
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v)) {
    const d = parseDay(v)
    if (d === null) throw badRequest(`${field}: not a valid day`)
    return end ? d + DAY_MS : d
  }
  const ms = parseInstant(v)
  if (ms === null) throw badRequest(`${field}: must be a day (YYYY-MM-DD), ISO-8601 with an offset or epoch ms`)
  return ms
}

export const campaignTarget = (c: Pick<Campaign, 'region_code' | 'institution_id'>): Target =>
  c.region_code !== null ? { region_code: c.region_code } : c.institution_id !== null ? { institution_id: c.institution_id } : { national: true }

/** Reads a campaign the principal may see (404 unknown, 403 outside scope). */
export async function visibleCampaign(deps: CampaignsDeps, p: Principal, id: string): Promise<Campaign> {
  const c = await deps.campaigns.get(id)
  if (!c) throw notFound('no such campaign')
  mustRead(p, campaignTarget(c))
  return c
}

function validated(deps: CampaignsDeps, p: Principal, body: z.infer<typeof CampaignInput>): Omit<Campaign, 'id' | 'created_at' | 'updated_at' | 'cancelled_at' | 'settled_at' | 'created_by'> {
  if (body.region_code !== undefined && body.institution_id !== undefined) throw badRequest('give region_code or institution_id, not both')
  if (body.region_code !== undefined && !deps.tree.get(body.region_code)) throw badRequest(`region_code: ${body.region_code} is not a GB/T 2260 division`, 'unknown_region')
  const c = {
    name: body.name,
    region_code: body.region_code ?? null,
    institution_id: body.institution_id ?? null,
    starts_at: instant('starts_at', body.starts_at, false),
    ends_at: instant('ends_at', body.ends_at, true),
    metric: body.metric,
    min_score: body.min_score,
    top_n: body.top_n,
    tiers: [...body.tiers].sort((a, b) => a.from_rank - b.from_rank),
    grace_seconds: body.grace_seconds,
  }
  const problems = campaignProblems(c)
  if (problems.length) throw badRequest(problems.join('; '))
  mustCover(p, campaignTarget(c))
  return c
}

const Id = z.object({ id: z.string() })

export function mountCampaigns(app: OpenAPIHono<AuthEnv>, deps: CampaignsDeps) {
  const create = createRoute({
    method: 'post',
    path: '/v1/campaigns',
    summary: 'Create a campaign of a region or institution inside your scope',
    description: 'Times: ISO-8601 with an offset, epoch ms, or a bare day (starts_at: that Shanghai day’s start; ends_at: its end). No region and no institution: national (operators only). Tiers: rank ranges among eligible entries, inside 1..top_n, not overlapping.',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { body: { required: true, content: { 'application/json': { schema: CampaignInput } } } },
    responses: { 201: { description: 'Created', content: { 'application/json': { schema: CampaignOut } } }, ...errorResponses(400, 401, 403) },
  })
  app.openapi(create, async (c) => {
    const p = c.get('principal')
    const input = validated(deps, p, c.req.valid('json'))
    const created = await deps.campaigns.create({ ...input, created_by: p.kind === 'official' ? p.officialId : (p.kind === 'operator' ? p.officialId ?? 'admin' : 'app') })
    return c.json(campaignJson(created), 201)
  })

  const get = createRoute({
    method: 'get',
    path: '/v1/campaigns/{id}',
    summary: 'A campaign and its status',
    security: [{ bearer: [] }],
    request: { params: Id },
    responses: { 200: { description: 'Campaign', content: { 'application/json': { schema: CampaignOut } } }, ...errorResponses(401, 403, 404) },
  })
  app.openapi(get, async (c) => c.json(campaignJson(await visibleCampaign(deps, c.get('principal'), c.req.valid('param').id)), 200))

  const list = createRoute({
    method: 'get',
    path: '/v1/campaigns',
    summary: 'Campaigns you may see, newest first; filters: region (campaigns of that region and below), status',
    security: [{ bearer: [] }],
    request: {
      query: z.object({
        region: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/).optional(),
        status: z.enum(STATUSES).optional(),
        limit: z.coerce.number().int().min(1).max(1000).default(100),
        after: z.string().optional(),
      }),
    },
    responses: { 200: { description: 'Campaigns', content: { 'application/json': { schema: z.object({ entries: z.array(CampaignOut), next: z.string().nullable() }) } } }, ...errorResponses(400, 401) },
  })
  app.openapi(list, async (c) => {
    const q = c.req.valid('query')
    const p = c.get('principal')
    const now = Date.now()
    let all = (await deps.campaigns.list()).filter((x) => p.kind === 'app' || covers(p, campaignTarget(x)))
    if (q.region) all = all.filter((x) => x.region_code !== null && x.region_code.startsWith(q.region!))
    if (q.status) all = all.filter((x) => campaignStatus(x, now) === q.status)
    const start = q.after ? all.findIndex((x) => x.id === q.after) + 1 : 0
    const page = all.slice(start, start + q.limit)
    return c.json({ entries: page.map((x) => campaignJson(x, now)), next: start + q.limit < all.length ? page[page.length - 1].id : null }, 200)
  })

  const edit = createRoute({
    method: 'patch',
    path: '/v1/campaigns/{id}',
    summary: 'Edit a campaign before it starts (409 once it has started)',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { params: Id, body: { required: true, content: { 'application/json': { schema: CampaignPatch } } } },
    responses: { 200: { description: 'Edited', content: { 'application/json': { schema: CampaignOut } } }, ...errorResponses(400, 401, 403, 404, 409) },
  })
  app.openapi(edit, async (c) => {
    const p = c.get('principal')
    const cur = await visibleCampaign(deps, p, c.req.valid('param').id)
    mustCover(p, campaignTarget(cur))
    const patch = c.req.valid('json')
    const keepTarget = patch.region_code === undefined && patch.institution_id === undefined
    const merged = CampaignInput.parse({
      name: cur.name, starts_at: cur.starts_at, ends_at: cur.ends_at, metric: cur.metric, min_score: cur.min_score,
      top_n: cur.top_n, tiers: cur.tiers, grace_seconds: cur.grace_seconds,
      ...(keepTarget ? { region_code: cur.region_code ?? undefined, institution_id: cur.institution_id ?? undefined } : {}),
      ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)),
    })
    const next = validated(deps, p, merged)
    try {
      const saved = await deps.campaigns.update(cur.id, (now) => {
        if (campaignStatus(now) !== 'scheduled') throw new ApiError(409, 'already_started', 'a campaign can be edited only before it starts')
        return { ...now, ...next }
      })
      return c.json(campaignJson(saved), 200)
    } catch (e) {
      if (e instanceof CampaignConflict) throw new ApiError(409, 'conflict', e.message)
      throw e
    }
  })

  const cancel = createRoute({
    method: 'post',
    path: '/v1/campaigns/{id}/cancel',
    summary: 'Cancel a campaign that is not final (idempotent)',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { params: Id },
    responses: { 200: { description: 'Cancelled', content: { 'application/json': { schema: CampaignOut } } }, ...errorResponses(401, 403, 404, 409) },
  })
  app.openapi(cancel, async (c) => {
    const p = c.get('principal')
    const cur = await visibleCampaign(deps, p, c.req.valid('param').id)
    mustCover(p, campaignTarget(cur))
    const saved = await deps.campaigns.update(cur.id, (now) => {
      if (now.settled_at !== null) throw new ApiError(409, 'already_final', 'a settled campaign cannot be cancelled')
      return now.cancelled_at !== null ? now : { ...now, cancelled_at: Date.now() }
    })
    return c.json(campaignJson(saved), 200)
  })
}
