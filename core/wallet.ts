import { pipelineFor } from './clients/redis.ts'
import { createHash, randomBytes } from 'node:crypto'
import type { ClickHouseClient } from '@clickhouse/client'
import type { Redis, Result } from 'ioredis'
import { keys, parseTotals } from './keys.ts'
import { chTime } from './schema.ts'

/**
 * Points spent in the store (积分商城) and given back, and item stock, in Redis — with the ledger
 * facts in ClickHouse as the record.
 *
 * Balance = earned − redeemed + refunded. Earned is the user's all-time points (`u:{U}` field a, its p,
 * kept by the aggregator); redeemed and refunded are in the user's wallet `u:{U}:w` (r, f; `i:<item>`
 * units held per item for per-user limits; `k:<idempotency key>` → the redemption; `rf:<redemption>`
 * marks a refund). Both hashes are in the user's hash slot, so one script checks and debits the
 * balance atomically: concurrent redemptions never take it below zero.
 *
 * Stock is another slot (`st:{<item>}`: n = units available; `st:{<item>}:r` = reservations;
 * `st:{<item>}:f` = refunded redemptions). On a Redis Cluster no script can touch both, so a
 * redemption is a reservation with compensation:
 *   1. reserve one unit (script in the item's slot: n > 0 → n − 1, and a reservation record);
 *   2. debit the user (script in the user's slot: idempotency key, per-user limit, balance);
 *   3a. refused (balance, limit, or the key was used) → release the unit (n + 1, once);
 *   3b. accepted → write the ledger fact, then confirm (drop the reservation record).
 * A process that dies between 1 and 3 leaves a reservation record; the sweeper, after 60 s, asks the
 * user's wallet whether that redemption happened: yes → write the fact (same id: folded) and
 * confirm; no → release. Stock is never negative (only step 1 takes units) and never lost.
 * Refunds are idempotent per redemption in both slots (HSETNX / SADD guards).
 *
 * `u:*` is derived state and a rebuild deletes it: `rebuildWallets` restores the wallets from the
 * ledger facts. Stock keys are not derived and survive rebuilds; a lost stock key is recomputed from
 * the item's stock and the ledger (`initStock`).
 */
export const walletKey = (u: string) => `u:{${u}}:w`

/** Whether a rebuild is deleting and restoring the wallets now: no points may be spent or refunded meanwhile. */
export const walletsRebuilding = async (redis: Redis) => (await redis.exists(keys.rebuilding)) === 1
export const stockKey = (item: string) => `st:{${item}}`
const reservationsKey = (item: string) => `st:{${item}}:r`
const refundedKey = (item: string) => `st:{${item}}:f`

export const RESERVATION_TIMEOUT_MS = 60_000
/** A request that held its reservation longer than this gives up before debiting (the sweeper may have released it). */
export const RESERVATION_USE_MS = 20_000

const RESERVE = `
local n = redis.call('HGET', KEYS[1], 'n')
if not n then return 'missing' end
if tonumber(n) <= 0 then return 'out' end
redis.call('HINCRBY', KEYS[1], 'n', -1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 'ok'
`
const RELEASE = `
if redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'n', 1) return 1 end
return 0
`
const RETURN_UNIT = `
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'n', 1) return 1 end
return 0
`
// KEYS: u:{U} (all-time totals in field a, "s,sr,p,pr"), u:{U}:w. ARGV: idempotency key, redemption record, item, price, per-user limit (0 none).
const DEBIT = `
local ex = redis.call('HGET', KEYS[2], 'k:' .. ARGV[1])
if ex then return {'dup', ex} end
local w = redis.call('HMGET', KEYS[2], 'r', 'f', 'i:' .. ARGV[3])
local earned = tonumber(string.match(redis.call('HGET', KEYS[1], 'a') or '', '^[^,]*,[^,]*,(%d+)') or '0')
local bal = earned - tonumber(w[1] or '0') + tonumber(w[2] or '0')
local price, lim = tonumber(ARGV[4]), tonumber(ARGV[5])
if lim > 0 and tonumber(w[3] or '0') >= lim then return {'limit', tostring(bal)} end
if bal < price then return {'poor', tostring(bal)} end
redis.call('HINCRBY', KEYS[2], 'r', price)
redis.call('HINCRBY', KEYS[2], 'i:' .. ARGV[3], 1)
redis.call('HSET', KEYS[2], 'k:' .. ARGV[1], ARGV[2])
return {'ok', tostring(bal - price)}
`
// KEYS: u:{U}:w. ARGV: redemption id, item, price.
const CREDIT = `
if redis.call('HSETNX', KEYS[1], 'rf:' .. ARGV[1], '1') == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'f', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'i:' .. ARGV[2], -1)
return 1
`

declare module 'ioredis' {
  interface RedisCommander<Context> {
    stockReserve(k1: string, k2: string, field: string, value: string): Result<string, Context>
    stockRelease(k1: string, k2: string, field: string): Result<number, Context>
    stockReturn(k1: string, k2: string, rid: string): Result<number, Context>
    walletDebit(k1: string, k2: string, idem: string, record: string, item: string, price: number, limit: number): Result<[string, string], Context>
    walletCredit(k1: string, rid: string, item: string, price: number): Result<number, Context>
  }
}

export function defineWallet(redis: Redis) {
  if ((redis as unknown as { walletDebit?: unknown }).walletDebit) return
  redis.defineCommand('stockReserve', { numberOfKeys: 2, lua: RESERVE })
  redis.defineCommand('stockRelease', { numberOfKeys: 2, lua: RELEASE })
  redis.defineCommand('stockReturn', { numberOfKeys: 2, lua: RETURN_UNIT })
  redis.defineCommand('walletDebit', { numberOfKeys: 2, lua: DEBIT })
  redis.defineCommand('walletCredit', { numberOfKeys: 1, lua: CREDIT })
}

/** The redemption a (user, idempotency key) names: the same id on every retry. */
export const redemptionId = (user: string, idem: string) => 'rd_' + createHash('sha256').update(`${user}\n${idem}`).digest('hex').slice(0, 20)
export const refundId = (rid: string) => 'rf_' + rid.slice(3)

export interface Redemption {
  id: string
  user_id: string
  item_id: string
  price: number
  idempotency_key: string
  at: number
}
const record = (r: Redemption) => `${r.id}|${r.item_id}|${r.price}|${r.at}`
export function parseRecord(user: string, idem: string, v: string): Redemption {
  const [id, item_id, price, at] = v.split('|')
  return { id, user_id: user, item_id, price: Number(price), idempotency_key: idem, at: Number(at) }
}

export interface LedgerRow {
  id: string
  user_id: string
  kind: 'redeem' | 'refund'
  delta: number
  item_id: string
  redemption_id: string
  idempotency_key: string
  reason: string
  actor: string
  at: string
}

async function ledgerHas(ch: ClickHouseClient, id: string): Promise<boolean> {
  const r = await ch.query({ query: 'SELECT count() AS n FROM ledger WHERE id = {id:String}', query_params: { id }, format: 'JSONEachRow' })
  return Number(((await r.json()) as { n: string | number }[])[0].n) > 0
}

export async function insertLedger(ch: ClickHouseClient, rows: LedgerRow[]) {
  if (rows.length) await ch.insert({ table: 'ledger', format: 'JSONEachRow', values: rows })
}
export const redeemRow = (r: Redemption, reason: string, actor: string): LedgerRow => ({
  id: r.id, user_id: r.user_id, kind: 'redeem', delta: -r.price, item_id: r.item_id, redemption_id: r.id,
  idempotency_key: r.idempotency_key, reason, actor, at: chTime(r.at),
})

export interface Balance {
  earned: number
  redeemed: number
  refunded: number
  balance: number
}

export async function readBalance(redis: Redis, user: string): Promise<Balance> {
  const [[, a], [, w]] = (await redis.multi().hget(keys.user(user), 'a').hmget(walletKey(user), 'r', 'f').exec()) as [[null, string | null], [null, (string | null)[]]]
  const earned = parseTotals(a).points
  const redeemed = Number(w[0] ?? 0)
  const refunded = Number(w[1] ?? 0)
  return { earned, redeemed, refunded, balance: earned - redeemed + refunded }
}

/** Units available from the durable numbers: stock − redemptions + refunds (ledger facts). */
export async function initStock(redis: Redis, ch: ClickHouseClient, item: { id: string; stock: number }) {
  const r = await ch.query({
    query: `SELECT countIf(kind = 'redeem') AS out, countIf(kind = 'refund') AS back FROM ledger FINAL WHERE item_id = {item:String}`,
    query_params: { item: item.id },
    format: 'JSONEachRow',
  })
  const [{ out, back }] = (await r.json()) as { out: string; back: string }[]
  // In-flight reservations hold units too.
  const held = await redis.hlen(reservationsKey(item.id))
  await redis.hsetnx(stockKey(item.id), 'n', String(Math.max(0, item.stock - Number(out) + Number(back) - held)))
}

export async function available(redis: Redis, itemId: string): Promise<number | null> {
  const n = await redis.hget(stockKey(itemId), 'n')
  return n === null ? null : Number(n)
}

export async function adjustStock(redis: Redis, itemId: string, delta: number) {
  if (delta && (await redis.exists(stockKey(itemId)))) await redis.hincrby(stockKey(itemId), 'n', delta)
}

export type RedeemResult =
  | { status: 'ok' | 'dup'; redemption: Redemption; balance: number | null }
  | { status: 'out' | 'poor' | 'limit'; balance: number | null }

/**
 * Steps 1–3 above. `onDebited` writes the ledger fact (and may throw: the reservation stays for the
 * sweeper, which completes it).
 */
export async function redeem(
  redis: Redis,
  ch: ClickHouseClient,
  req: { user: string; idem: string; item: { id: string; stock: number; price: number; per_user_limit: number | null; name: string }; actor: string },
): Promise<RedeemResult> {
  defineWallet(redis)
  const { user, idem, item } = req
  const rid = redemptionId(user, idem)
  const field = `${rid}:${randomBytes(4).toString('hex')}`
  const t0 = Date.now()
  let res = await redis.stockReserve(stockKey(item.id), reservationsKey(item.id), field, `${user}|${idem}|${t0}`)
  if (res === 'missing') {
    await initStock(redis, ch, item)
    res = await redis.stockReserve(stockKey(item.id), reservationsKey(item.id), field, `${user}|${idem}|${t0}`)
  }
  if (res === 'out') {
    // Out of stock — unless this key already redeemed (a retry after the last unit went to it).
    const ex = await redis.hget(walletKey(user), `k:${idem}`)
    if (ex) return { status: 'dup', redemption: parseRecord(user, idem, ex), balance: null }
    return { status: 'out', balance: null }
  }
  const release = () => redis.stockRelease(stockKey(item.id), reservationsKey(item.id), field)
  if (Date.now() - t0 > RESERVATION_USE_MS) {
    await release()
    throw new Error('reservation held too long; retry')
  }
  const r: Redemption = { id: rid, user_id: user, item_id: item.id, price: item.price, idempotency_key: idem, at: Date.now() }
  const [status, v] = await redis.walletDebit(keys.user(user), walletKey(user), idem, record(r), item.id, item.price, item.per_user_limit ?? 0)
  if (status !== 'ok') {
    await release()
    if (status === 'dup') return { status: 'dup', redemption: parseRecord(user, idem, v), balance: null }
    return { status: status as 'poor' | 'limit', balance: Number(v) }
  }
  await insertLedger(ch, [redeemRow(r, `兑换 ${item.name}`, req.actor)])
  await redis.hdel(reservationsKey(item.id), field)
  return { status: 'ok', redemption: r, balance: Number(v) }
}

/** Completes or releases reservations older than the timeout (see above). Returns [completed, released]. */
export async function sweepReservations(redis: Redis, ch: ClickHouseClient, itemId: string, olderThanMs = RESERVATION_TIMEOUT_MS): Promise<[number, number]> {
  defineWallet(redis)
  const all = await redis.hgetall(reservationsKey(itemId))
  let done = 0
  let freed = 0
  for (const [field, value] of Object.entries(all)) {
    const [user, idem, t] = value.split('|')
    if (Date.now() - Number(t) < olderThanMs) continue
    const rid = field.split(':')[0]
    const ex = await redis.hget(walletKey(user), `k:${idem}`)
    if (ex && ex.startsWith(rid + '|')) {
      if (!(await ledgerHas(ch, rid))) await insertLedger(ch, [redeemRow(parseRecord(user, idem, ex), '兑换 (completed by the sweeper)', 'sweeper')])
      await redis.hdel(reservationsKey(itemId), field)
      done++
    } else {
      freed += await redis.stockRelease(stockKey(itemId), reservationsKey(itemId), field)
    }
  }
  return [done, freed]
}

/** Gives a redemption's points and unit back; idempotent per redemption in both slots. Returns whether this call refunded. */
export async function refund(redis: Redis, ch: ClickHouseClient, r: Redemption, reason: string, actor: string): Promise<boolean> {
  defineWallet(redis)
  const credited = await redis.walletCredit(walletKey(r.user_id), r.id, r.item_id, r.price)
  await redis.stockReturn(stockKey(r.item_id), refundedKey(r.item_id), r.id)
  // A repeated call writes the fact only if an earlier one died before writing it.
  if (!credited && (await ledgerHas(ch, refundId(r.id)))) return false
  await insertLedger(ch, [{
    id: refundId(r.id), user_id: r.user_id, kind: 'refund', delta: r.price, item_id: r.item_id, redemption_id: r.id,
    idempotency_key: r.idempotency_key, reason, actor, at: chTime(Date.now()),
  }])
  return credited === 1
}

/** Restores every wallet from the ledger facts (after a rebuild deleted the derived `u:*` keys). */
export async function rebuildWallets(redis: Redis, ch: ClickHouseClient): Promise<number> {
  const r = await ch.query({
    query: `SELECT user_id, kind, id, item_id, delta, idempotency_key, toUnixTimestamp64Milli(at) AS at FROM ledger FINAL ORDER BY user_id`,
    format: 'JSONEachRow',
  })
  const rows = (await r.json()) as { user_id: string; kind: string; id: string; item_id: string; delta: string; idempotency_key: string; at: string }[]
  const refunded = new Set(rows.filter((x) => x.kind === 'refund').map((x) => 'rd_' + x.id.slice(3)))
  let p = pipelineFor(redis)
  let n = 0
  for (const x of rows) {
    const w = walletKey(x.user_id)
    if (x.kind === 'redeem') {
      const price = -Number(x.delta)
      p.hincrby(w, 'r', price)
      p.hset(w, `k:${x.idempotency_key}`, record({ id: x.id, user_id: x.user_id, item_id: x.item_id, price, idempotency_key: x.idempotency_key, at: Number(x.at) }))
      if (!refunded.has(x.id)) p.hincrby(w, `i:${x.item_id}`, 1)
    } else {
      p.hincrby(w, 'f', Number(x.delta))
      p.hset(w, `rf:rd_${x.id.slice(3)}`, '1')
    }
    if (++n % 5000 === 0) {
      await p.exec()
      p = pipelineFor(redis)
    }
  }
  await p.exec()
  return rows.length
}
