import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import type { Redis } from 'ioredis'
import { badRequest, forbidden, notFound } from '../../core/errors.ts'
import { createInfoReader, readInfos, type InfoReader } from '../../core/keys.ts'
import type { RegionTree } from '../../core/regions.ts'
import { isGated, unitScope, unpackScore, type BoardScope, type Metric } from '../../core/scoring.ts'
import { createBoardReader, encodeCursor, type BoardReader, type BoardRef } from '../../core/board-reads.ts'
import { createPageCache } from '../../core/page-cache.ts'
import type { UserStore } from '../../core/store/users.ts'
import { parseDay, periodRange, PERIODS, shanghaiIso, type Period, type PeriodRange } from '../../core/time.ts'
import type { AuthEnv, Principal } from '../middleware/auth/index.ts'
import type { InstitutionStore } from '../../core/store/institutions.ts'
import { coversUser, institutionTarget, mustRead, type Target } from '../middleware/scope/index.ts'
import { errorResponses } from '../schemas.ts'

export interface LeaderboardDeps {
  redis: Redis
  tree: RegionTree
  users: UserStore
  institutions: Pick<InstitutionStore, 'get'>
}

export const BoardEntry = z.object({
  rank: z.number().int(),
  user_id: z.string(),
  name: z.string(),
  institution_id: z.string().nullable(),
  region_code: z.string().nullable(),
  score: z.number().int(),
  reached_at: z.string(),
})

const BoardQuery = z.object({
  metric: z.enum(['shares', 'points']).default('shares'),
  region: z.string().regex(/^(\d{2}|\d{4}|\d{6}|\d{9})$/, 'must be a GB/T 2260 code of 2, 4, 6 or 9 digits').optional(),
  institution: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
  period: z.enum(PERIODS as [Period, ...Period[]]).default('day'),
  date: z.string().optional(),
})

async function targetOf(b: Board, deps: Pick<LeaderboardDeps, 'institutions'>): Promise<Target> {
  return b.institution ? institutionTarget(b.institution, deps.institutions) : b.region ? { region_code: b.region } : { national: true }
}

interface Board {
  key: string
  ref: BoardRef
  metric: Metric
  range: PeriodRange
  region: string | null
  institution: string | null
}

/** The period of a board query: the one holding `date` (a Shanghai day, YYYY-MM-DD), or now. */
export function periodOn(period: Period, date: string | undefined): PeriodRange {
  if (date === undefined) return periodRange(period, Date.now())
  const d = parseDay(date)
  if (d === null) throw badRequest('date: must be a day YYYY-MM-DD')
  return periodRange(period, d)
}

function resolveBoard(q: z.infer<typeof BoardQuery>, tree: RegionTree, reader: BoardReader): Board {
  if (q.region && q.institution) throw badRequest('give region or institution, not both')
  if (q.region && !tree.get(q.region)) throw notFound(`region ${q.region} is not a GB/T 2260 division`)
  const range = periodOn(q.period, q.date)
  const scope: BoardScope = q.institution ? { kind: 'institution', id: q.institution } : q.region ? { kind: 'region', code: q.region } : { kind: 'national' }
  const ref = reader.ref(q.metric, scope, range.key)
  return { key: ref.key, ref, metric: q.metric, range, region: q.region ?? null, institution: q.institution ?? null }
}

const seesRealNames = (p: Principal) => p.kind === 'operator' || p.kind === 'official'

/** Real names go to operators and officials in scope; apps and communicators, who may show boards publicly, get them masked (张*). */
export function displayName(name: string, p: Principal): string {
  if (seesRealNames(p)) return name
  const chars = [...name]
  return chars.length ? chars[0] + '*'.repeat(Math.max(1, chars.length - 1)) : ''
}

async function toEntries(infoOf: InfoReader, board: Board, flat: string[], firstRank: number, p: Principal) {
  const pairs: [string, number][] = []
  for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i], Number(flat[i + 1])])
  const infos = await infoOf(pairs.map(([m]) => m))
  return pairs.map(([user_id, stored], i) => {
    const { count, reachedAt } = unpackScore(board.range.period, board.range.startMs, stored)
    const info = infos.get(user_id)
    return {
      rank: firstRank + i,
      user_id,
      name: info ? displayName(info.name, p) : '',
      institution_id: info?.institution_id ?? null,
      region_code: info?.region_code ?? null,
      score: count,
      reached_at: shanghaiIso(reachedAt),
      _stored: stored,
    }
  })
}

export { decodeCursor, encodeCursor, pageBoard } from '../../core/board-reads.ts'

export function mountLeaderboards(app: OpenAPIHono<AuthEnv>, deps: LeaderboardDeps, opts: { topK: number; pageCacheMs: number }) {
  const { redis, tree } = deps
  const reader = createBoardReader({ redis, tree, topK: opts.topK })
  const infoOf = createInfoReader({ redis })
  /**
   * Rendered pages, reused for pageCacheMs after their Redis read (core/page-cache.ts): the top pages
   * every app shows are read by thousands at once, and rendering one (100 entries) costs this
   * process far more than sending it. Keyed by everything the body depends on; the scope check runs
   * on every request before it.
   */
  const pages = createPageCache({ ttlMs: opts.pageCacheMs })
  const listRoute = createRoute({
    method: 'get',
    path: '/v1/leaderboards',
    summary: 'Communicators ranked by share volume or points in a region or institution for a period',
    description: 'Unique ranks: score desc, then earlier reached_at (event time), then user_id. Keyset paged with `after`.',
    security: [{ bearer: [] }],
    request: {
      query: BoardQuery.extend({
        limit: z.coerce.number().int().min(1).max(1000).default(100),
        after: z.string().optional(),
      }),
    },
    responses: {
      200: {
        description: 'A page of the board',
        content: {
          'application/json': {
            schema: z.object({
              metric: z.string(), region: z.string().nullable(), institution: z.string().nullable(), period: z.string(),
              from: z.string().nullable(), to: z.string().nullable(), total: z.number().int(), entries: z.array(BoardEntry), next: z.string().nullable(),
            }),
          },
        },
      },
      ...errorResponses(400, 401, 404),
    },
  })
  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query')
    const board = resolveBoard(q, tree, reader)
    const p = c.get('principal')
    mustRead(p, await targetOf(board, deps))
    const body = await pages.get(`${board.key} ${q.limit} ${seesRealNames(p) ? 'n' : 'm'} ${q.after ?? ''}`, async () => {
      const [total, { flat, firstRank }] = await Promise.all([reader.total(board.ref), reader.page(board.ref, q.limit, q.after)])
      const entries = await toEntries(infoOf, board, flat, firstRank, p)
      const last = entries[entries.length - 1]
      const next = last && last.rank < total && entries.length === q.limit ? encodeCursor(last._stored, last.user_id, board.key) : null
      return JSON.stringify({
        metric: board.metric, region: board.region, institution: board.institution, period: board.range.period,
        from: board.range.from, to: board.range.to, total,
        entries: entries.map(({ _stored, ...e }) => e),
        next,
      })
    })
    // Already JSON (the bytes c.json would send); the route's typed response cannot say so.
    return c.body(body, 200, { 'content-type': 'application/json' }) as never
  })

  const meRoute = createRoute({
    method: 'get',
    path: '/v1/leaderboards/users/{user_id}',
    summary: 'A communicator’s rank on a board, with neighbours',
    security: [{ bearer: [] }],
    request: {
      params: z.object({ user_id: z.string() }),
      query: BoardQuery.extend({ around: z.coerce.number().int().min(0).max(100).default(5) }),
    },
    responses: {
      200: {
        description: 'Rank (null with score 0 when nothing counted)',
        content: { 'application/json': { schema: z.object({ rank: z.number().int().nullable(), score: z.number().int(), total: z.number().int(), entries: z.array(BoardEntry) }) } },
      },
      ...errorResponses(400, 401, 404),
    },
  })
  app.openapi(meRoute, async (c) => {
    const { user_id } = c.req.valid('param')
    const q = c.req.valid('query')
    const board = resolveBoard(q, tree, reader)
    const p = c.get('principal')
    mustRead(p, await targetOf(board, deps))
    const sc = board.ref.scope
    // A complete board is read beside her info, in one round trip (nothing is answered before the scope check).
    const [cached, early] = await Promise.all([readInfos(redis, [user_id]), isGated(sc) ? null : reader.aroundComplete(board.ref, user_id, q.around)])
    const info = cached.get(user_id) ?? (await deps.users.get(user_id))
    if (p.kind === 'official' && !(info && coversUser(p, info))) throw forbidden('outside your scope')
    if (!info) throw notFound('no such communicator')
    const lineage = tree.lineage(info.region_code).map((r) => r.code)
    // Her unit: the complete board that holds her inside a gated board (none when she is outside it).
    const unit = sc.kind === 'national' || (sc.kind === 'region' && lineage.includes(sc.code)) ? unitScope(lineage.length ? lineage : [info.region_code]) : null
    const [around, total] = early ? [early, early.total] : await Promise.all([reader.around(board.ref, user_id, unit, q.around), reader.total(board.ref)])
    if (around.rank === null) return c.json({ rank: null, score: 0, total, entries: [] }, 200)
    const entries = (await toEntries(infoOf, board, around.flat, around.firstRank, c.get('principal'))).map(({ _stored, ...e }) => e)
    const me = entries.find((e) => e.user_id === user_id)
    return c.json({ rank: around.rank, score: me?.score ?? 0, total, entries }, 200)
  })
}
