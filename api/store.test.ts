import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keys } from '../core/keys.ts'
import { defineWallet, redemptionId, stockKey, sweepReservations, walletKey } from '../core/wallet.ts'
import { registerAccount } from '../test/accounts.ts'
import { share, startStack, type Stack } from '../test/stack.ts'

/**
 * The points store (issue 5, part 4): 100 parallel redemptions of an item with stock 10 redeem
 * exactly 10 with exact balances; a retried idempotency key redeems once; balances never go below
 * zero; refunds return points and stock once; the ledger equals the facts after a mixed workload
 * (caps, redemptions, refunds) and survives a rebuild of Redis; the sweeper completes or releases
 * reservations a dead process left.
 */
// On one Redis server, and on a Redis Cluster (issue 12): wallets, stock and reservations keep to
// their slots, and the rebuild restores the wallets there too.
for (const cluster of [false, true])
describe(cluster ? 'on a Redis Cluster and a NATS cluster' : 'on one Redis and one NATS server', () => {
  let s: Stack
  let key: string
  const now = Date.now()
  const N = 20
  const tok: Record<string, string> = {}

  async function until(cond: () => Promise<boolean>, ms = 15_000) {
    for (const end = Date.now() + ms; !(await cond()); ) {
      if (Date.now() > end) throw new Error('timed out')
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  async function send(events: { id: string; [k: string]: unknown }[]) {
    for (let i = 0; i < events.length; i += 1000) expect((await s.postEvents(key, events.slice(i, i + 1000))).status).toBe(202)
    const ids = events.map((e) => `'${e.id}'`).join(',')
    await until(async () => (await s.factCount(`event_id IN (${ids})`)) === events.length)
  }
  const points = async (u: string) => (await s.call('GET', '/v1/me/points', { token: tok[u] })).json
  const item = async (body: Record<string, unknown>) => {
    const r = await s.call('POST', '/v1/store/items', { body: { name: '话费10元', ...body } })
    expect(r.status, r.text).toBe(201)
    return r.json
  }
  const redeem = (u: string, item_id: string, idempotency_key: string = randomUUID()) => s.call('POST', '/v1/store/redemptions', { token: tok[u], body: { item_id, idempotency_key } })

  beforeAll(async () => {
    s = await startStack({ SMS_SENDER: 'memory' }, { cluster })
    key = await s.createAppKey()
    const ids = [...Array.from({ length: N }, (_, i) => `s${i}`), 'rich']
    await s.importUsers(ids.map((id, i) => ({ id, phone: `1350000${String(i).padStart(4, '0')}`, real_name: `兑${i}`, region_code: '430623110', certified_at: '2020-01-01' })))
    for (const [i, id] of ids.entries()) tok[id] = (await registerAccount(s, `1350000${String(i).padStart(4, '0')}`)).token
    // 20 points each (the first 20 share-backs of the day earn a point each).
    const events: { id: string; [k: string]: unknown }[] = []
    for (const id of ids) for (let j = 0; j < 20; j++) events.push(share(id, now - 1000 - j))
    await send(events)
  })
  afterAll(async () => s?.stop())

  describe('redemptions', () => {
    it('100 parallel redemptions of an item with stock 10 redeem exactly 10; balances exact', async () => {
      const it10 = await item({ price: 5, stock: 10, per_user_limit: 3 })
      expect(it10).toMatchObject({ available: 10, on_sale: true })
      const reqs = Array.from({ length: 100 }, (_, i) => ({ u: `s${i % N}` }))
      const rs = await Promise.all(reqs.map((r) => redeem(r.u, it10.id)))
      const ok = rs.map((r, i) => ({ r, u: reqs[i].u })).filter(({ r }) => r.status === 201)
      expect(ok).toHaveLength(10)
      expect(rs.every((r) => r.status === 201 || (r.status === 409 && ['out_of_stock', 'limit_reached'].includes(r.json.error.code)))).toBe(true)
      const after = (await s.call('GET', '/v1/store/items', { token: tok.s0 })).json.items.find((x: any) => x.id === it10.id)
      expect(after.available).toBe(0)
      const per = new Map<string, number>()
      for (const { u } of ok) per.set(u, (per.get(u) ?? 0) + 1)
      for (let i = 0; i < N; i++) {
        const u = `s${i}`
        const p = await points(u)
        expect(p, u).toMatchObject({ earned: 20, redeemed: 5 * (per.get(u) ?? 0), balance: 20 - 5 * (per.get(u) ?? 0) })
        expect(per.get(u) ?? 0).toBeLessThanOrEqual(3)
      }
      const r = await s.deps.ch.query({ query: `SELECT count() AS n, sum(delta) AS d FROM ledger FINAL WHERE item_id = {i:String}`, query_params: { i: it10.id }, format: 'JSONEachRow' })
      expect((await r.json<{ n: string; d: string }>()).map((x) => [Number(x.n), Number(x.d)])).toEqual([[10, -50]])
      expect(await s.deps.redis.hlen(`st:{${it10.id}}:r`)).toBe(0) // no reservation left behind
    })

    it('a balance never goes below zero: 10 parallel redemptions at 7 of a 20-point balance redeem 2', async () => {
      const it7 = await item({ name: '科普图书', price: 7, stock: 100 })
      const rs = await Promise.all(Array.from({ length: 10 }, () => redeem('rich', it7.id)))
      expect(rs.filter((r) => r.status === 201)).toHaveLength(2)
      expect(rs.filter((r) => r.status === 409).every((r) => r.json.error.code === 'insufficient_points')).toBe(true)
      expect(await points('rich')).toMatchObject({ balance: 6, redeemed: 14 })
      expect((await s.call('GET', '/v1/store/items', { token: tok.rich })).json.items.find((x: any) => x.id === it7.id).available).toBe(98)
    })

    it('a retried idempotency key redeems once, also when retried in parallel', async () => {
      const it1 = await item({ name: '徽章', price: 1, stock: 100 })
      const k: string = 'retry-key-1'
      const rs = await Promise.all(Array.from({ length: 8 }, () => redeem('s1', it1.id, k)))
      expect(rs.filter((r) => r.status === 201)).toHaveLength(1)
      expect(rs.filter((r) => r.status === 200)).toHaveLength(7)
      expect(new Set(rs.map((r) => r.json.id))).toEqual(new Set([redemptionId('s1', k)]))
      const later = await redeem('s1', it1.id, k)
      expect(later.status).toBe(200)
      expect((await s.call('GET', '/v1/store/items', { token: tok.s1 })).json.items.find((x: any) => x.id === it1.id).available).toBe(99)
    })

    it('refuses what is not on sale, unknown items, uncertified and staff callers', async () => {
      const later = await item({ name: '未开售', price: 1, stock: 5, starts_at: now + 86_400_000 })
      expect(later.on_sale).toBe(false)
      expect((await redeem('s2', later.id)).json.error.code).toBe('not_on_sale')
      expect((await redeem('s2', 'item_nope')).status).toBe(404)
      expect((await s.call('POST', '/v1/store/redemptions', { body: { item_id: later.id, idempotency_key: 'x' } })).status).toBe(403)
      expect((await s.call('POST', '/v1/store/items', { token: tok.s2, body: { name: 'x', price: 1, stock: 1 } })).status).toBe(403)
      expect((await s.call('POST', '/v1/store/items', { body: { name: 'x', price: 0, stock: 1 } })).status).toBe(400)
      expect((await s.call('POST', '/v1/store/items', { body: { name: 'x', price: 1, stock: 1, starts_at: '2030-01-02', ends_at: '2030-01-01' } })).status).toBe(400)
      // Not a date: refused, nothing stored, and the list still answers.
      const items = (await s.call('GET', '/v1/store/items')).json.items.length
      expect((await s.call('POST', '/v1/store/items', { body: { name: 'x', price: 1, stock: 1, starts_at: 1e30 } })).status).toBe(400)
      expect((await s.call('PATCH', `/v1/store/items/${later.id}`, { body: { ends_at: 2e30 } })).status).toBe(400)
      const list = await s.call('GET', '/v1/store/items')
      expect([list.status, list.json.items.length, list.json.next]).toEqual([200, items, null])
      // Keyset pages of one walk the same items.
      const walked: string[] = []
      let after: string | null = null
      do {
        const page: any = (await s.call('GET', `/v1/store/items?limit=1${after ? `&after=${after}` : ''}`)).json
        walked.push(...page.items.map((i: any) => i.id))
        after = page.next
      } while (after)
      expect(walked).toEqual(list.json.items.map((i: any) => i.id))
      expect(walked.length).toBeGreaterThan(1)
      expect((await s.call('GET', '/v1/store/items?after=garbage')).json.error.code).toBe('invalid_cursor')
      const patched = await s.call('PATCH', `/v1/store/items/${later.id}`, { body: { starts_at: null, stock: 8 } })
      expect(patched.json).toMatchObject({ on_sale: true, stock: 8, available: 8 })
      expect((await s.call('PATCH', `/v1/store/items/${later.id}`, { body: { stock: -1 } })).status).toBe(400)
    })
  })

  describe('refunds and the ledger', () => {
    it('a refund returns points and stock once; the ledger equals the facts after a mixed workload and a rebuild', async () => {
      // More activity for rich: capped shares, reads over the cap, a sign-in.
      const extra: { id: string; [k: string]: unknown }[] = []
      for (let j = 0; j < 5; j++) extra.push(share('rich', now - 5000 - j)) // over the 20 points of the day: 0 points
      for (let j = 0; j < 12; j++) extra.push({ id: randomUUID(), type: 'read', user_id: 'rich', ts: now - 6000 - j, content_id: `c${j}` })
      extra.push({ id: randomUUID(), type: 'signin', user_id: 'rich', ts: now - 7000 })
      await send(extra)
      expect(await points('rich')).toMatchObject({ earned: 32, balance: 18 }) // 20 + 10 + 2 − 14

      const it3 = await item({ name: '雨伞', price: 3, stock: 2 })
      const a = await redeem('rich', it3.id)
      const b = await redeem('rich', it3.id)
      expect([a.status, b.status]).toEqual([201, 201])
      expect((await redeem('rich', it3.id)).json.error.code).toBe('out_of_stock')
      expect((await s.call('POST', `/v1/store/redemptions/${a.json.id}/refund`, { token: tok.rich, body: {} })).status).toBe(403)
      const rf = await s.call('POST', `/v1/store/redemptions/${a.json.id}/refund`, { body: { reason: '缺货退款' } })
      expect(rf.status, rf.text).toBe(200)
      expect(rf.json).toMatchObject({ redemption_id: a.json.id, user_id: 'rich', points: 3, refunded_now: true })
      const again = await s.call('POST', `/v1/store/redemptions/${a.json.id}/refund`, { body: {} })
      expect(again.json.refunded_now).toBe(false)
      expect((await s.call('POST', `/v1/store/redemptions/rd_00000000000000000000/refund`, { body: {} })).status).toBe(404)
      const mine = await points('rich')
      expect(mine).toMatchObject({ earned: 32, redeemed: 20, refunded: 3, balance: 15 })
      expect((await s.call('GET', '/v1/store/items', { token: tok.rich })).json.items.find((x: any) => x.id === it3.id).available).toBe(1)

      const ledger = async () => {
        const entries: any[] = []
        let after: string | null = null
        do {
          const page: any = await s.call('GET', `/v1/me/ledger?limit=9${after ? `&after=${after}` : ''}`, { token: tok.rich })
          entries.push(...page.json.entries)
          after = page.json.next
        } while (after)
        return entries
      }
      const entries = await ledger()
      const sum = (k: string) => entries.filter((e) => e.kind === k).reduce((x, e) => x + e.delta, 0)
      expect({ earn: sum('earn'), redeem: sum('redeem'), refund: sum('refund') }).toEqual({ earn: 32, redeem: -20, refund: 3 })
      expect(entries.find((e) => e.kind === 'refund')).toMatchObject({ source: a.json.id, item_id: it3.id, reason: '缺货退款' })
      // The facts say the same.
      const q = await s.deps.ch.query({
        query: `SELECT (SELECT sum(points) FROM facts FINAL WHERE user_id = 'rich' AND decision = 'counted') + (SELECT sum(delta) FROM ledger FINAL WHERE user_id = 'rich') AS b`,
        format: 'JSONEachRow',
      })
      expect(Number(((await q.json()) as { b: string }[])[0].b)).toBe(15)

      // Flush Redis and rebuild: the wallets come back from the ledger facts.
      const wallet = await s.deps.redis.hgetall(walletKey('rich'))
      await s.deps.redis.del(walletKey('rich'))
      await s.deps.redis.hdel(keys.user('rich'), 'a')
      expect((await s.call('POST', '/v1/admin/rebuild')).status).toBe(200)
      expect(await s.deps.redis.hgetall(walletKey('rich'))).toEqual(wallet)
      expect(await points('rich')).toMatchObject({ earned: 32, balance: 15 })
      expect(await ledger()).toEqual(entries)
      // Keys used before the rebuild still name their redemption; the refund is still done once.
      expect((await redeem('rich', it3.id, b.json.idempotency_key)).status).toBe(200)
      expect((await s.call('POST', `/v1/store/redemptions/${a.json.id}/refund`, { body: {} })).json.refunded_now).toBe(false)
    })

    it('redemptions sent while a rebuild restores the wallets are done or answered 503 with Retry-After, never refused for points; the ledger still equals the balance', async () => {
      const before = await points('rich')
      const pen = await item({ name: '铅笔', price: 1, stock: 100 })
      const rebuild = s.call('POST', '/v1/admin/rebuild')
      const answers = []
      for (let i = 0; i < 12; i++) {
        answers.push(await redeem('rich', pen.id))
        await new Promise((r) => setTimeout(r, 20))
      }
      expect((await rebuild).status).toBe(200)
      const statuses = answers.map((r) => r.status)
      expect(statuses.every((x) => x === 201 || x === 503), statuses.join(',')).toBe(true)
      for (const r of answers.filter((x) => x.status === 503)) expect([r.json.error.code, r.headers.get('retry-after')]).toEqual(['rebuilding', '5'])
      expect(await s.deps.redis.exists(keys.rebuilding)).toBe(0)
      const done = statuses.filter((x) => x === 201).length
      const after = await points('rich')
      expect(after).toMatchObject({ earned: before.earned, redeemed: before.redeemed + done, balance: before.balance - done })
      const q = await s.deps.ch.query({ query: `SELECT sum(delta) AS d FROM ledger FINAL WHERE user_id = 'rich' AND item_id = {i:String}`, query_params: { i: pen.id }, format: 'JSONEachRow' })
      // 0 - done, not -done: when every redemption met the rebuild (done = 0), -0 is not Object.is 0.
      expect(Number(((await q.json()) as { d: string }[])[0].d)).toBe(0 - done)
    })
  })

  describe('the reservation sweeper', () => {
    it('releases a reservation whose debit never happened and completes one whose ledger fact is missing', async () => {
      const it5 = await item({ name: '水杯', price: 2, stock: 5 })
      const r = s.deps.redis
      defineWallet(r)
      const old = Date.now() - 120_000
      // A process died after reserving (no debit).
      await r.stockReserve(stockKey(it5.id), `st:{${it5.id}}:r`, 'rd_dead:1', `s3|dead-key|${old}`)
      // A process died after the debit, before the ledger fact.
      const rid = redemptionId('s4', 'half-key')
      await r.stockReserve(stockKey(it5.id), `st:{${it5.id}}:r`, `${rid}:1`, `s4|half-key|${old}`)
      const [st, v] = await r.walletDebit(keys.user('s4'), walletKey('s4'), 'half-key', `${rid}|${it5.id}|2|${old}`, it5.id, 2, 0)
      expect(st).toBe('ok')
      // A fresh reservation is left alone.
      await r.stockReserve(stockKey(it5.id), `st:{${it5.id}}:r`, 'rd_live:1', `s5|live-key|${Date.now()}`)
      expect(await r.hget(stockKey(it5.id), 'n')).toBe('2')
      expect(await sweepReservations(r, s.deps.ch, it5.id)).toEqual([1, 1])
      expect(await r.hget(stockKey(it5.id), 'n')).toBe('3')
      expect(await r.hkeys(`st:{${it5.id}}:r`)).toEqual(['rd_live:1'])
      const q = await s.deps.ch.query({ query: `SELECT user_id, delta FROM ledger FINAL WHERE id = {id:String}`, query_params: { id: rid }, format: 'JSONEachRow' })
      expect((await q.json<{ user_id: string; delta: string }>()).map((x) => [x.user_id, Number(x.delta)])).toEqual([['s4', -2]])
      expect(Number(v)).toBe((await points('s4')).balance)
    })
  })
})
