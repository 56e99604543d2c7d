import type { ClickHouseClient } from '@clickhouse/client'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { ApiError, badRequest } from '../../core/errors.ts'
import type { RegionTree } from '../../core/regions.ts'
import { DAY_MS, isoDay, parseDay } from '../../core/time.ts'
import { requireStaff, type AuthEnv, type Principal } from '../middleware/auth/index.ts'
import { errorResponses } from '../schemas.ts'
import { scopedRegion, rollupCounts } from './kpis.ts'
import { maskPhone } from './users.ts'
import type { InstitutionStore } from '../../core/store/institutions.ts'
import { regionPath, toCsv, unitNames } from '../csv.ts'
import { cursor } from '../cursor.ts'

/**
 * Recognition lists (seed 004: 优秀科普信息员 and 先进单位): threshold rules over a period and a
 * region, e.g. institutions with ≥ 200 certified communicators and ≥ 2000 shares, individuals with
 * ≥ 300 shares. Institutions come from the KPI rollups; individuals from the facts of the range
 * (counted share-backs, caps applied), grouped per communicator. JSON keyset-paged like every list
 * (`limit`, `after` → `next`, `total` over the whole list); CSV with `format=csv` is the whole list.
 */
export interface RecognitionDeps {
  ch: ClickHouseClient
  tree: RegionTree
  institutions: Pick<InstitutionStore, 'get'>
}

const Range = z.object({
  region: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/, 'must be a GB/T 2260 code').optional(),
  from: z.string(),
  to: z.string(),
  format: z.enum(['json', 'csv']).default('json'),
  limit: z.coerce.number().int().min(1).max(1000).default(100).describe('JSON page size; the CSV holds the whole list'),
  after: z.string().max(400).optional().describe('`next` of the previous page (JSON)'),
})

/** The most rows one CSV export holds; a longer list asks for a narrower region or range. */
const CSV_MAX_ROWS = 100_000
const tooLong = (total: number) =>
  new ApiError(413, 'too_many_rows', `the list has ${total} rows; a CSV holds at most ${CSV_MAX_ROWS}: narrow the region or the range, or page the JSON`)

function resolve(deps: RecognitionDeps, p: Principal, q: z.infer<typeof Range>) {
  const region = scopedRegion(p, q.region, deps.tree)
  const from = parseDay(q.from)
  const to = parseDay(q.to)
  if (from === null || to === null) throw badRequest('from/to: must be days YYYY-MM-DD')
  if (from > to) throw badRequest('from: must not be after to')
  if (to - from > 3660 * DAY_MS) throw badRequest('from/to: at most ten years')
  return { region, from: isoDay(from), to: isoDay(to) }
}

export function mountRecognitions(app: OpenAPIHono<AuthEnv>, deps: RecognitionDeps) {
  const inst = createRoute({
    method: 'get',
    path: '/v1/recognitions/institutions',
    summary: 'Institutions of a region meeting thresholds over a range of days (certified communicators by `to`, counted shares in the range)',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { query: Range.extend({ min_certified: z.coerce.number().int().min(0).default(0), min_shares: z.coerce.number().int().min(0).default(0) }) },
    responses: {
      200: {
        description: 'Institutions meeting every threshold, by shares',
        content: {
          'application/json': {
            schema: z.object({
              region: z.string().nullable(), from: z.string(), to: z.string(), min_certified: z.number().int(), min_shares: z.number().int(), total: z.number().int(),
              entries: z.array(z.object({ rank: z.number().int(), institution_id: z.string(), certified: z.number().int(), shares: z.number().int(), active: z.number().int(), points: z.number().int() })),
              next: z.string().nullable(),
            }),
          },
          'text/csv': { schema: z.string() },
        },
      },
      ...errorResponses(400, 401, 403, 404, 413),
    },
  })
  app.openapi(inst, async (c) => {
    const q = c.req.valid('query')
    const { region, from, to } = resolve(deps, c.get('principal'), q)
    const counts = await rollupCounts(deps.ch, [region], null, from, to)
    const entries = [...counts]
      .map(([k, n]) => ({ institution_id: k.slice(k.indexOf('|') + 1), certified: n.certified, shares: n.shares, active: n.active, points: n.points }))
      .filter((x) => x.certified >= q.min_certified && x.shares >= q.min_shares && (x.certified > 0 || x.shares > 0))
      .sort((a, b) => b.shares - a.shares || b.certified - a.certified || a.institution_id.localeCompare(b.institution_id))
      .map((x, i) => ({ rank: i + 1, ...x }))
    if (q.format === 'csv') {
      if (entries.length > CSV_MAX_ROWS) throw tooLong(entries.length)
      c.header('content-type', 'text/csv; charset=utf-8')
      c.header('content-disposition', `attachment; filename="institutions-${region || 'national'}-${from}-${to}.csv"`)
      const unit = await unitNames(deps.institutions, entries.map((e) => e.institution_id))
      return c.body(toCsv([['名次', '单位', '认证科普信息员', '转发量', '活跃人数', '积分'], ...entries.map((e) => [e.rank, unit(e.institution_id), e.certified, e.shares, e.active, e.points])]), 200) as never
    }
    // The cursor is the last entry's sort key (shares, certified, id): a page starts after it even
    // when the counts moved on in between.
    let start = 0
    if (q.after) {
      const [sh, ce, id] = cursor.dec<[number, number, string]>(q.after, (v) => v.length === 3 && typeof v[0] === 'number' && typeof v[1] === 'number' && typeof v[2] === 'string')
      const after = entries.findIndex((e) => e.shares < sh || (e.shares === sh && (e.certified < ce || (e.certified === ce && e.institution_id > id))))
      start = after < 0 ? entries.length : after
    }
    const page = entries.slice(start, start + q.limit)
    const last = page.at(-1)
    const next = last && start + q.limit < entries.length ? cursor.enc(last.shares, last.certified, last.institution_id) : null
    return c.json({ region: region || null, from, to, min_certified: q.min_certified, min_shares: q.min_shares, total: entries.length, entries: page, next }, 200)
  })

  const people = createRoute({
    method: 'get',
    path: '/v1/recognitions/communicators',
    summary: 'Communicators of a region with at least `min_shares` counted shares over a range of days',
    description: 'Ranked by shares, then earlier reached_at, then user id. Phones are masked in the CSV.',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { query: Range.extend({ min_shares: z.coerce.number().int().min(1).default(300) }) },
    responses: {
      200: {
        description: 'Communicators meeting the threshold',
        content: {
          'application/json': {
            schema: z.object({
              region: z.string().nullable(), from: z.string(), to: z.string(), min_shares: z.number().int(), total: z.number().int(),
              entries: z.array(z.object({ rank: z.number().int(), user_id: z.string(), name: z.string(), institution_id: z.string().nullable(), region_code: z.string(), shares: z.number().int() })),
              next: z.string().nullable(),
            }),
          },
          'text/csv': { schema: z.string() },
        },
      },
      ...errorResponses(400, 401, 403, 404, 413),
    },
  })
  app.openapi(people, async (c) => {
    const q = c.req.valid('query')
    const { region, from, to } = resolve(deps, c.get('principal'), q)
    const csv = q.format === 'csv'
    // Keyset: the cursor is the last entry's (shares, reached in ms, user id) and its rank.
    let after: [number, number, string, number] | null = null
    if (q.after && !csv) after = cursor.dec<[number, number, string, number]>(q.after, (v) => v.length === 4 && v.every((x, i) => typeof x === (i === 2 ? 'string' : 'number')))
    const ranked = `SELECT user_id, toUInt64(sum(shares)) AS n, toUnixTimestamp64Milli(maxIf(ts, shares > 0)) AS reached, argMax(region_code, ts) AS rc FROM facts FINAL
                    WHERE decision = 'counted' AND type = 'share_back' AND day BETWEEN {from:Date} AND {to:Date} AND startsWith(region_code, {region:String})
                    GROUP BY user_id HAVING n >= {min:UInt64}`
    const params = { from, to, region, min: q.min_shares }
    const totalRows = (await (await deps.ch.query({ query: `SELECT count() AS total FROM (${ranked})`, query_params: params, format: 'JSONEachRow' })).json()) as { total: string }[]
    const total = Number(totalRows[0]?.total ?? 0)
    if (csv && total > CSV_MAX_ROWS) throw tooLong(total)
    const keyset = after ? 'WHERE f.n < {s:UInt64} OR (f.n = {s:UInt64} AND (f.reached > {r:Int64} OR (f.reached = {r:Int64} AND f.user_id > {u:String})))' : ''
    const limit = csv ? CSV_MAX_ROWS : q.limit + 1
    const r = await deps.ch.query({
      query: `SELECT f.user_id AS user_id, f.n AS shares, f.reached AS reached, u.real_name AS name, u.institution_id AS institution_id, f.rc AS region_code, u.phone AS phone
              FROM (${ranked}) AS f
              LEFT JOIN (SELECT id, real_name, institution_id, phone FROM users FINAL) AS u ON u.id = f.user_id
              ${keyset}
              ORDER BY shares DESC, f.reached ASC, user_id ASC LIMIT {limit:UInt32}`,
      query_params: { ...params, limit, ...(after && { s: after[0], r: after[1], u: after[2] }) },
      format: 'JSONEachRow',
    })
    const rows = (await r.json()) as { user_id: string; shares: string; reached: string; name: string; institution_id: string; region_code: string; phone: string }[]
    const more = !csv && rows.length > q.limit
    if (more) rows.length = q.limit
    const firstRank = after ? after[3] + 1 : 1
    const entries = rows.map((x, i) => ({ rank: firstRank + i, user_id: x.user_id, name: x.name ?? '', institution_id: x.institution_id || null, region_code: x.region_code, shares: Number(x.shares) }))
    if (csv) {
      const name = (code: string) => regionPath(deps.tree, code)
      const unit = await unitNames(deps.institutions, entries.map((e) => e.institution_id))
      c.header('content-type', 'text/csv; charset=utf-8')
      c.header('content-disposition', `attachment; filename="communicators-${region || 'national'}-${from}-${to}.csv"`)
      return c.body(toCsv([['名次', '姓名', '单位', '地区', '手机号', '转发量'], ...entries.map((e, i) => [e.rank, e.name, unit(e.institution_id), name(e.region_code), maskPhone(rows[i].phone ?? ''), e.shares])]), 200) as never
    }
    const last = rows.at(-1)
    const next = more && last ? cursor.enc(Number(last.shares), Number(last.reached), last.user_id, firstRank + rows.length - 1) : null
    return c.json({ region: region || null, from, to, min_shares: q.min_shares, total, entries, next }, 200)
  })
}
