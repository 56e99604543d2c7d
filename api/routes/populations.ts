import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { parse as parseCsv } from 'csv-parse/sync'
import { badRequest, notFound } from '../../core/errors.ts'
import type { RegionTree } from '../../core/regions.ts'
import type { PopulationStore } from '../../core/store/populations.ts'
import { requireStaff, type AuthEnv } from '../middleware/auth/index.ts'
import { limitBody } from '../middleware/body-limit/index.ts'
import { covers, mustCover } from '../middleware/scope/index.ts'
import { errorResponses } from '../schemas.ts'

const CODE = z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/, 'must be a GB/T 2260 code of 2, 4, 6 or 9 digits')
const Fields = z.object({
  population: z.coerce.number().int().min(0).max(2_000_000_000),
  year: z.coerce.number().int().min(1949).max(2100),
})
const Record_ = z.object({ region_code: z.string(), year: z.number().int(), population: z.number().int(), source: z.string() })

export function mountPopulations(app: OpenAPIHono<AuthEnv>, deps: { populations: PopulationStore; tree: RegionTree }) {
  const put = createRoute({
    method: 'put',
    path: '/v1/regions/{code}/population',
    summary: 'Set the resident population of a region for a year (operator, or an official within scope)',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { params: z.object({ code: CODE }), body: { required: true, content: { 'application/json': { schema: Fields } } } },
    responses: { 200: { description: 'Stored', content: { 'application/json': { schema: Record_ } } }, ...errorResponses(400, 401, 403, 404) },
  })
  app.openapi(put, async (c) => {
    const { code } = c.req.valid('param')
    mustCover(c.get('principal'), { region_code: code })
    if (!deps.tree.get(code)) throw notFound(`region ${code} is not a GB/T 2260 division`)
    const r = await deps.populations.put({ region_code: code, ...c.req.valid('json') })
    return c.json({ region_code: r.region_code, year: r.year, population: r.population, source: r.source }, 200)
  })

  const get = createRoute({
    method: 'get',
    path: '/v1/regions/{code}/population',
    summary: 'The population a KPI for `year` uses: the latest year ≤ `year` on record (provinces default to the 2020 census)',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { params: z.object({ code: CODE }), query: z.object({ year: z.coerce.number().int().min(1949).max(2100).optional() }) },
    responses: { 200: { description: 'Population', content: { 'application/json': { schema: Record_ } } }, ...errorResponses(400, 401, 403, 404) },
  })
  app.openapi(get, async (c) => {
    const { code } = c.req.valid('param')
    mustCover(c.get('principal'), { region_code: code })
    const year = c.req.valid('query').year ?? new Date().getFullYear()
    const r = await deps.populations.of(code, year)
    if (!r) throw notFound(`no population on record for ${code} in or before ${year}`)
    return c.json({ region_code: r.region_code, year: r.year, population: r.population, source: r.source }, 200)
  })

  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/v1/populations:import',
    summary: 'Import populations from CSV `region_code,population,year` (operator, or an official for rows within scope)',
    description: 'Bad rows are reported by line number (header = 1) and never stop the good ones.',
    security: [{ bearer: [] }],
    request: { body: { content: { 'text/csv': { schema: z.string() } } } },
    responses: {
      200: {
        description: 'Import result',
        content: { 'application/json': { schema: z.object({ imported: z.number().int(), errors: z.array(z.object({ row: z.number().int(), code: z.string(), message: z.string() })) }) } },
      },
      ...errorResponses(400, 401, 403, 413),
    },
  })
  app.post('/v1/populations:import', requireStaff(), limitBody(5 * 1024 * 1024, '5 MiB'), async (c) => {
    const p = c.get('principal')
    let records: Record<string, string>[]
    let header: string[] = []
    try {
      records = parseCsv((await c.req.text()).replace(/^\uFEFF/, ''), { columns: (h: string[]) => (header = h.map((x) => x.trim())), skip_empty_lines: true, trim: true, relax_column_count: true })
    } catch (e) {
      throw badRequest(`CSV is unreadable: ${(e as Error).message}`, 'invalid_csv')
    }
    // A file without its header line would have its first row taken for one, and import nothing silently.
    const missing = ['region_code', 'year', 'population'].filter((k) => !header.includes(k))
    if (missing.length) throw badRequest(`CSV header (line 1) must name region_code, year and population; missing: ${missing.join(', ')}`, 'invalid_csv')
    const errors: { row: number; code: string; message: string }[] = []
    let imported = 0
    for (const [i, r] of records.entries()) {
      const row = i + 2
      const code = CODE.safeParse(r.region_code)
      const f = Fields.safeParse(r)
      if (!code.success || !f.success) {
        const issue = (code.success ? f.error! : code.error).issues[0]
        errors.push({ row, code: 'invalid_row', message: `${code.success ? issue.path.join('.') : 'region_code'}: ${issue.message}` })
        continue
      }
      if (!deps.tree.get(code.data)) {
        errors.push({ row, code: 'unknown_region', message: `region_code ${code.data} is not a GB/T 2260 division` })
        continue
      }
      if (!covers(p, { region_code: code.data })) {
        errors.push({ row, code: 'outside_scope', message: 'region_code is outside your scope' })
        continue
      }
      await deps.populations.put({ region_code: code.data, ...f.data })
      imported++
    }
    return c.json({ imported, errors }, 200)
  })
}
