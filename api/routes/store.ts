import type { ClickHouseClient } from '@clickhouse/client'
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import type { Redis } from 'ioredis'
import { ApiError, badRequest, notFound, unavailable } from '../../core/errors.ts'
import type { Item, ItemStore } from '../../core/store/items.ts'
import type { UserStore } from '../../core/store/users.ts'
import { parseDay, parseInstant, shanghaiIso } from '../../core/time.ts'
import { adjustStock, available, initStock, parseRecord, redeem, refund, sweepReservations, stockKey, walletsRebuilding, type Redemption } from '../../core/wallet.ts'
import { accountOf, requireAccount, requireOperator, type AuthEnv } from '../middleware/auth/index.ts'
import { errorResponses } from '../schemas.ts'
import { cursor } from '../cursor.ts'

/**
 * The points store (积分商城): operators manage items; communicators redeem them with their points,
 * atomically and idempotently (see core/wallet.ts for the two-slot reservation with compensation);
 * operators refund. Redemptions and refunds are ledger facts in ClickHouse.
 */
export interface StoreDeps {
  items: ItemStore
  users: UserStore
  redis: Redis
  ch: ClickHouseClient
}

const instant = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v) ? parseDay(v) : parseInstant(v)
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: 'must be a day (YYYY-MM-DD), ISO-8601 with an offset or epoch ms' })
    return z.NEVER
  }
  return ms
})
const ItemFields = z.object({
  name: z.string().trim().min(1).max(64),
  description: z.string().trim().max(500).default(''),
  price: z.number().int().min(1).max(10_000_000),
  stock: z.number().int().min(0).max(100_000_000),
  per_user_limit: z.number().int().min(1).max(1_000_000).nullable().default(null),
  starts_at: instant.nullable().default(null),
  ends_at: instant.nullable().default(null),
  active: z.boolean().default(true),
})
const ItemOut = z.object({
  id: z.string(), name: z.string(), description: z.string(), price: z.number().int(), stock: z.number().int(), available: z.number().int(),
  per_user_limit: z.number().int().nullable(), starts_at: z.string().nullable(), ends_at: z.string().nullable(), active: z.boolean(), on_sale: z.boolean(),
})
const RedemptionOut = z.object({
  id: z.string(), item_id: z.string(), price: z.number().int(), idempotency_key: z.string(), at: z.string(), balance: z.number().int().nullable(),
})
const KEY = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1–64 of [A-Za-z0-9_-]')

const onSale = (i: Item, now = Date.now()) => i.active && (i.starts_at === null || now >= i.starts_at) && (i.ends_at === null || now < i.ends_at)

/** 503 while a rebuild restores the wallets: a balance read then would be wrong (points look spent or missing). */
async function refuseWhileRebuilding(redis: Redis) {
  if (await walletsRebuilding(redis)) throw new ApiError(503, 'rebuilding', 'points are being rebuilt from the ledger; retry shortly', { 'Retry-After': '5' })
}

export function mountStore(app: OpenAPIHono<AuthEnv>, deps: StoreDeps) {
  const { redis, ch } = deps
  async function view(i: Item): Promise<z.infer<typeof ItemOut>> {
    let n = await available(redis, i.id)
    if (n === null) {
      await initStock(redis, ch, i)
      n = (await available(redis, i.id)) ?? 0
    }
    return {
      id: i.id, name: i.name, description: i.description, price: i.price, stock: i.stock, available: n, per_user_limit: i.per_user_limit,
      starts_at: i.starts_at === null ? null : shanghaiIso(i.starts_at), ends_at: i.ends_at === null ? null : shanghaiIso(i.ends_at), active: i.active, on_sale: onSale(i),
    }
  }
  const windowOk = (i: { starts_at: number | null; ends_at: number | null }) => {
    if (i.starts_at !== null && i.ends_at !== null && i.ends_at <= i.starts_at) throw badRequest('ends_at: must be after starts_at')
  }

  const create = createRoute({
    method: 'post',
    path: '/v1/store/items',
    summary: 'Create a store item (operators): name, price in points, stock, per-user limit, sale window',
    security: [{ bearer: [] }],
    middleware: [requireOperator()] as const,
    request: { body: { required: true, content: { 'application/json': { schema: ItemFields } } } },
    responses: { 201: { description: 'Created', content: { 'application/json': { schema: ItemOut } } }, ...errorResponses(400, 401, 403) },
  })
  app.openapi(create, async (c) => {
    const body = c.req.valid('json')
    windowOk(body)
    const item = await deps.items.create(body)
    await redis.hsetnx(stockKey(item.id), 'n', String(item.stock))
    return c.json(await view(item), 201)
  })

  const patch = createRoute({
    method: 'patch',
    path: '/v1/store/items/{id}',
    summary: 'Change a store item (operators); a new stock adds or removes the difference from what is available',
    security: [{ bearer: [] }],
    middleware: [requireOperator()] as const,
    request: { params: z.object({ id: z.string().max(64) }), body: { required: true, content: { 'application/json': { schema: ItemFields.partial().strict() } } } },
    responses: { 200: { description: 'Changed', content: { 'application/json': { schema: ItemOut } } }, ...errorResponses(400, 401, 403, 404, 409) },
  })
  app.openapi(patch, async (c) => {
    const { id } = c.req.valid('param')
    const body = Object.fromEntries(Object.entries(c.req.valid('json')).filter(([, v]) => v !== undefined)) as Partial<Item>
    if (!(await deps.items.get(id))) throw notFound('no such item')
    const { before, after } = await deps.items.update(id, (i) => {
      const next = { ...i, ...body }
      windowOk(next)
      return next
    })
    if (after.stock !== before.stock) {
      const n = await available(redis, id)
      if (n !== null && n + after.stock - before.stock < 0) {
        await deps.items.update(id, (i) => ({ ...i, stock: before.stock }))
        throw new ApiError(409, 'stock_in_use', `only ${n} units are unredeemed; stock can go down by at most that`)
      }
      await adjustStock(redis, id, after.stock - before.stock)
    }
    return c.json(await view(after), 200)
  })

  const list = createRoute({
    method: 'get',
    path: '/v1/store/items',
    summary: 'Store items with what is available (anyone logged in; apps too)',
    security: [{ bearer: [] }],
    request: {
      query: z.object({
        on_sale: z.enum(['true', 'false']).optional(),
        limit: z.coerce.number().int().min(1).max(1000).default(100),
        after: z.string().max(200).optional().describe('`next` of the previous page'),
      }),
    },
    responses: { 200: { description: 'Items, by id, keyset-paged', content: { 'application/json': { schema: z.object({ items: z.array(ItemOut), next: z.string().nullable() }) } } }, ...errorResponses(400, 401) },
  })
  app.openapi(list, async (c) => {
    const q = c.req.valid('query')
    let items = (await deps.items.list()).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    if (q.on_sale) items = items.filter((i) => onSale(i) === (q.on_sale === 'true'))
    if (q.after) {
      const [id] = cursor.dec<[string]>(q.after, (v) => v.length === 1 && typeof v[0] === 'string')
      items = items.filter((i) => i.id > id)
    }
    const page = items.slice(0, q.limit)
    const next = items.length > q.limit ? cursor.enc(page[page.length - 1].id) : null
    return c.json({ items: await Promise.all(page.map(view)), next }, 200)
  })

  const out = (r: Redemption, balance: number | null) => ({ id: r.id, item_id: r.item_id, price: r.price, idempotency_key: r.idempotency_key, at: shanghaiIso(r.at), balance })

  const redeemRoute = createRoute({
    method: 'post',
    path: '/v1/store/redemptions',
    summary: 'Redeem an item with my points (idempotent by idempotency_key)',
    description: '201 the first time; 200 with the same redemption when the key was used before (also for a different item: the key names one redemption). 409 out_of_stock, insufficient_points, limit_reached, not_on_sale. Balance and stock never go below zero under concurrent requests.',
    security: [{ bearer: [] }],
    middleware: [requireAccount()] as const,
    request: { body: { required: true, content: { 'application/json': { schema: z.object({ item_id: z.string().max(64), idempotency_key: KEY }) } } } },
    responses: {
      201: { description: 'Redeemed', content: { 'application/json': { schema: RedemptionOut } } },
      200: { description: 'This key redeemed before: that redemption', content: { 'application/json': { schema: RedemptionOut } } },
      ...errorResponses(400, 401, 403, 404, 409, 503),
    },
  })
  app.openapi(redeemRoute, async (c) => {
    const { item_id, idempotency_key } = c.req.valid('json')
    const a = accountOf(c.get('principal'))!
    const u = await deps.users.get(a.userId)
    if (!u) throw new ApiError(409, 'not_certified', 'complete 科普员 certification first')
    const item = await deps.items.get(item_id)
    if (!item) throw notFound('no such item')
    if (!onSale(item)) {
      const ex = await redis.hget(`u:{${u.id}}:w`, `k:${idempotency_key}`)
      if (ex) return c.json(out(parseRecord(u.id, idempotency_key, ex), null), 200)
      throw new ApiError(409, 'not_on_sale', 'the item is not on sale now')
    }
    // At most one sweep per item every 10 s, by whichever request comes.
    if (await redis.set(`st:{${item.id}}:sweep`, '1', 'EX', 10, 'NX')) await sweepReservations(redis, ch, item.id)
    await refuseWhileRebuilding(redis)
    let r
    try {
      r = await redeem(redis, ch, { user: u.id, idem: idempotency_key, item, actor: a.id })
    } catch {
      throw unavailable('points store')
    }
    if (r.status === 'ok') return c.json(out(r.redemption, r.balance), 201)
    if (r.status === 'dup') return c.json(out(r.redemption, r.balance), 200)
    if (r.status === 'out') throw new ApiError(409, 'out_of_stock', 'out of stock')
    if (r.status === 'poor') throw new ApiError(409, 'insufficient_points', `not enough points (balance ${r.balance}, price ${item.price})`)
    throw new ApiError(409, 'limit_reached', `at most ${item.per_user_limit} per communicator`)
  })

  const refundRoute = createRoute({
    method: 'post',
    path: '/v1/store/redemptions/{id}/refund',
    summary: 'Refund a redemption (operators): the points and the unit come back, as new facts; idempotent',
    security: [{ bearer: [] }],
    middleware: [requireOperator()] as const,
    request: {
      params: z.object({ id: z.string().regex(/^rd_[0-9a-f]{20}$/) }),
      body: { required: false, content: { 'application/json': { schema: z.object({ reason: z.string().trim().max(200).default('') }) } } },
    },
    responses: {
      200: { description: 'Refunded', content: { 'application/json': { schema: z.object({ id: z.string(), redemption_id: z.string(), user_id: z.string(), points: z.number().int(), refunded_now: z.boolean() }) } } },
      ...errorResponses(400, 401, 403, 404),
    },
  })
  app.openapi(refundRoute, async (c) => {
    const { id } = c.req.valid('param')
    let reason = ''
    try {
      reason = (c.req.valid('json') as { reason?: string } | undefined)?.reason ?? ''
    } catch {
      /* no body */
    }
    const q = await ch.query({
      query: `SELECT user_id, item_id, -delta AS price, idempotency_key, toUnixTimestamp64Milli(at) AS at FROM ledger FINAL WHERE id = {id:String} AND kind = 'redeem'`,
      query_params: { id },
      format: 'JSONEachRow',
    })
    const [row] = (await q.json()) as { user_id: string; item_id: string; price: string; idempotency_key: string; at: string }[]
    if (!row) throw notFound('no such redemption')
    const p = c.get('principal')
    const actor = p.kind === 'operator' ? (p.officialId ?? 'admin') : 'unknown'
    const r: Redemption = { id, user_id: row.user_id, item_id: row.item_id, price: Number(row.price), idempotency_key: row.idempotency_key, at: Number(row.at) }
    await refuseWhileRebuilding(redis)
    const now = await refund(redis, ch, r, reason || '退款', actor)
    return c.json({ id: 'rf_' + id.slice(3), redemption_id: id, user_id: r.user_id, points: r.price, refunded_now: now }, 200)
  })
}
