import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { badRequest } from '../../core/errors.ts'
import { DAY_MS, isoDay, parseDay, shanghaiMidnight } from '../../core/time.ts'
import { requireStaff, type AuthEnv } from '../middleware/auth/index.ts'
import { errorResponses } from '../schemas.ts'
import { scopedRegion, NO_COUNTS, seriesCounts, type KpiDeps } from './kpis.ts'

/**
 * KPIs of one region as a series of days or months, for the dashboard's trend charts, in one call
 * instead of one /v1/kpis call per bucket from the page: one grouped read of the same rollups that
 * `/v1/kpis?from=<bucket start>&to=<bucket end>` reads, so each bucket equals that call.
 */
const MAX_BUCKETS = { day: 120, month: 60 } as const

/** The country's population: the sum of its provinces' (null if any is unknown), as /v1/kpis does. */
async function nationalPopulation(deps: KpiDeps, year: number): Promise<number | null> {
  const pops = await Promise.all(deps.tree.children(null).map(async (r) => (await deps.populations.of(r.code, year))?.population ?? null))
  return pops.every((p) => p !== null) ? pops.reduce((a, p) => a + p!, 0) : null
}

const Point = z.object({
  period: z.string().openapi({ description: 'YYYY-MM-DD (by=day) or YYYY-MM (by=month)' }),
  from: z.string(),
  to: z.string(),
  population: z.number().int().nullable(),
  certified: z.number().int(),
  registration_ratio: z.number().nullable(),
  new_registrations: z.number().int(),
  shares: z.number().int(),
  active: z.number().int(),
  activity_rate: z.number().nullable(),
  points: z.number().int(),
})

interface Bucket {
  period: string
  fromMs: number
  /** Exclusive end. */
  endMs: number
}

function buckets(by: 'day' | 'month', fromMs: number, toMs: number): Bucket[] {
  const out: Bucket[] = []
  if (by === 'day') {
    for (let t = fromMs; t <= toMs; t += DAY_MS) out.push({ period: isoDay(t), fromMs: t, endMs: t + DAY_MS })
    return out
  }
  let [y, m] = isoDay(fromMs).split('-').map(Number)
  const [ty, tm] = isoDay(toMs).split('-').map(Number)
  while (y < ty || (y === ty && m <= tm)) {
    const start = shanghaiMidnight(y, m - 1, 1)
    out.push({ period: `${y}-${String(m).padStart(2, '0')}`, fromMs: start, endMs: shanghaiMidnight(y, m, 1) })
    m === 12 ? ((y += 1), (m = 1)) : (m += 1)
  }
  return out
}

export function mountTrend(app: OpenAPIHono<AuthEnv>, deps: KpiDeps) {
  const route = createRoute({
    method: 'get',
    path: '/v1/kpis/trend',
    summary: 'KPIs of a region (default: your scope; national for operators) per day or per month over a range',
    description:
      'Defaults: by=day covers the last 30 days, by=month the last 12 months, both up to today. At most 120 days or 60 months. ' +
      '`certified` is counted at the end of each bucket; `path` names the region and its ancestors (national first).',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: {
      query: z.object({
        region: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/, 'must be a GB/T 2260 code').optional(),
        from: z.string().optional(),
        to: z.string().optional(),
        by: z.enum(['day', 'month']).default('day'),
      }),
    },
    responses: {
      200: {
        description: 'One point per day or month, oldest first',
        content: {
          'application/json': {
            schema: z.object({
              region: z.string().nullable(),
              name: z.string(),
              path: z.array(z.object({ code: z.string().nullable(), name: z.string() })),
              by: z.enum(['day', 'month']),
              from: z.string(),
              to: z.string(),
              points: z.array(Point),
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
    const region = scopedRegion(p, q.region, deps.tree)

    const today = parseDay(isoDay(Date.now()))!
    const toMs = q.to === undefined ? today : parseDay(q.to)
    if (toMs === null) throw badRequest('to: must be a day YYYY-MM-DD')
    let fromMs: number | null
    if (q.from !== undefined) fromMs = parseDay(q.from)
    else if (q.by === 'day') fromMs = toMs - 29 * DAY_MS
    else {
      const [y, m] = isoDay(toMs).split('-').map(Number)
      fromMs = shanghaiMidnight(y, m - 12, 1)
    }
    if (fromMs === null) throw badRequest('from: must be a day YYYY-MM-DD')
    if (fromMs > toMs) throw badRequest('from: must not be after to')
    const list = buckets(q.by, fromMs, toMs)
    if (list.length > MAX_BUCKETS[q.by]) throw badRequest(`from: at most ${MAX_BUCKETS[q.by]} ${q.by}s per request`)
    // A month bucket reaches its whole month, also where the range starts or ends inside it.
    const startMs = list[0].fromMs
    const endMs = list[list.length - 1].endMs
    // One grouped read of the same rollups /v1/kpis reads: each bucket equals /v1/kpis for its days.
    const counts = await seriesCounts(deps.ch, region, q.by, isoDay(startMs), isoDay(endMs - 1))
    const pops = new Map<number, number | null>()
    const points: z.infer<typeof Point>[] = []
    for (const b of list) {
      const year = Number(isoDay(b.endMs - 1).slice(0, 4))
      if (!pops.has(year)) pops.set(year, region ? (await deps.populations.of(region, year))?.population ?? null : await nationalPopulation(deps, year))
      const population = pops.get(year)!
      const k = counts.get(isoDay(b.fromMs)) ?? NO_COUNTS
      points.push({
        period: b.period, from: isoDay(b.fromMs), to: isoDay(b.endMs - 1), population, certified: k.certified,
        registration_ratio: population ? k.certified / population : null, new_registrations: k.new_registrations,
        shares: k.shares, active: k.active, activity_rate: k.certified ? k.active / k.certified : null, points: k.points,
      })
    }
    const lineage = region ? deps.tree.lineage(region).reverse() : []
    const path = [{ code: null, name: '全国' }, ...lineage.map((r) => ({ code: r.code, name: r.name }))]
    return c.json({ region: region || null, name: path[path.length - 1].name, path, by: q.by, from: isoDay(startMs), to: isoDay(endMs - 1), points }, 200)
  })
}
