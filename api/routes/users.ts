import type { ClickHouseClient } from '@clickhouse/client'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { parse as parseCsv } from 'csv-parse/sync'
import type { Redis } from 'ioredis'
import { ApiError, badRequest, forbidden, notFound } from '../../core/errors.ts'
import { USER_ID } from '../../core/events.ts'
import { publishCommunicators } from '../../core/communicators.ts'
import { keys, readTotals } from '../../core/keys.ts'
import type { RegionTree } from '../../core/regions.ts'
import type { Institution, InstitutionStore } from '../../core/store/institutions.ts'
import { PHONE, USER_KINDS, UserConflict, type User, type UserStore } from '../../core/store/users.ts'
import { parseDay, parseInstant, shanghaiIso } from '../../core/time.ts'
import { requireStaff, type AuthEnv, type Principal } from '../middleware/auth/index.ts'
import { covers, coversUser } from '../middleware/scope/index.ts'
import { limitBody } from '../middleware/body-limit/index.ts'
import { errorResponses } from '../schemas.ts'

export interface UsersDeps {
  users: UserStore
  redis: Redis
  ch: ClickHouseClient
  tree: RegionTree
  institutions: Pick<InstitutionStore, 'get'>
}

const MAX_ROWS = 10_000
/** Rows written to the store before they are published, while the next part is written (2 parts
 * of a full request: more parts overlapped no better and cost ClickHouse more inserts to merge). */
const PART = 5_000

const ImportRow = z.object({
  id: USER_ID.optional(),
  phone: z.union([z.string(), z.number()]).transform(String).pipe(PHONE),
  real_name: z.string().trim().min(1).max(64),
  region_code: z.union([z.string(), z.number()]).transform(String),
  kind: z.enum(USER_KINDS).default('个人用户'),
  institution_id: z.string().trim().max(64).regex(/^[A-Za-z0-9_-]*$/, 'must be of [A-Za-z0-9_-]').optional(),
  certified_at: z.union([z.string(), z.number()]).optional(),
})

const ImportResult = z.object({
  created: z.number().int(),
  updated: z.number().int(),
  errors: z.array(z.object({ row: z.number().int(), code: z.string(), message: z.string() })),
})

/** Reads the rows of a JSON ({users:[…]} or an array) or CSV body, each with its row number. */
function readRows(text: string, contentType: string): { row: number; data: Record<string, unknown> }[] {
  if (/csv/i.test(contentType)) {
    let records: Record<string, string>[]
    try {
      records = parseCsv(text.replace(/^\uFEFF/, ''), { columns: (h: string[]) => h.map((s) => s.trim()), skip_empty_lines: true, trim: true, relax_column_count: true })
    } catch (e) {
      throw badRequest(`CSV is unreadable: ${(e as Error).message}`, 'invalid_csv')
    }
    // Row numbers are the file's line numbers (the header is line 1), as a spreadsheet shows them.
    return records.map((r, i) => ({ row: i + 2, data: Object.fromEntries(Object.entries(r).filter(([, v]) => v !== '')) }))
  }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw badRequest('body is not valid JSON', 'invalid_json')
  }
  const list = Array.isArray(body) ? body : (body as { users?: unknown })?.users
  if (!Array.isArray(list)) throw badRequest('body must be {"users": [...]} or text/csv', 'invalid_body')
  return list.map((data, i) => ({ row: i + 1, data: (data ?? {}) as Record<string, unknown> }))
}

/** 13812341234 → 138****1234 */
export const maskPhone = (phone: string) => phone.replace(/^(\d{3})\d{4}(\d{4})$/, '$1****$2')

function certifiedAt(v: string | number | undefined, now: number): number | string {
  if (v === undefined) return now
  const ms = typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v) ? parseDay(v) : parseInstant(v)
  if (ms === null) return 'certified_at: must be a day (YYYY-MM-DD), ISO-8601 with an offset or epoch ms'
  if (ms > now + 60_000) return 'certified_at: is in the future'
  return ms
}

/**
 * An official may name only an approved institution inside her scope: a region official one in her
 * region, an institution official her own, with the row's region inside the institution's. Operators
 * may name any id (rosters carried over from elsewhere). Returns the row error, or null.
 */
function institutionProblem(p: Principal, inst: Institution | null, id: string, region: string): { code: string; message: string } | null {
  if (p.kind === 'operator') return null
  if (!inst || inst.status !== 'approved') return { code: 'unknown_institution', message: `institution_id ${id} is not an approved institution` }
  if (!covers(p, { institution_id: inst.id, region_code: inst.region_code })) return { code: 'outside_scope', message: 'institution_id is outside your scope' }
  if (!region.startsWith(inst.region_code)) return { code: 'outside_scope', message: 'region_code must lie within the institution’s region' }
  return null
}

export function mountUsers(app: OpenAPIHono<AuthEnv>, deps: UsersDeps) {
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/v1/users:import',
    summary: 'Create or update certified communicators from a roster (operator, or an official for rows inside her scope)',
    description: `JSON {"users": [...]} or text/csv with a header row; at most ${MAX_ROWS} rows. Bad rows are reported by row number (JSON: position from 1; CSV: line number, header = 1) and never stop the good ones. An official's row must lie inside her scope, may change only a communicator she already covers (matched by id, or by phone), and may name only an approved institution inside her scope (outside_scope, unknown_institution).`,
    security: [{ bearer: [] }],
    request: {
      body: {
        content: {
          'application/json': { schema: z.object({ users: z.array(ImportRow) }) },
          'text/csv': { schema: z.string() },
        },
      },
    },
    responses: { 200: { description: 'Import result', content: { 'application/json': { schema: ImportResult } } }, ...errorResponses(400, 401, 403, 413, 503) },
  })

  app.post(
    '/v1/users:import',
    requireStaff(),
    limitBody(10 * 1024 * 1024, '10 MiB'),
    async (c) => {
      const principal = c.get('principal')
      const rows = readRows(await c.req.text(), c.req.header('content-type') ?? '')
      if (rows.length > MAX_ROWS) throw new ApiError(413, 'too_many_rows', `at most ${MAX_ROWS} rows per request, got ${rows.length}`)
      const now = Date.now()
      const errors: z.infer<typeof ImportResult>['errors'] = []
      const valid: { row: number; input: Omit<User, 'id' | 'ix' | 'created_at' | 'updated_at'> & { id?: string } }[] = []
      const seenPhones = new Map<string, number>()
      const institutions = new Map<string, Promise<Institution | null>>() // looked up once per request
      for (const { row, data } of rows) {
        const r = ImportRow.safeParse(data)
        if (!r.success) {
          const i = r.error.issues[0]
          errors.push({ row, code: 'invalid_row', message: `${i.path.join('.') || 'row'}: ${i.message}` })
          continue
        }
        const d = r.data
        if (!deps.tree.get(d.region_code)) {
          errors.push({ row, code: 'unknown_region', message: `region_code ${d.region_code} is not a GB/T 2260 division` })
          continue
        }
        if (!covers(principal, { region_code: d.region_code }) && !(d.institution_id && covers(principal, { institution_id: d.institution_id }))) {
          errors.push({ row, code: 'outside_scope', message: 'region_code or institution_id is outside your scope' })
          continue
        }
        if (d.institution_id && principal.kind !== 'operator') {
          if (!institutions.has(d.institution_id)) institutions.set(d.institution_id, deps.institutions.get(d.institution_id))
          const problem = institutionProblem(principal, await institutions.get(d.institution_id)!, d.institution_id, d.region_code)
          if (problem) {
            errors.push({ row, ...problem })
            continue
          }
        }
        const cert = certifiedAt(d.certified_at, now)
        if (typeof cert === 'string') {
          errors.push({ row, code: 'invalid_row', message: cert })
          continue
        }
        if (seenPhones.has(d.phone)) {
          errors.push({ row, code: 'duplicate_row', message: `phone repeats row ${seenPhones.get(d.phone)}` })
          continue
        }
        seenPhones.set(d.phone, row)
        valid.push({
          row,
          input: { id: d.id, phone: d.phone, real_name: d.real_name, region_code: d.region_code, kind: d.kind, institution_id: d.institution_id ?? '', certified_at: cert },
        })
      }
      let created = 0
      let updated = 0
      // A row may only change a communicator the caller already covers (by id, or by phone).
      const mayChange = principal.kind === 'operator' ? undefined : (u: User) => coversUser(principal, u)
      // In parts: while one part is written to the store, the one before is published (the Redis
      // info hashes, and ClickHouse, which works in its own threads). Publishes run one after
      // another, so a communicator in two parts is recorded in order.
      let published: Promise<void> = Promise.resolve()
      for (let i = 0; i < valid.length; i += PART) {
        const part = valid.slice(i, i + PART)
        const results = await deps.users.upsertMany(part.map((v) => v.input), mayChange)
        const stored: User[] = []
        results.forEach((r, j) => {
          if (r.status === 'fulfilled') {
            stored.push(r.value.user)
            r.value.created ? created++ : updated++
          } else if (r.reason instanceof UserConflict) {
            errors.push({ row: part[j].row, code: r.reason.code, message: r.reason.message })
          } else {
            errors.push({ row: part[j].row, code: 'unavailable', message: 'store unavailable; retry this row' })
          }
        })
        // The durable store has them; now the caches the hot path and listings read.
        published = published.then(() => publishCommunicators(deps, stored, 'import'))
        published.catch(() => {}) // awaited below; a failure fails the request there
      }
      await published
      errors.sort((a, b) => a.row - b.row)
      return c.json({ created, updated, errors }, 200)
    },
  )

  const getRoute = createRoute({
    method: 'get',
    path: '/v1/users/{id}',
    summary: 'A communicator’s profile (herself, an operator, or an official whose scope covers the communicator)',
    security: [{ bearer: [] }],
    request: { params: z.object({ id: z.string() }) },
    responses: {
      200: {
        description: 'Profile',
        content: {
          'application/json': {
            schema: z.object({
              id: z.string(), real_name: z.string(), phone: z.string(), region_code: z.string(), kind: z.string(),
              institution_id: z.string().nullable(), certified_at: z.string(), points: z.number().int(), shares: z.number().int(),
            }),
          },
        },
      },
      ...errorResponses(401, 403, 404),
    },
  })
  app.openapi(getRoute, async (c) => {
    const id = c.req.valid('param').id
    const who = c.get('principal')
    if (who.kind === 'app') throw forbidden('officials and operators only')
    const self = who.kind !== 'operator' && who.account?.userId === id
    if (who.kind === 'communicator' && !self) throw forbidden('outside your scope')
    const u = await deps.users.get(id)
    // Outside her scope an official learns nothing, not even whether the id exists.
    if (!self && (u ? !coversUser(who, u) : who.kind !== 'operator')) throw forbidden('outside your scope')
    if (!u) throw notFound('no such communicator')
    const all = await readTotals(deps.redis, u.id, 'a')
    return c.json({
      id: u.id, real_name: u.real_name, phone: who.kind === 'operator' || self ? u.phone : maskPhone(u.phone), region_code: u.region_code, kind: u.kind,
      institution_id: u.institution_id || null, certified_at: shanghaiIso(u.certified_at), points: all.points, shares: all.shares,
    }, 200)
  })
}
