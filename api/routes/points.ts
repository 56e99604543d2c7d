import type { ClickHouseClient } from '@clickhouse/client'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import type { JetStreamClient } from '@nats-io/jetstream'
import type { Redis } from 'ioredis'
import { dedupeGen, fingerprint, type DedupeWindow } from '../../aggregator/user-step.ts'
import { ApiError, badRequest, unavailable } from '../../core/errors.ts'
import { EVENT_TYPES, type StreamEvent } from '../../core/events.ts'
import { msgId } from '../../core/stream.ts'
import { counterField, keys, parseTotals, streakField } from '../../core/keys.ts'
import { RULES, SIGNIN_MAX_BONUS } from '../../core/scoring.ts'
import type { UserStore } from '../../core/store/users.ts'
import { compactDay, DAY_MS, isoDay, shanghaiIso } from '../../core/time.ts'
import { readBalance } from '../../core/wallet.ts'
import { accountOf, requireAccount, type AuthEnv } from '../middleware/auth/index.ts'
import { errorResponses } from '../schemas.ts'

/**
 * Check-in and points of the logged-in communicator (seed 001 "我的": 签到, 赚取的积分, 积分商城).
 *
 * `POST /v1/me/signin` goes through the same pipeline as an app's events: it publishes a `signin`
 * event to the JetStream stream, and the aggregator dedupes, caps and scores it like any other. Its id
 * is deterministic, `signin:<user>:<Shanghai day>`, so calling it twice a day (or retrying after a
 * lost answer) is the same event: dropped by the stream's duplicate window, or decided `duplicate` by
 * the aggregator's dedupe. An app's own sign-in event that day has another id; then the daily cap of
 * one sign-in (RULES) decides the second one `capped` with no points — whichever came first earned the
 * day's points and streak. The answer waits (up to 3 s) for the aggregator's decision.
 */
export interface PointsDeps {
  users: UserStore
  redis: Redis
  ch: ClickHouseClient
  js: JetStreamClient
  natsUp: () => boolean
}

const CODES: Record<string, string> = { c: 'counted', x: 'capped', u: 'unknown_user', n: 'uncertified' }

function streakOf(todaySs: string | null, yesterdaySs: string | null): number {
  return Number(todaySs ?? yesterdaySs ?? 0)
}

export function mountPoints(app: OpenAPIHono<AuthEnv>, deps: PointsDeps, opts: { subject: string; win: DedupeWindow }) {
  const enc = new TextEncoder()
  const userOf = async (p: Parameters<typeof accountOf>[0]) => {
    const a = accountOf(p)!
    const u = await deps.users.get(a.userId)
    if (!u) throw new ApiError(409, 'not_certified', 'complete 科普员 certification first')
    return u
  }

  const signin = createRoute({
    method: 'post',
    path: '/v1/me/signin',
    summary: 'Check in for today (签到): a signin event through the event pipeline; idempotent per day',
    description: 'Event id `signin:<user>:<YYYYMMDD>` (Asia/Shanghai). Answers the decision once the aggregator has made it (`pending` if it takes more than 3 s): `counted` with points and streak, `capped` when the app already signed in today.',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    responses: {
      200: {
        description: 'Decision',
        content: {
          'application/json': {
            schema: z.object({ event_id: z.string(), day: z.string(), decision: z.enum(['counted', 'capped', 'pending', 'unknown_user', 'uncertified']), points: z.number().int(), streak: z.number().int() }),
          },
        },
      },
      ...errorResponses(401, 403, 409, 503),
    },
  })
  app.openapi(signin, async (c) => {
    const u = await userOf(c.get('principal'))
    if (!deps.natsUp()) throw unavailable('nats')
    const now = Date.now()
    const day = compactDay(now)
    const id = `signin:${u.id}:${day}`
    const ev: StreamEvent = { kind: 'event', id, type: 'signin', user_id: u.id, ts: now, client_ts: now, sent_at: null, received_at: now, app_id: 'api', content_id: '', channel: '', viewer: '' }
    try {
      await deps.js.publish(opts.subject, enc.encode(JSON.stringify(ev)), { msgID: msgId(ev), timeout: 5000 })
    } catch {
      throw unavailable('nats')
    }
    // The decision is recorded in the user's dedupe entries of the receive day's generation.
    const fp = fingerprint(id)
    const bucket = keys.dedupe(u.id, dedupeGen(now, opts.win))
    let v: string | null = null
    for (let waited = 0; waited < 3000 && v === null; waited += 50) {
      v = await deps.redis.hget(bucket, fp)
      if (v === null) await new Promise((r) => setTimeout(r, 50))
    }
    const m = v ? /^[\d.]+:(\w)(\d+):(\d+)$/.exec(v) : null
    return c.json({ event_id: id, day: isoDay(now), decision: (m ? CODES[m[1]] : 'pending') as 'counted', points: m ? Number(m[2]) : 0, streak: m ? Number(m[3]) : 0 }, 200)
  })

  const points = createRoute({
    method: 'get',
    path: '/v1/me/points',
    summary: 'My points: balance (earned − redeemed + refunded), today’s earnings per action with the caps left, sign-in streak',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    responses: {
      200: {
        description: 'Points',
        content: {
          'application/json': {
            schema: z.object({
              user_id: z.string(),
              balance: z.number().int(), earned: z.number().int(), redeemed: z.number().int(), refunded: z.number().int(),
              streak: z.number().int(), signed_in_today: z.boolean(),
              today: z.object({
                day: z.string(),
                points: z.number().int(),
                actions: z.array(z.object({
                  type: z.string(), count: z.number().int(), points: z.number().int(),
                  points_each: z.number().int(), points_left: z.number().int(), counts_left: z.number().int(),
                })),
              }),
            }),
          },
        },
      },
      ...errorResponses(401, 403, 409),
    },
  })
  app.openapi(points, async (c) => {
    const u = await userOf(c.get('principal'))
    const now = Date.now()
    const day = compactDay(now)
    const [bal, fields] = await Promise.all([
      readBalance(deps.redis, u.id),
      deps.redis.hmget(keys.user(u.id), 'd' + day, streakField(day), streakField(compactDay(now - DAY_MS)), ...EVENT_TYPES.map((t) => counterField(day, t))),
    ])
    const [dayTotals, ss, yss] = fields
    const counts = new Map(EVENT_TYPES.map((t, i) => [t, Number(fields[3 + i] ?? 0)]))
    const streak = streakOf(ss, yss)
    const actions = EVENT_TYPES.map((type) => {
      const rule = RULES[type]
      const count = counts.get(type)!
      const pts = type === 'signin'
        ? (count > 0 ? rule.points + Math.min(Number(ss ?? 1) - 1, SIGNIN_MAX_BONUS) : 0)
        : Math.min(count, rule.pointsLimit) * rule.points
      const next = type === 'signin' ? rule.points + Math.min(streak, SIGNIN_MAX_BONUS) : rule.points
      // Points still to earn today (not actions): a sign-in not yet made is worth its streak's points.
      const left = type === 'signin' ? (count > 0 ? 0 : next) : Math.max(0, rule.pointsLimit - count) * rule.points
      return { type, count, points: pts, points_each: count > 0 && type === 'signin' ? pts : next, points_left: left, counts_left: Math.max(0, rule.limit - count) }
    })
    return c.json({
      user_id: u.id, ...bal, streak, signed_in_today: counts.get('signin')! > 0,
      today: { day: isoDay(now), points: parseTotals(dayTotals).points, actions },
    }, 200)
  })

  const ledger = createRoute({
    method: 'get',
    path: '/v1/me/ledger',
    summary: 'Every change of my points, newest first: points earned (counted events, with the event id) and store redemptions and refunds',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    request: {
      query: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100), after: z.string().max(300).optional() }),
    },
    responses: {
      200: {
        description: 'Ledger page',
        content: {
          'application/json': {
            schema: z.object({
              entries: z.array(z.object({
                id: z.string(), at: z.string(), kind: z.enum(['earn', 'redeem', 'refund']), reason: z.string(), delta: z.number().int(),
                source: z.string().describe('the event id (earn) or the redemption id (redeem, refund)'), item_id: z.string().nullable(),
              })),
              next: z.string().nullable(),
            }),
          },
        },
      },
      ...errorResponses(400, 401, 403, 409),
    },
  })
  app.openapi(ledger, async (c) => {
    const u = await userOf(c.get('principal'))
    const q = c.req.valid('query')
    const params: Record<string, unknown> = { u: u.id, limit: q.limit + 1 }
    let cond = ''
    if (q.after) {
      const m = /^(\d+)\n(.+)$/s.exec(Buffer.from(q.after, 'base64url').toString())
      if (!m) throw badRequest('after: not a cursor from this list')
      cond = 'WHERE (at, id) < ({at:Int64}, {id:String})'
      Object.assign(params, { at: Number(m[1]), id: m[2] })
    }
    const r = await deps.ch.query({
      query: `SELECT * FROM (
                SELECT toUnixTimestamp64Milli(ts) AS at, event_id AS id, 'earn' AS kind, type AS reason, toInt64(points) AS delta, event_id AS source, '' AS item_id
                FROM facts FINAL WHERE user_id = {u:String} AND decision = 'counted' AND points > 0
                UNION ALL
                SELECT toUnixTimestamp64Milli(at) AS at, id, toString(kind) AS kind, reason, delta, redemption_id AS source, item_id
                FROM ledger FINAL WHERE user_id = {u:String}
              ) ${cond} ORDER BY at DESC, id DESC LIMIT {limit:UInt32}`,
      query_params: params,
      format: 'JSONEachRow',
    })
    const rows = (await r.json()) as { at: string; id: string; kind: 'earn'; reason: string; delta: string; source: string; item_id: string }[]
    const page = rows.slice(0, q.limit)
    const last = page.at(-1)
    return c.json({
      entries: page.map((x) => ({ id: x.id, at: shanghaiIso(Number(x.at)), kind: x.kind, reason: x.reason, delta: Number(x.delta), source: x.source, item_id: x.item_id || null })),
      next: rows.length > q.limit && last ? Buffer.from(`${last.at}\n${last.id}`).toString('base64url') : null,
    }, 200)
  })
}
