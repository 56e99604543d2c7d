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
 * KPIs of a region and its children for a range of Shanghai days, from ClickHouse rollups that
 * materialized views keep as facts arrive (so an event counts within a flush of arriving): activity,
 * share volume and points from `kpi_daily`/`kpi_monthly`, certified communicators and new
 * registrations from `registrations_daily`; populations from the population store.
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

export type Counts = { active: number; shares: number; points: number; certified: number; new_registrations: number }
export const NO_COUNTS: Counts = { active: 0, shares: 0, points: 0, certified: 0, new_registrations: 0 }

/**
 * [from, to] (inclusive Shanghai days, as YYYY-MM-DD) split into whole months, read from the
 * monthly rollup, and the days before and after them, read from the daily one.
 */
export function splitRange(from: string, to: string): { days: [string, string][]; months: [string, string] | null } {
  const monthStart = (d: string) => d.slice(0, 8) + '01'
  const nextMonth = (d: string) => {
    const [y, m] = d.split('-').map(Number)
    return m === 12 ? `${y + 1}-01-01` : `${y}-${String(m + 1).padStart(2, '0')}-01`
  }
  const prevDay = (d: string) => isoDay(parseDay(d)! - DAY_MS)
  const first = from === monthStart(from) ? from : nextMonth(from) // first whole month
  const endOfTo = nextMonth(to) // the month after `to`'s
  const last = prevDay(endOfTo) === to ? monthStart(to) : prevDay(monthStart(to)).slice(0, 8) + '01' // last whole month
  if (first > to || last < first) return { days: [[from, to]], months: null }
  const days: [string, string][] = []
  if (from < first) days.push([from, prevDay(first)])
  const afterLast = nextMonth(last)
  if (afterLast <= to) days.push([afterLast, to])
  return { days, months: [first, last] }
}

/**
 * Counts per (region_code, institution_id) from the rollups, for rows already at those levels:
 * `regions` are exact codes ('' = national); `institution` '' means all institutions, a value one
 * institution, and null every institution separately. Inclusive days.
 */
export async function rollupCounts(ch: ClickHouseClient, regions: string[], institution: string | null, from: string, to: string): Promise<Map<string, Counts>> {
  const { days, months } = splitRange(from, to)
  const instWhere = institution === null ? "institution_id != ''" : 'institution_id = {inst:String}'
  const dayWhere = days.length ? days.map((_, i) => `day BETWEEN {d${i}f:Date} AND {d${i}t:Date}`).join(' OR ') : '0'
  const params: Record<string, unknown> = { codes: regions, inst: institution ?? '', from, to, mf: months?.[0] ?? '1970-01-01', mt: months?.[1] ?? '1970-01-01' }
  days.forEach(([f, t], i) => Object.assign(params, { [`d${i}f`]: f, [`d${i}t`]: t }))
  const [act, reg] = await Promise.all([
    rows<{ r: string; i: string; active: string; shares: string; points: string }>(
      ch,
      `SELECT r, i, groupBitmapMerge(active) AS active, groupBitmapMerge(shares) AS shares, sum(points) AS points FROM (
         SELECT region_code AS r, institution_id AS i, active, shares, points FROM kpi_daily
          WHERE region_code IN {codes:Array(String)} AND ${instWhere} AND (${dayWhere})
         UNION ALL
         SELECT region_code AS r, institution_id AS i, active, shares, points FROM kpi_monthly
          WHERE region_code IN {codes:Array(String)} AND ${instWhere} AND ${months ? 'month BETWEEN {mf:Date} AND {mt:Date}' : '0'}
       ) GROUP BY r, i`,
      params,
    ),
    rows<{ r: string; i: string; certified: string; fresh: string }>(
      ch,
      `SELECT region_code AS r, institution_id AS i, sumIf(delta, day <= {to:Date}) AS certified, sumIf(delta, day >= {from:Date} AND day <= {to:Date}) AS fresh
       FROM registrations_daily WHERE region_code IN {codes:Array(String)} AND ${instWhere} GROUP BY r, i`,
      params,
    ),
  ])
  const out = new Map<string, Counts>()
  const get = (r: string, i: string) => {
    const k = `${r}|${i}`
    return out.get(k) ?? (out.set(k, { ...NO_COUNTS }), out.get(k)!)
  }
  for (const a of act) Object.assign(get(a.r, a.i), { active: Number(a.active), shares: Number(a.shares), points: Number(a.points) })
  for (const r of reg) Object.assign(get(r.r, r.i), { certified: Number(r.certified), new_registrations: Number(r.fresh) })
  return out
}

/**
 * Counts of one region (all institutions) per day or per month over inclusive days [from, to]: one
 * grouped read of the daily or monthly rollup and one of the registrations, instead of one KPI query
 * per bucket. Keys are the bucket's first day (YYYY-MM-DD).
 */
export async function seriesCounts(ch: ClickHouseClient, region: string, by: 'day' | 'month', from: string, to: string): Promise<Map<string, Counts>> {
  const table = by === 'day' ? 'kpi_daily' : 'kpi_monthly'
  const col = by === 'day' ? 'day' : 'month'
  const params = { r: region, from, to, mfrom: from.slice(0, 8) + '01' }
  const [act, reg] = await Promise.all([
    rows<{ b: string; active: string; shares: string; points: string }>(
      ch,
      `SELECT toString(${col}) AS b, groupBitmapMerge(active) AS active, groupBitmapMerge(shares) AS shares, sum(points) AS points
       FROM ${table} WHERE region_code = {r:String} AND institution_id = '' AND ${col} BETWEEN {${by === 'day' ? 'from' : 'mfrom'}:Date} AND {to:Date} GROUP BY b`,
      params,
    ),
    rows<{ d: string; n: string }>(
      ch,
      `SELECT toString(day) AS d, sum(delta) AS n FROM registrations_daily WHERE region_code = {r:String} AND institution_id = '' AND day <= {to:Date} GROUP BY day ORDER BY day`,
      params,
    ),
  ])
  const out = new Map<string, Counts>()
  for (const a of act) out.set(a.b, { ...NO_COUNTS, active: Number(a.active), shares: Number(a.shares), points: Number(a.points) })
  const bucketOf = (day: string) => (by === 'day' ? day : day.slice(0, 8) + '01')
  // Certified by a bucket's last day: registrations up to it (a running sum over the days).
  const keys = new Set([...out.keys()])
  let d = by === 'day' ? from : params.mfrom
  while (d <= to) {
    keys.add(d)
    d = by === 'day' ? isoDay(parseDay(d)! + DAY_MS) : (([y, m]) => (m === 12 ? `${y + 1}-01-01` : `${y}-${String(m + 1).padStart(2, '0')}-01`))(d.split('-').map(Number))
  }
  const ends = [...keys].sort().map((k) => {
    const last = by === 'day' ? k : (([y, m]) => isoDay(parseDay(m === 12 ? `${y + 1}-01-01` : `${y}-${String(m + 1).padStart(2, '0')}-01`)! - DAY_MS))(k.split('-').map(Number))
    return { k, last: last > to ? to : last }
  })
  let i = 0
  let certified = 0
  for (const { k, last } of ends) {
    while (i < reg.length && reg[i].d <= last) certified += Number(reg[i++].n)
    const c = out.get(k) ?? { ...NO_COUNTS }
    c.certified = certified
    out.set(k, c)
  }
  for (const r of reg) {
    if (r.d < from) continue
    const c = out.get(bucketOf(r.d))
    if (c) c.new_registrations += Number(r.n)
  }
  return out
}

export type RegionKpi = z.infer<typeof Kpi>

/** KPIs of a region ('' = national) and of each of its children for [fromMs, toEndMs). */
export async function regionKpis(deps: KpiDeps, region: string, fromMs: number, toEndMs: number): Promise<{ top: RegionKpi; children: RegionKpi[] }> {
  const year = Number(isoDay(toEndMs - 1).slice(0, 4))
  const childLen = CHILD_LEN[region.length] ?? null
  const kidRegions = childLen ? deps.tree.children(region || null) : []
  const counted = await rollupCounts(deps.ch, [region, ...kidRegions.map((r) => r.code)], '', isoDay(fromMs), isoDay(toEndMs - 1))
  const kpi = async (code: string, name: string, n: Counts | undefined): Promise<RegionKpi> => {
    const c0 = n ?? NO_COUNTS
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
  const children = await Promise.all(kidRegions.map((r) => kpi(r.code, r.name, counted.get(`${r.code}|`))))
  const top = await kpi(region, region ? deps.tree.get(region)!.name : '全国', counted.get(`${region}|`))
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

/**
 * The region a staff request is about: the one asked for, or the caller's own (national for
 * operators); 403 outside her scope (`check` = mustRead lets apps read too), 404 for a code that is
 * not a division.
 */
export function scopedRegion(p: Principal, code: string | undefined, tree: RegionTree, check: typeof mustCover = mustCover): string {
  const region = code ?? defaultRegion(p)
  if (region) {
    check(p, { region_code: region })
    if (!tree.get(region)) throw notFound(`region ${region} is not a GB/T 2260 division`)
  } else check(p, { national: true })
  return region
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
    const region = scopedRegion(p, q.region, deps.tree)
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
