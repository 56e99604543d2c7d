import type { ClickHouseClient } from '@clickhouse/client'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import ExcelJS from 'exceljs'
import type { Redis } from 'ioredis'
import type { CampaignJobs } from '../../aggregator/campaign-jobs.ts'
import { keys, readInfos } from '../../core/keys.ts'
import { unpackCampaignScore } from '../../core/scoring.ts'
import { prizeOf } from '../../core/store/campaigns.ts'
import { maskPhone } from './users.ts'
import type { UserStore } from '../../core/store/users.ts'
import { regionPath, toCsv, unitNames } from '../csv.ts'
import { BoardEntry, displayName } from './leaderboards.ts'
import { encodeCursor, pageBoard } from '../../core/board-reads.ts'
import { ApiError, badRequest, notFound } from '../../core/errors.ts'
import type { RegionTree } from '../../core/regions.ts'
import { campaignProblems, campaignStatus, CampaignConflict, Tier, type Campaign, type CampaignStore, type NewCampaign } from '../../core/store/campaigns.ts'
import { DAY_MS, parseDay, parseInstant, shanghaiIso } from '../../core/time.ts'
import { requireStaff, type AuthEnv, type Principal } from '../middleware/auth/index.ts'
import { covers, institutionTarget, mustCover, mustRead, type Target } from '../middleware/scope/index.ts'
import type { InstitutionStore } from '../../core/store/institutions.ts'
import { errorResponses } from '../schemas.ts'

/**
 * Campaigns (issue 4, first part): create, read, list, edit before the start, cancel. An official
 * manages campaigns of regions or institutions inside her scope; apps may read them (to show them in
 * the app). Standings, settlement and exports build on these records.
 */
export interface CampaignsDeps {
  campaigns: CampaignStore
  tree: RegionTree
  institutions: Pick<InstitutionStore, 'get'>
  users: Pick<UserStore, 'get'>
  redis: Redis
  ch: ClickHouseClient
  /** Settlement on request (the same job the aggregators run when a campaign's cutoff passes). */
  jobs: Pick<CampaignJobs, 'settle'>
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
  /** Adding what happened before the campaign was created: pending, then done. */
  backfill: z.enum(['pending', 'done']),
})

export function campaignJson(c: Campaign, now = Date.now()): z.infer<typeof CampaignOut> {
  return {
    id: c.id, name: c.name, region_code: c.region_code, institution_id: c.institution_id,
    starts_at: shanghaiIso(c.starts_at), ends_at: shanghaiIso(c.ends_at), metric: c.metric, min_score: c.min_score,
    top_n: c.top_n, tiers: c.tiers, grace_seconds: c.grace_seconds, status: campaignStatus(c, now),
    created_at: shanghaiIso(c.created_at), cancelled_at: c.cancelled_at === null ? null : shanghaiIso(c.cancelled_at),
    settled_at: c.settled_at === null ? null : shanghaiIso(c.settled_at),
    backfill: c.backfilled_at === null ? 'pending' : 'done',
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

/** What a campaign is about, for scope checks: its region, its institution (with the institution's region) or the nation. */
export const campaignTarget = (deps: Pick<CampaignsDeps, 'institutions'>, c: Pick<Campaign, 'region_code' | 'institution_id'>): Promise<Target> =>
  Promise.resolve(c.region_code !== null ? { region_code: c.region_code } : c.institution_id !== null ? institutionTarget(c.institution_id, deps.institutions) : { national: true })

/** Reads a campaign the principal may see (404 unknown, 403 outside scope). */
export async function visibleCampaign(deps: CampaignsDeps, p: Principal, id: string): Promise<Campaign> {
  const c = await deps.campaigns.get(id)
  if (!c) throw notFound('no such campaign')
  mustRead(p, await campaignTarget(deps, c))
  return c
}

/** Reads a campaign the principal may change (404 unknown, 403 outside scope): one target lookup for both checks. */
async function coveredCampaign(deps: CampaignsDeps, p: Principal, id: string): Promise<Campaign> {
  const c = await deps.campaigns.get(id)
  if (!c) throw notFound('no such campaign')
  const target = await campaignTarget(deps, c)
  mustRead(p, target)
  mustCover(p, target)
  return c
}

async function validated(deps: CampaignsDeps, p: Principal, body: z.infer<typeof CampaignInput>): Promise<Omit<NewCampaign, 'created_by'>> {
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
  mustCover(p, await campaignTarget(deps, c))
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
    const input = await validated(deps, p, c.req.valid('json'))
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
    if (q.region && p.kind === 'official') mustCover(p, { region_code: q.region }) // as the review queues: not an empty list
    const listed = await deps.campaigns.list()
    const seen = await Promise.all(listed.map(async (x) => p.kind === 'app' || covers(p, await campaignTarget(deps, x))))
    let all = listed.filter((_, i) => seen[i])
    if (q.region) all = all.filter((x) => x.region_code !== null && x.region_code.startsWith(q.region!))
    if (q.status) all = all.filter((x) => campaignStatus(x, now) === q.status)
    // Keyset: newest first, then id; the cursor is the last entry's (created_at, id), so a page
    // never repeats or skips an entry even when the list changed in between.
    let rest = all
    if (q.after) {
      const m = /^(\d+)\.([A-Za-z0-9_-]{1,64})$/.exec(q.after)
      if (!m) throw badRequest('after: not a cursor this service returned', 'invalid_cursor')
      const [at, id] = [Number(m[1]), m[2]]
      rest = all.filter((x) => x.created_at < at || (x.created_at === at && x.id > id))
    }
    const page = rest.slice(0, q.limit)
    const last = page[page.length - 1]
    return c.json({ entries: page.map((x) => campaignJson(x, now)), next: rest.length > q.limit ? `${last.created_at}.${last.id}` : null }, 200)
  })

  const edit = createRoute({
    method: 'patch',
    path: '/v1/campaigns/{id}',
    summary: 'Edit a campaign before it starts (409 once it has started; 400 starts_in_past for a start moved into the past)',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { params: Id, body: { required: true, content: { 'application/json': { schema: CampaignPatch } } } },
    responses: { 200: { description: 'Edited', content: { 'application/json': { schema: CampaignOut } } }, ...errorResponses(400, 401, 403, 404, 409) },
  })
  app.openapi(edit, async (c) => {
    const p = c.get('principal')
    const cur = await coveredCampaign(deps, p, c.req.valid('param').id)
    const patch = c.req.valid('json')
    const keepTarget = patch.region_code === undefined && patch.institution_id === undefined
    const merged = CampaignInput.parse({
      name: cur.name, starts_at: cur.starts_at, ends_at: cur.ends_at, metric: cur.metric, min_score: cur.min_score,
      top_n: cur.top_n, tiers: cur.tiers, grace_seconds: cur.grace_seconds,
      ...(keepTarget ? { region_code: cur.region_code ?? undefined, institution_id: cur.institution_id ?? undefined } : {}),
      ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)),
    })
    const next = await validated(deps, p, merged)
    // The catch-up count over past events runs once, for the campaign as created; an edit starts
    // nothing new, so it may not reach into the past.
    if (campaignStatus(cur) === 'scheduled' && next.starts_at < Date.now()) throw badRequest('starts_at: an edit cannot move the start into the past; cancel the campaign and create it anew (a new campaign counts its past events)', 'starts_in_past')
    try {
      const saved = await deps.campaigns.update(cur.id, (now) => {
        if (campaignStatus(now) !== 'scheduled') throw new ApiError(409, 'already_started', 'a campaign can be edited only before it starts')
        return { ...now, ...next, cutoff_at: next.ends_at + next.grace_seconds * 1000 }
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
    const cur = await coveredCampaign(deps, p, c.req.valid('param').id)
    const saved = await deps.campaigns.update(cur.id, (now) => {
      if (now.settled_at !== null) throw new ApiError(409, 'already_final', 'a settled campaign cannot be cancelled')
      return now.cancelled_at !== null ? now : { ...now, cancelled_at: Date.now() }
    })
    return c.json(campaignJson(saved), 200)
  })

  // A leaderboard entry, with the basic task and the prize.
  const Standing = BoardEntry.extend({ eligible: z.boolean(), prize: z.string().nullable() })
  type Standing = z.infer<typeof Standing> & { _cursor: string }

  /** Live entries from the campaign's board (Redis), ranks from `firstRank`. */
  async function liveEntries(c: Campaign, flat: string[], firstRank: number, p: Principal): Promise<Standing[]> {
    const pairs: [string, number][] = []
    for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i], Number(flat[i + 1])])
    const infos = await readInfos(deps.redis, pairs.map(([u]) => u))
    return pairs.map(([user_id, stored], i) => {
      const { count, reachedAt } = unpackCampaignScore(c, stored)
      const info = infos.get(user_id)
      const rank = firstRank + i
      const eligible = count >= c.min_score
      return {
        rank, user_id, name: info ? displayName(info.name, p) : '', institution_id: info?.institution_id ?? null, region_code: info?.region_code ?? null,
        score: count, reached_at: shanghaiIso(reachedAt), eligible, prize: eligible && rank <= c.top_n ? prizeOf(c, rank) : null,
        _cursor: encodeCursor(stored, user_id, keys.campaignBoard(c.id)),
      }
    })
  }

  /** Frozen entries of a settled campaign (ClickHouse), ranks after `afterRank`. */
  async function finalEntries(c: Campaign, afterRank: number, limit: number, p: Principal, only?: string[]): Promise<{ total: number; entries: Standing[] }> {
    const where = only ? 'campaign_id = {id:String} AND has({only:Array(String)}, user_id)' : 'campaign_id = {id:String} AND rank > {after:UInt32}'
    const [page, count] = await Promise.all([
      deps.ch.query({
        query: `SELECT rank, user_id, name, institution_id, region_code, score, toUnixTimestamp64Milli(reached_at) AS reached, eligible, prize
                FROM campaign_results FINAL WHERE ${where} ORDER BY rank LIMIT {limit:UInt32}`,
        query_params: { id: c.id, after: afterRank, limit, only: only ?? [] },
        format: 'JSONEachRow',
      }),
      deps.ch.query({ query: 'SELECT count() AS n FROM campaign_results FINAL WHERE campaign_id = {id:String}', query_params: { id: c.id }, format: 'JSONEachRow' }),
    ])
    const rows = (await page.json()) as { rank: number; user_id: string; name: string; institution_id: string; region_code: string; score: string; reached: string; eligible: boolean; prize: string }[]
    return {
      total: Number(((await count.json()) as { n: string }[])[0].n),
      entries: rows.map((r) => ({
        rank: r.rank, user_id: r.user_id, name: displayName(r.name, p), institution_id: r.institution_id || null, region_code: r.region_code || null,
        score: Number(r.score), reached_at: shanghaiIso(Number(r.reached)), eligible: r.eligible, prize: r.prize || null, _cursor: `r${r.rank}`,
      })),
    }
  }

  async function standingsPage(c: Campaign, limit: number, after: string | undefined, p: Principal): Promise<{ total: number; entries: Standing[] }> {
    if (campaignStatus(c) === 'final') {
      if (after !== undefined && !/^r\d+$/.test(after)) throw badRequest('after: not a cursor this service returned', 'invalid_cursor')
      return finalEntries(c, after ? Number(after.slice(1)) : 0, limit, p)
    }
    const key = keys.campaignBoard(c.id)
    const [total, page] = await Promise.all([deps.redis.zcard(key), pageBoard(deps.redis, key, limit, after)])
    return { total, entries: await liveEntries(c, page.flat, page.firstRank, p) }
  }

  const StandingsOut = z.object({ campaign_id: z.string(), status: z.enum(STATUSES), total: z.number().int(), entries: z.array(Standing), next: z.string().nullable() })
  const standings = createRoute({
    method: 'get',
    path: '/v1/campaigns/{id}/standings',
    summary: 'Standings: live while running (fed by the aggregator), frozen once final',
    description: 'Unique ranks: score desc, then earlier reached_at (event time), then user_id. `eligible`: the score reaches min_score; `prize`: the tier of the rank, for eligible entries within top_n.',
    security: [{ bearer: [] }],
    request: { params: Id, query: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100), after: z.string().optional() }) },
    responses: { 200: { description: 'A page of standings', content: { 'application/json': { schema: StandingsOut } } }, ...errorResponses(400, 401, 403, 404) },
  })
  app.openapi(standings, async (c) => {
    const p = c.get('principal')
    const q = c.req.valid('query')
    const camp = await visibleCampaign(deps, p, c.req.valid('param').id)
    const { total, entries } = await standingsPage(camp, q.limit, q.after, p)
    const last = entries[entries.length - 1]
    const next = last && last.rank < total && entries.length === q.limit ? last._cursor : null
    return c.json({ campaign_id: camp.id, status: campaignStatus(camp), total, entries: entries.map(({ _cursor, ...e }) => e), next }, 200)
  })

  const mine = createRoute({
    method: 'get',
    path: '/v1/campaigns/{id}/standings/users/{user_id}',
    summary: 'A communicator’s standing in a campaign, with neighbours',
    security: [{ bearer: [] }],
    request: { params: Id.extend({ user_id: z.string() }), query: z.object({ around: z.coerce.number().int().min(0).max(100).default(5) }) },
    responses: {
      200: { description: 'Standing (rank null when nothing counted)', content: { 'application/json': { schema: z.object({ rank: z.number().int().nullable(), score: z.number().int(), total: z.number().int(), entries: z.array(Standing) }) } } },
      ...errorResponses(400, 401, 403, 404),
    },
  })
  app.openapi(mine, async (c) => {
    const p = c.get('principal')
    const { id, user_id } = c.req.valid('param')
    const { around } = c.req.valid('query')
    const camp = await visibleCampaign(deps, p, id)
    const strip = (es: Standing[]) => es.map(({ _cursor, ...e }) => e)
    // No standing: a communicator with nothing counted (rank null), or no communicator at all (404, as on leaderboards).
    const mustExist = async () => {
      if (!(await readInfos(deps.redis, [user_id])).get(user_id) && !(await deps.users.get(user_id))) throw notFound('no such communicator')
    }
    if (campaignStatus(camp) === 'final') {
      const me = (await finalEntries(camp, 0, 1, p, [user_id])).entries[0]
      if (!me) {
        await mustExist()
        return c.json({ rank: null, score: 0, total: (await finalEntries(camp, 0, 1, p)).total, entries: [] }, 200)
      }
      const page = await finalEntries(camp, Math.max(0, me.rank - around - 1), 2 * around + 1, p)
      return c.json({ rank: me.rank, score: me.score, total: page.total, entries: strip(page.entries) }, 200)
    }
    const key = keys.campaignBoard(camp.id)
    const [rank, total] = await Promise.all([deps.redis.zrank(key, user_id), deps.redis.zcard(key)])
    if (rank === null) {
      await mustExist()
      return c.json({ rank: null, score: 0, total, entries: [] }, 200)
    }
    const from = Math.max(0, rank - around)
    const entries = await liveEntries(camp, await deps.redis.zrange(key, from, String(rank + around), 'WITHSCORES'), from + 1, p)
    return c.json({ rank: rank + 1, score: entries.find((e) => e.user_id === user_id)?.score ?? 0, total, entries: strip(entries) }, 200)
  })

  /** Every standing with its export columns (phones masked), header first. */
  async function exportRows(camp: Campaign, p: Principal): Promise<(string | number)[][]> {
    const all: Standing[] = []
    let after: string | undefined
    for (;;) {
      const page = await standingsPage(camp, 1000, after, p)
      all.push(...page.entries)
      if (page.entries.length < 1000 || all.length >= page.total) break
      after = page.entries[page.entries.length - 1]._cursor
    }
    const phones = new Map<string, string>()
    for (let i = 0; i < all.length; i += 10_000) {
      const r = await deps.ch.query({ query: 'SELECT id, phone FROM users FINAL WHERE has({ids:Array(String)}, id)', query_params: { ids: all.slice(i, i + 10_000).map((e) => e.user_id) }, format: 'JSONEachRow' })
      for (const u of (await r.json()) as { id: string; phone: string }[]) phones.set(u.id, u.phone)
    }
    const unit = await unitNames(deps.institutions, all.map((e) => e.institution_id))
    const rows: (string | number)[][] = [['名次', '姓名', '单位', '地区', '手机号', camp.metric === 'shares' ? '转发量' : '积分', '达成时间', '完成基础任务', '奖项']]
    for (const e of all) {
      const region = e.region_code ? regionPath(deps.tree, e.region_code) : ''
      rows.push([e.rank, e.name, unit(e.institution_id), region, maskPhone(phones.get(e.user_id) ?? ''), e.score, e.reached_at, e.eligible ? '是' : '否', e.prize ?? ''])
    }
    return rows
  }

  for (const ext of ['csv', 'xlsx'] as const) {
    const route = createRoute({
      method: 'get',
      path: `/v1/campaigns/{id}/standings.${ext}`,
      summary: ext === 'csv' ? 'Standings as CSV (UTF-8 with BOM for Excel; phone numbers masked)' : 'Standings as an Excel workbook (XLSX; phone numbers masked)',
      security: [{ bearer: [] }],
      middleware: [requireStaff()] as const,
      request: { params: Id },
      responses: {
        200: { description: ext.toUpperCase(), content: ext === 'csv' ? { 'text/csv': { schema: z.string() } } : { 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet': { schema: z.string() } } },
        ...errorResponses(401, 403, 404),
      },
    })
    app.openapi(route, async (c) => {
      const p = c.get('principal')
      const camp = await coveredCampaign(deps, p, c.req.valid('param').id)
      const rows = await exportRows(camp, p)
      c.header('content-disposition', `attachment; filename="campaign-${camp.id}.${ext}"`)
      if (ext === 'csv') {
        c.header('content-type', 'text/csv; charset=utf-8')
        return c.body(toCsv(rows), 200) as never
      }
      const book = new ExcelJS.Workbook()
      const sheet = book.addWorksheet(camp.name.slice(0, 31).replace(/[\\/?*[\]:]/g, ' ') || 'standings')
      sheet.addRows(rows)
      sheet.getRow(1).font = { bold: true }
      sheet.views = [{ state: 'frozen', ySplit: 1 }]
      const buf = Buffer.from(await book.xlsx.writeBuffer())
      c.header('content-type', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')
      return c.body(buf, 200) as never
    })
  }

  const settle = createRoute({
    method: 'post',
    path: '/v1/campaigns/{id}/settle',
    summary: 'Settle now (after the end, without waiting for the grace period); idempotent',
    description: 'Campaigns also settle by themselves at ends_at + grace. 409 before the end or when cancelled.',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { params: Id },
    responses: { 200: { description: 'Final', content: { 'application/json': { schema: CampaignOut } } }, ...errorResponses(401, 403, 404, 409) },
  })
  app.openapi(settle, async (c) => {
    const p = c.get('principal')
    const camp = await coveredCampaign(deps, p, c.req.valid('param').id)
    const st = campaignStatus(camp)
    if (st === 'final') return c.json(campaignJson(camp), 200)
    if (st === 'cancelled') throw new ApiError(409, 'cancelled', 'a cancelled campaign is not settled')
    if (Date.now() < camp.ends_at) throw new ApiError(409, 'not_ended', 'the campaign’s window has not ended yet')
    await deps.jobs.settle(camp.id, { now: true })
    const after = (await deps.campaigns.get(camp.id))!
    if (campaignStatus(after) !== 'final') throw new ApiError(409, 'settling', 'another process is settling this campaign; retry shortly', { 'Retry-After': '2' })
    return c.json(campaignJson(after), 200)
  })
}
