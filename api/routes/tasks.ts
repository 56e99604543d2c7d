import type { ClickHouseClient } from '@clickhouse/client'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { parse as parseCsv } from 'csv-parse/sync'
import { badRequest } from '../../core/errors.ts'
import type { RegionTree } from '../../core/regions.ts'
import type { InstitutionStore } from '../../core/store/institutions.ts'
import { TaskRefused, type Task, type TaskStore, type Unit } from '../../core/store/tasks.ts'
import { shanghaiMidnight } from '../../core/time.ts'
import { NO_COUNTS, rollupCounts, type Counts } from './kpis.ts'
import { requireStaff, type AuthEnv, type Principal } from '../middleware/auth/index.ts'
import { limitBody } from '../middleware/body-limit/index.ts'
import { covers } from '../middleware/scope/index.ts'
import { errorResponses } from '../schemas.ts'

/**
 * The task breakdown (任务分解表): targets per year and unit for new registrations and share volume,
 * set by API or CSV shaped like seed 003's attachment 1, and progress against the share of the year
 * elapsed. Counts come from ClickHouse (the activity rollup and the communicators table).
 */
export interface TaskDeps {
  tasks: TaskStore
  tree: RegionTree
  ch: ClickHouseClient
  institutions: Pick<InstitutionStore, 'get'>
}

const Year = z.object({ year: z.coerce.number().int().min(2000).max(2100) })
const UnitInput = z.object({
  region_code: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/).optional(),
  institution_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
  name: z.string().trim().min(1).max(64),
  core_members: z.coerce.number().int().min(0).max(1_000_000).nullable().optional(),
  registration_target: z.coerce.number().int().min(0).max(100_000_000),
  share_target: z.coerce.number().int().min(0).max(1_000_000_000),
})
const RowErrors = z.array(z.object({ row: z.number().int(), code: z.string(), message: z.string() }))

/**
 * Who may set a unit's target: a region strictly below her own, or an institution in her region. An
 * institution unit is either a registered institution (then it must lie in her region, and its
 * region owns the target) or a local unit code of her roster (a village, an office: seed 003's
 * attachment 1), owned by her region.
 */
async function placement(p: Principal, u: Unit, deps: TaskDeps): Promise<{ owner_region: string | null } | { error: string; code: string }> {
  if ('region_code' in u) {
    if (!deps.tree.get(u.region_code)) return { code: 'unknown_region', error: `region_code ${u.region_code} is not a GB/T 2260 division` }
    if (p.kind === 'operator') return { owner_region: null }
    if (p.kind === 'official' && 'region_code' in p.scope && u.region_code !== p.scope.region_code && covers(p, u)) return { owner_region: null }
    return { code: 'outside_scope', error: 'the unit must be a region below yours' }
  }
  if (p.kind !== 'operator' && !(p.kind === 'official' && 'region_code' in p.scope)) return { code: 'outside_scope', error: 'only region officials and operators set targets' }
  const inst = await deps.institutions.get(u.institution_id)
  if (inst) return covers(p, { region_code: inst.region_code }) ? { owner_region: inst.region_code } : { code: 'outside_scope', error: 'the institution is outside your region' }
  return { owner_region: p.kind === 'official' && 'region_code' in p.scope ? p.scope.region_code : null }
}

function visible(p: Principal, t: Task): boolean {
  if (p.kind === 'operator') return true
  if ('region_code' in t.unit) return covers(p, t.unit)
  return (t.owner_region !== null && covers(p, { region_code: t.owner_region })) || covers(p, t.unit)
}

async function save(deps: TaskDeps, p: Principal, year: number, rows: { row: number; data: Record<string, unknown> }[]) {
  const errors: z.infer<typeof RowErrors> = []
  let saved = 0
  for (const { row, data } of rows) {
    const r = UnitInput.safeParse(data)
    if (!r.success) {
      const i = r.error.issues[0]
      errors.push({ row, code: 'invalid_row', message: `${i.path.join('.') || 'row'}: ${i.message}` })
      continue
    }
    const d = r.data
    if (!!d.region_code === !!d.institution_id) {
      errors.push({ row, code: 'invalid_row', message: 'give exactly one of region_code or institution_id' })
      continue
    }
    const unit: Unit = d.region_code ? { region_code: d.region_code } : { institution_id: d.institution_id! }
    const place = await placement(p, unit, deps)
    if ('error' in place) {
      errors.push({ row, code: place.code, message: place.error })
      continue
    }
    const task = { year, unit, name: d.name, owner_region: place.owner_region, core_members: d.core_members ?? null, registration_target: d.registration_target, share_target: d.share_target }
    try {
      // A stored unit is replaced only by whoever may see it, and keeps its owner (a county editing
      // her town's unit leaves it visible to the town).
      await deps.tasks.put(task, (existing) => (p.kind === 'operator' || visible(p, existing) ? { ...task, owner_region: existing.owner_region ?? task.owner_region } : null))
    } catch (err) {
      if (!(err instanceof TaskRefused)) throw err
      errors.push({ row, code: 'outside_scope', message: err.message })
      continue
    }
    saved++
  }
  return { saved, errors }
}

/** Maps the columns of attachment 1 (Chinese) or plain English names onto a unit row. */
function csvRow(r: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [h, v] of Object.entries(r)) {
    if (v === '') continue
    if (/^(单位代码|unit|code)$/i.test(h)) out[/^\d{2}(\d{2})?(\d{2})?(\d{3})?$/.test(v) ? 'region_code' : 'institution_id'] = v
    else if (/^(单位|name)$/i.test(h)) out.name = v
    else if (/骨干|core/i.test(h)) out.core_members = v
    else if (/注册任务|registration/i.test(h)) out.registration_target = v
    else if (/传播量|share/i.test(h)) out.share_target = v
  }
  return out
}

/** Registrations and shares done in the year by each unit: two rollup reads for all units together. */
async function doneFor(ch: ClickHouseClient, units: Unit[], fromDay: string, toDay: string) {
  const regions = units.flatMap((u) => ('region_code' in u ? [u.region_code] : []))
  const hasInst = units.some((u) => 'institution_id' in u)
  const [byRegion, byInst] = await Promise.all([
    regions.length ? rollupCounts(ch, regions, '', fromDay, toDay) : new Map<string, Counts>(),
    hasInst ? rollupCounts(ch, [''], null, fromDay, toDay) : new Map<string, Counts>(),
  ])
  return units.map((u) => {
    const c = ('region_code' in u ? byRegion.get(`${u.region_code}|`) : byInst.get(`|${u.institution_id}`)) ?? NO_COUNTS
    return { shares: c.shares, registrations: c.new_registrations }
  })
}

export function mountTasks(app: OpenAPIHono<AuthEnv>, deps: TaskDeps) {
  const put = createRoute({
    method: 'put',
    path: '/v1/tasks/{year}',
    summary: 'Set targets for units (regions below yours, or institutions in your region) for a year',
    security: [{ bearer: [] }],
    middleware: [requireStaff(), limitBody(2 * 1024 * 1024, '2 MiB')] as const,
    request: { params: Year, body: { required: true, content: { 'application/json': { schema: z.object({ units: z.array(z.record(z.string(), z.unknown())).max(10_000) }) } } } },
    responses: { 200: { description: 'Saved', content: { 'application/json': { schema: z.object({ saved: z.number().int(), errors: RowErrors }) } } }, ...errorResponses(400, 401, 403) },
  })
  app.openapi(put, async (c) => {
    const { year } = c.req.valid('param')
    const rows = c.req.valid('json').units.map((data, i) => ({ row: i + 1, data }))
    return c.json(await save(deps, c.get('principal'), year, rows), 200)
  })

  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/v1/tasks/{year}:import',
    summary: 'Upload a task breakdown as CSV shaped like seed 003 attachment 1',
    description: 'Columns: 序号, 单位 (name), 单位代码 (region code or institution id), 骨干科普信息员人数, 注册任务数, 传播量任务 — or English: name, unit, core_members, registration_target, share_target. Errors by line (header = 1).',
    security: [{ bearer: [] }],
    request: { params: Year, body: { content: { 'text/csv': { schema: z.string() } } } },
    responses: { 200: { description: 'Saved', content: { 'application/json': { schema: z.object({ saved: z.number().int(), errors: RowErrors }) } } }, ...errorResponses(400, 401, 403, 413) },
  })
  app.post('/v1/tasks/:year{[0-9]{4}:import}', requireStaff(), limitBody(2 * 1024 * 1024, '2 MiB'), async (c) => {
    const year = Number(c.req.param('year').slice(0, 4))
    if (year < 2000 || year > 2100) throw badRequest('year: must be 2000–2100')
    let records: Record<string, string>[]
    try {
      records = parseCsv((await c.req.text()).replace(/^\uFEFF/, ''), { columns: (h: string[]) => h.map((x) => x.trim()), skip_empty_lines: true, trim: true, relax_column_count: true })
    } catch (e) {
      throw badRequest(`CSV is unreadable: ${(e as Error).message}`, 'invalid_csv')
    }
    return c.json(await save(deps, c.get('principal'), year, records.map((r, i) => ({ row: i + 2, data: csvRow(r) }))), 200)
  })

  const Progress = z.object({ target: z.number().int(), done: z.number().int(), percent: z.number().nullable(), on_schedule: z.boolean() })
  const progress = createRoute({
    method: 'get',
    path: '/v1/tasks/{year}/progress',
    summary: 'Progress of every unit you can see against its targets; `behind=true` lists only units behind schedule',
    security: [{ bearer: [] }],
    middleware: [requireStaff()] as const,
    request: { params: Year, query: z.object({ behind: z.enum(['true', 'false']).optional() }) },
    responses: {
      200: {
        description: 'Progress',
        content: {
          'application/json': {
            schema: z.object({
              year: z.number().int(),
              elapsed: z.number(),
              units: z.array(z.object({ unit: z.record(z.string(), z.string()), name: z.string(), core_members: z.number().nullable(), registrations: Progress, shares: Progress, behind: z.boolean() })),
            }),
          },
        },
      },
      ...errorResponses(400, 401, 403),
    },
  })
  app.openapi(progress, async (c) => {
    const { year } = c.req.valid('param')
    const p = c.get('principal')
    const start = shanghaiMidnight(year, 0, 1)
    const end = shanghaiMidnight(year + 1, 0, 1)
    const elapsed = Math.min(1, Math.max(0, (Date.now() - start) / (end - start)))
    const tasks = (await deps.tasks.list(year)).filter((t) => visible(p, t))
    const fromDay = `${year}-01-01`
    const toDay = `${year}-12-31`
    const prog = (target: number, done: number) => {
      const percent = target ? done / target : null
      return { target, done, percent, on_schedule: percent === null || percent >= elapsed }
    }
    const units = []
    const done = await doneFor(deps.ch, tasks.map((t) => t.unit), fromDay, toDay)
    for (const [i, t] of tasks.entries()) {
      const d = done[i]
      const registrations = prog(t.registration_target, d.registrations)
      const shares = prog(t.share_target, d.shares)
      units.push({ unit: { ...t.unit } as Record<string, string>, name: t.name, core_members: t.core_members, registrations, shares, behind: !registrations.on_schedule || !shares.on_schedule })
    }
    const only = c.req.valid('query').behind === 'true'
    return c.json({ year, elapsed, units: only ? units.filter((u) => u.behind) : units }, 200)
  })
}
