import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { badRequest, notFound } from '../../core/errors.ts'
import { DAY_MS, isoDay, parseDay, periodRange, PERIODS, type Period } from '../../core/time.ts'
import { requireStaff, type AuthEnv } from '../middleware/auth/index.ts'
import { mustCover } from '../middleware/scope/index.ts'
import { errorResponses } from '../schemas.ts'
import { defaultRegion, Kpi, regionKpis, type KpiDeps } from './kpis.ts'

const METRICS = ['shares', 'registration_ratio', 'activity_rate'] as const

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
    const parent = q.parent ?? defaultRegion(p)
    if (parent) {
      mustCover(p, { region_code: parent })
      if (!deps.tree.get(parent)) throw notFound(`region ${parent} is not a GB/T 2260 division`)
    } else mustCover(p, { national: true })
    if (parent.length === 9) throw badRequest('parent: a town has no child regions')
    const at = q.date === undefined ? Date.now() : parseDay(q.date)
    if (at === null) throw badRequest('date: must be a day YYYY-MM-DD')
    const range = periodRange(q.period, at)
    const toEnd = Number.isFinite(range.endMs) ? range.endMs : Date.now() - (Date.now() % DAY_MS) + 2 * DAY_MS
    const { children } = await regionKpis(deps, parent, range.startMs, toEnd)
    const value = (k: (typeof children)[number]) => k[q.metric]
    const sorted = [...children].sort((a, b) => {
      const va = value(a)
      const vb = value(b)
      if (va === null || vb === null) return va === vb ? a.region!.localeCompare(b.region!) : va === null ? 1 : -1
      return vb - va || a.region!.localeCompare(b.region!)
    })
    return c.json({
      parent: parent || null,
      metric: q.metric,
      period: q.period,
      from: isoDay(range.startMs),
      to: isoDay(toEnd - 1),
      entries: sorted.map((k, i) => ({ ...k, rank: i + 1, value: value(k) })),
    }, 200)
  })
}
