import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { badRequest } from '../../core/errors.ts'
import { DAY_MS, isoDay, parseDay, periodRange, PERIODS, type Period } from '../../core/time.ts'
import { requireStaff, type AuthEnv } from '../middleware/auth/index.ts'
import { cursor } from '../cursor.ts'
import { errorResponses } from '../schemas.ts'
import { scopedRegion, Kpi, regionKpis, rollupCounts, type KpiDeps } from './kpis.ts'

const METRICS = ['shares', 'registration_ratio', 'activity_rate'] as const
const INST_METRICS = ['shares', 'activity_rate', 'certified', 'new_registrations'] as const

/**
 * The day range of a period containing `date` (default today), and the days it reports (`from`, `to`
 * inclusive). `all` reads through tomorrow (events may run up to minutes ahead) and reports today.
 */
function periodDays(period: Period, date: string | undefined): { fromMs: number; toEndMs: number; from: string; to: string } {
  const at = date === undefined ? Date.now() : parseDay(date)
  if (at === null) throw badRequest('date: must be a day YYYY-MM-DD')
  const range = periodRange(period, at)
  const open = !Number.isFinite(range.endMs)
  const toEndMs = open ? Date.now() - (Date.now() % DAY_MS) + 2 * DAY_MS : range.endMs
  return { fromMs: range.startMs, toEndMs, from: isoDay(range.startMs), to: isoDay(open ? Date.now() : range.endMs - 1) }
}

/** Sorts by value descending; unknown values last; ties by key. */
function rank<T>(items: T[], value: (t: T) => number | null, key: (t: T) => string): (T & { rank: number; value: number | null })[] {
  return [...items]
    .sort((a, b) => {
      const va = value(a)
      const vb = value(b)
      if (va === null || vb === null) return va === vb ? key(a).localeCompare(key(b)) : va === null ? 1 : -1
      return vb - va || key(a).localeCompare(key(b))
    })
    .map((t, i) => ({ ...t, rank: i + 1, value: value(t) }))
}

/** The child regions of a parent ranked by share volume, registration ratio or activity rate for a period. */
export function mountRankings(app: OpenAPIHono<AuthEnv>, deps: KpiDeps) {
  const route = createRoute({
    method: 'get',
    path: '/v1/rankings/regions',
    summary: 'Child regions of `parent` (default: your scope; national for operators) ranked for a period',
    description: 'Unknown values (no population, no certified communicators) rank last; ties share nothing: then by code.',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: {
      query: z.object({
        parent: z.string().regex(/^(\d{2}|\d{4}|\d{6})$/, 'must be a GB/T 2260 code of a province, city or county').optional(),
        metric: z.enum(METRICS).default('shares'),
        period: z.enum(PERIODS as [Period, ...Period[]]).default('day'),
        date: z.string().optional(),
      }),
    },
    responses: {
      200: {
        description: 'Ranked children',
        content: {
          'application/json': {
            schema: z.object({
              parent: z.string().nullable(), metric: z.string(), period: z.string(), from: z.string(), to: z.string(),
              entries: z.array(Kpi.extend({ rank: z.number().int(), value: z.number().nullable() })),
            }),
          },
        },
      },
      ...errorResponses(400, 401, 403, 404),
    },
  })
  app.openapi(route, async (c) => {
    const q = c.req.valid('query')
    const p = c.get('principal')
    const parent = scopedRegion(p, q.parent, deps.tree)
    if (parent.length === 9) throw badRequest('parent: a town has no child regions')
    const { fromMs, toEndMs, from, to } = periodDays(q.period, q.date)
    const { children } = await regionKpis(deps, parent, fromMs, toEndMs)
    return c.json({
      parent: parent || null,
      metric: q.metric,
      period: q.period,
      from,
      to,
      entries: rank(children, (k) => k[q.metric], (k) => k.region!),
    }, 200)
  })
}

const InstitutionEntry = z.object({
  rank: z.number().int(),
  institution_id: z.string(),
  certified: z.number().int(),
  new_registrations: z.number().int(),
  shares: z.number().int(),
  active: z.number().int(),
  activity_rate: z.number().nullable(),
  points: z.number().int(),
  value: z.number().nullable(),
})

/** Institutions within a region ranked the same way (by their communicators in that region). */
export function mountInstitutionRankings(app: OpenAPIHono<AuthEnv>, deps: KpiDeps) {
  const route = createRoute({
    method: 'get',
    path: '/v1/rankings/institutions',
    summary: 'Institutions ranked within a region (default: your scope; national for operators) for a period',
    description: 'Counts an institution’s communicators of that region only. Institutions with certified communicators or activity in the region are listed; unknown values rank last, ties by id.',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: {
      query: z.object({
        region: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/, 'must be a GB/T 2260 code').optional(),
        metric: z.enum(INST_METRICS).default('shares'),
        period: z.enum(PERIODS as [Period, ...Period[]]).default('day'),
        date: z.string().optional(),
        limit: z.coerce.number().int().min(1).max(1000).default(100),
        after: z.string().max(200).optional().describe('`next` of the previous page'),
      }),
    },
    responses: {
      200: {
        description: 'Ranked institutions, keyset-paged',
        content: { 'application/json': { schema: z.object({ region: z.string().nullable(), metric: z.string(), period: z.string(), from: z.string(), to: z.string(), total: z.number().int(), entries: z.array(InstitutionEntry), next: z.string().nullable() }) } },
      },
      ...errorResponses(400, 401, 403, 404),
    },
  })
  app.openapi(route, async (c) => {
    const q = c.req.valid('query')
    const p = c.get('principal')
    const region = scopedRegion(p, q.region, deps.tree)
    const { fromMs, toEndMs, from, to } = periodDays(q.period, q.date)
    const counts = await rollupCounts(deps.ch, [region], null, isoDay(fromMs), isoDay(toEndMs - 1))
    const items = [...counts.entries()]
      .map(([k, n]) => ({ institution_id: k.slice(k.indexOf('|') + 1), ...n, activity_rate: n.certified ? n.active / n.certified : null }))
      .filter((x) => x.certified > 0 || x.active > 0)
    const ranked = rank(items, (x) => x[q.metric], (x) => x.institution_id)
    // The cursor names the last institution seen (and its rank, should it have dropped off the list).
    let start = 0
    if (q.after) {
      const [rank, id] = cursor.dec<[number, string]>(q.after, (v) => v.length === 2 && typeof v[0] === 'number' && typeof v[1] === 'string')
      const at = ranked.findIndex((x) => x.institution_id === id)
      start = at >= 0 ? at + 1 : Math.min(rank, ranked.length)
    }
    const page = ranked.slice(start, start + q.limit)
    const last = page.at(-1)
    const next = last && start + q.limit < ranked.length ? cursor.enc(last.rank, last.institution_id) : null
    return c.json({ region: region || null, metric: q.metric, period: q.period, from, to, total: ranked.length, entries: page, next }, 200)
  })
}
