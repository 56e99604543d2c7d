import type { ClickHouseClient } from '@clickhouse/client'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { badRequest, forbidden, notFound } from '../../core/errors.ts'
import type { RegionTree } from '../../core/regions.ts'
import type { PopulationStore } from '../../core/store/populations.ts'
import { DAY_MS, isoDay, parseDay } from '../../core/time.ts'
import { requireStaff, type AuthEnv, type Principal } from '../middleware/auth/index.ts'
import { mustCover } from '../middleware/scope/index.ts'
import { errorResponses } from '../schemas.ts'

/**
 * KPIs of a region and its children for a range of Shanghai days, from ClickHouse: activity, share
 * volume and points from the `activity_daily` rollup (a materialized view over the facts, so an
 * event counts within a flush of arriving), certified communicators and new registrations from the
 * communicators table, populations from the population store.
 */
export interface KpiDeps {
  ch: ClickHouseClient
  tree: RegionTree
  populations: PopulationStore
}

export const Kpi = z.object({
  region: z.string().nullable(),
  name: z.string(),
  population: z.number().int().nullable(),
  certified: z.number().int(),
  registration_ratio: z.number().nullable(),
  new_registrations: z.number().int(),
  shares: z.number().int(),
  active: z.number().int(),
  activity_rate: z.number().nullable(),
  points: z.number().int(),
})

const CHILD_LEN: Record<number, number> = { 0: 2, 2: 4, 4: 6, 6: 9 }

async function rows<T>(ch: ClickHouseClient, query: string, params: Record<string, unknown>) {
  const r = await ch.query({ query, query_params: params, format: 'JSONEachRow' })
  return (await r.json()) as T[]
}

type Counts = { active: number; shares: number; points: number; certified: number; new_registrations: number }

/** Counts for the region itself (key = region) and for each child (key = child code). */
async function counts(ch: ClickHouseClient, region: string, childLen: number | null, fromMs: number, toEndMs: number) {
  const key = childLen ? 'substring(region_code, 1, {len:UInt8})' : '{r:String}'
  const params = { r: region, len: childLen ?? 0, from: isoDay(fromMs), to: isoDay(toEndMs - 1), fromMs, toMs: toEndMs - 1 }
  const [act, reg] = await Promise.all([
    rows<{ k: string; active: string; shares: string; points: string }>(
      ch,
      `SELECT ${key} AS k, uniqExactMerge(active) AS active, uniqExactMerge(shares) AS shares, sum(points) AS points
       FROM activity_daily WHERE day BETWEEN {from:Date} AND {to:Date} AND startsWith(region_code, {r:String}) GROUP BY k`,
      params,
    ),
    rows<{ k: string; certified: string; fresh: string }>(
      ch,
      `SELECT ${key} AS k,
              countIf(certified_at <= fromUnixTimestamp64Milli({toMs:Int64})) AS certified,
              countIf(certified_at >= fromUnixTimestamp64Milli({fromMs:Int64}) AND certified_at <= fromUnixTimestamp64Milli({toMs:Int64})) AS fresh
       FROM users FINAL WHERE startsWith(region_code, {r:String}) GROUP BY k`,
      params,
    ),
  ])
  const out = new Map<string, Counts>()
  const get = (k: string) => out.get(k) ?? (out.set(k, { active: 0, shares: 0, points: 0, certified: 0, new_registrations: 0 }), out.get(k)!)
  for (const a of act) Object.assign(get(a.k), { active: Number(a.active), shares: Number(a.shares), points: Number(a.points) })
  for (const r of reg) Object.assign(get(r.k), { certified: Number(r.certified), new_registrations: Number(r.fresh) })
  return out
}

export type RegionKpi = z.infer<typeof Kpi>

/** KPIs of a region ('' = national) and of each of its children for [fromMs, toEndMs). */
export async function regionKpis(deps: KpiDeps, region: string, fromMs: number, toEndMs: number): Promise<{ top: RegionKpi; children: RegionKpi[] }> {
  const year = Number(isoDay(toEndMs - 1).slice(0, 4))
  const childLen = CHILD_LEN[region.length] ?? null
  const [self, kids] = await Promise.all([counts(deps.ch, region, null, fromMs, toEndMs), childLen ? counts(deps.ch, region, childLen, fromMs, toEndMs) : null])
  const kpi = async (code: string, name: string, n: Counts | undefined): Promise<RegionKpi> => {
    const c0 = n ?? { active: 0, shares: 0, points: 0, certified: 0, new_registrations: 0 }
    const pop = code ? (await deps.populations.of(code, year))?.population ?? null : null
    return {
      region: code || null,
      name,
      population: pop,
      certified: c0.certified,
      registration_ratio: pop ? c0.certified / pop : null,
      new_registrations: c0.new_registrations,
      shares: c0.shares,
      active: c0.active,
      activity_rate: c0.certified ? c0.active / c0.certified : null,
      points: c0.points,
    }
  }
  const kidRegions = childLen ? deps.tree.children(region || null) : []
  const children = await Promise.all(kidRegions.map((r) => kpi(r.code, r.name, kids?.get(r.code))))
  const top = await kpi(region, region ? deps.tree.get(region)!.name : '全国', self.get(region))
  if (!region && children.length && children.every((k) => k.population !== null)) {
    // The country: the sum of its provinces.
    top.population = children.reduce((a, k) => a + k.population!, 0)
    top.registration_ratio = top.population ? top.certified / top.population : null
  }
  return { top, children }
}

export function defaultRegion(p: Principal): string {
  if (p.kind === 'official') {
    if ('region_code' in p.scope) return p.scope.region_code
    throw forbidden('KPIs are by region; an institution account has no region scope')
  }
  return ''
}

export function mountKpis(app: OpenAPIHono<AuthEnv>, deps: KpiDeps) {
  const route = createRoute({
    method: 'get',
    path: '/v1/kpis',
    summary: 'Live KPIs of a region (default: your scope; national for operators) and its child regions for a range of days',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: {
      query: z.object({
        region: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/, 'must be a GB/T 2260 code').optional(),
        from: z.string().optional(),
        to: z.string().optional(),
      }),
    },
    responses: {
      200: { description: 'KPIs with children', content: { 'application/json': { schema: Kpi.extend({ from: z.string(), to: z.string(), children: z.array(Kpi) }) } } },
      ...errorResponses(400, 401, 403, 404),
    },
  })
  app.openapi(route, async (c) => {
    const q = c.req.valid('query')
    const p = c.get('principal')
    const region = q.region ?? defaultRegion(p)
    if (region) {
      mustCover(p, { region_code: region })
      if (!deps.tree.get(region)) throw notFound(`region ${region} is not a GB/T 2260 division`)
    } else mustCover(p, { national: true })
    const today = isoDay(Date.now())
    const fromMs = parseDay(q.from ?? q.to ?? today)
    const toMs = parseDay(q.to ?? q.from ?? today)
    if (fromMs === null || toMs === null) throw badRequest('from/to: must be days YYYY-MM-DD')
    if (fromMs > toMs) throw badRequest('from: must not be after to')
    const { top, children } = await regionKpis(deps, region, fromMs, toMs + DAY_MS)
    const body = { ...top, from: isoDay(fromMs), to: isoDay(toMs), children }
    return c.json(body, 200)
  })
}
