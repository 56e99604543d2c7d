import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { StreamEvent } from '../core/events.ts'
import { loadRegionTree } from '../core/regions.ts'
import { addBoardWrites, BoardBatch, boardWrites, createBoardKeys, createBoardWriter, DIRECT_MIN_MEMBERS, groupByBoard, type BoardWrite } from './boards.ts'
import { startStepRedis, type StepRedis } from '../test/redis.ts'
import { applyUserStep, applyUserSteps, dedupeGen, dedupeWindow, fingerprint, type Decision } from './user-step.ts'
import { cacheUsers, keys } from '../core/keys.ts'
import { compactDay } from '../core/time.ts'

let r: StepRedis
let redis: Redis
const tree = loadRegionTree()
const win = dedupeWindow(72 * 3600_000, 600_000)
const now = Date.now()
const writeBoards = createBoardWriter()

beforeAll(async () => {
  r = await startStepRedis('boards', ['A', 'B', 'C'].map((id) => ({ id, institution_id: 'inst-x' })))
  redis = r.redis
})
afterAll(async () => r?.stop())

const ev = (user: string, ts: number): StreamEvent => ({
  kind: 'event', id: randomUUID(), type: 'share_back', user_id: user, ts, client_ts: ts, sent_at: null, received_at: now, app_id: 't', content_id: 'c', channel: 'wechat', viewer: '',
})

/** Every board with its members and stored scores. */
async function boards(member?: string) {
  const keys = [...(await redis.keys('b:*')), ...(await redis.keys('g:*'))].sort()
  const out: Record<string, string[]> = {}
  for (const k of keys) {
    const all = await redis.zrange(k, 0, '-1', 'WITHSCORES')
    out[k] = member ? all.filter((_, i) => (i % 2 ? all[i - 1] : all[i]) === member) : all
  }
  return out
}

describe('board writes are idempotent and order-free', () => {
  it('replaying, reordering and redelivering board writes leaves every board unchanged', async () => {
    const write = (ws: BoardWrite[]) => writeBoards(redis, ws)
    const all: BoardWrite[] = []
    const events = Array.from({ length: 25 }, (_, i) => ev('A', now - 100_000 + i * 1000))
    let seq = 1
    const seqs = new Map<string, number>()
    for (const e of events) {
      seqs.set(e.id, seq)
      const d = await applyUserStep(redis, e, seq++, win)
      const ws = boardWrites('A', d, tree)
      all.push(...ws)
      await write(ws)
    }
    const before = await boards()
    expect(Object.keys(before).length).toBe(2 * 5 * 5) // shares and points × 5 periods × (town, county, province, national, institution): city boards are virtual
    // Town, county and institution boards are complete (b:); province and national gated (g:).
    expect(Object.keys(before).filter((k) => k.startsWith('g:')).length).toBe(2 * 5 * 2)
    // Every board but the all-time ones expires: its TTL is set once, after the ZADD that created it.
    for (const k of Object.keys(before)) {
      const ttl = await redis.ttl(k)
      if (k.endsWith(':a')) expect(ttl, k).toBe(-1)
      else expect(ttl, k).toBeGreaterThan(0)
    }

    // Replay every write again, in reverse and in a shuffled order.
    await write([...all].reverse())
    await write([...all].sort(() => Math.random() - 0.5))
    // One write per board and user, in a random order, as separate batches.
    for (const w of [...all].sort(() => Math.random() - 0.5)) await write([w])
    expect(await boards()).toEqual(before)

    // A redelivery of any message repeats its decision, never its effect.
    for (const e of [events[0], events[12], events[24]]) {
      const d = await applyUserStep(redis, e, seqs.get(e.id)!, win)
      expect(d.status).toBe('repeat')
      expect(d.decision).toBe('counted')
      await write(boardWrites('A', d, tree))
    }
    expect(await boards()).toEqual(before)
  })

  it('a crash between the user step and the board step is repaired by the redelivery, exactly', async () => {
    const write = (ws: BoardWrite[]) => writeBoards(redis, ws)
    const ts = [now - 50_000, now - 40_000, now - 30_000]
    // B: the normal path. C: the same events, but the process dies after C's last user step.
    let seq = 1000
    for (const t of ts) await write(boardWrites('B', await applyUserStep(redis, ev('B', t), seq++, win), tree))
    const c = ts.map((t) => ev('C', t))
    for (const e of c.slice(0, 2)) await write(boardWrites('C', await applyUserStep(redis, e, seq++, win), tree))
    const lostSeq = seq++
    await applyUserStep(redis, c[2], lostSeq, win) // … and the board writes never happen
    const scoreOf = (b: Record<string, string[]>, k: string) => b[k]?.[1]
    const key = 'b:s:{43}r430623:a'
    expect(scoreOf(await boards('C'), key)).not.toEqual(scoreOf(await boards('B'), key))
    // Redelivery after restart: same seq → repeat → the board writes are issued again.
    const d = await applyUserStep(redis, c[2], lostSeq, win)
    expect(d.status).toBe('repeat')
    await write(boardWrites('C', d, tree))
    const b = await boards('B')
    const cc = await boards('C')
    for (const k of Object.keys(b)) expect(scoreOf(cc, k), k).toEqual(scoreOf(b, k))
  })

  it('a resend of the same event under a new stream sequence is a duplicate and writes nothing', async () => {
    const write = (ws: BoardWrite[]) => writeBoards(redis, ws)
    const e = ev('A', now - 1000)
    const first = await applyUserStep(redis, e, 5000, win)
    // The step stores the event's 8-byte fingerprint (sent as hex), the same field a rebuild writes.
    expect(await redis.hexists(keys.dedupe('A', dedupeGen(now, win)), fingerprint(e.id))).toBe(1)
    expect(fingerprint(e.id)).toHaveLength(8)
    await write(boardWrites('A', first, tree))
    const before = await boards()
    const again = await applyUserStep(redis, { ...e, received_at: now + 2 * 86400_000 }, 5001, win)
    expect(again).toMatchObject({ status: 'dup', decision: 'duplicate' })
    expect(boardWrites('A', again, tree)).toEqual([])
    expect(await boards()).toEqual(before)
  })
})

describe('groupByBoard', () => {
  it('keeps only the best score per board and user, which is what ZADD LT would keep', async () => {
    const w = (key: string, member: string, score: number): BoardWrite => ({ key, member, score, period: 'day' })
    const out = groupByBoard([w('k1', 'A', -5), w('k1', 'A', -7), w('k1', 'B', -6), w('k2', 'A', -1), w('k1', 'A', -6)])
    expect([...out.toMap()].map(([k, g]) => [k, Object.fromEntries(g)])).toEqual([
      ['k1', { A: -7, B: -6 }],
      ['k2', { A: -1 }],
    ])
  })

  it('keeps the best score per member however many members a board collects (list and map lookups alike)', () => {
    const want = new Map<string, Map<string, number>>()
    const ws: BoardWrite[] = []
    let x = 7
    const rand = () => ((x = (x * 48271) % 2147483647) / 2147483647)
    for (let i = 0; i < 3000; i++) {
      const key = 'k' + Math.floor(rand() * 5) ** 3 // boards from one member to hundreds
      const member = 'u' + Math.floor(rand() * 40)
      const score = -Math.floor(rand() * 1000)
      ws.push({ key, member, score, period: 'day' })
      const m = want.get(key) ?? want.set(key, new Map()).get(key)!
      m.set(member, Math.min(m.get(member) ?? Infinity, score))
    }
    const got = groupByBoard(ws)
    expect(got.entries).toBe([...want.values()].reduce((s, m) => s + m.size, 0))
    expect(new Map([...got.toMap()].map(([k, m]) => [k, new Map([...m].sort())]))).toEqual(new Map([...want].map(([k, m]) => [k, new Map([...m].sort())])))
  })

  it('a batch writes every user of a shared board in one command, with the same result as one write each', async () => {
    const users = ['A', 'B', 'C']
    let seq = 9000
    const ws: BoardWrite[] = []
    for (const u of users) ws.push(...boardWrites(u, await applyUserStep(redis, ev(u, now - 5000), seq++, win), tree))
    const before = await redis.info('commandstats')
    await writeBoards(redis, ws)
    const after = await redis.info('commandstats')
    const zadds = (info: string) => Number(/cmdstat_zadd:calls=(\d+)/.exec(info)?.[1] ?? 0)
    // Three users of one town and institution share every board: one ZADD per board.
    expect(zadds(after) - zadds(before)).toBe(new Set(ws.map((w) => w.key)).size)
    for (const u of users) expect(await redis.zscore('g:s:n:a', u)).not.toBeNull()
  })

  it('a gated board, once its K-th score is known, takes no write that cannot reach its top K', async () => {
    // A city board, tagged: a few members go in the province's script, DIRECT_MIN_MEMBERS or more
    // in a ZADD of their own; and the national board (untagged: always its own ZADD).
    const cases = [['g:s:{43}r4399:a', 'all', 4], ['g:s:{43}r4398:a', 'all', DIRECT_MIN_MEMBERS + 2], ['g:s:n:w19990104', 'week', 4]] as const
    for (const [key, period, n] of cases) {
      const write = createBoardWriter({ topK: 3 })
      const at = (member: string, score: number): BoardWrite => ({ key, score, member, period })
      await write(redis, Array.from({ length: n }, (_, i) => at(`k${i + 1}`, -50 + 10 * i)))
      expect(await redis.zrange(key, '0', '-1'), key).toEqual(['k1', 'k2', 'k3']) // trimmed to K
      // Worse than the K-th (-30): skipped, though its refresh is not due yet; better: written.
      await write(redis, [at('w1', -25), at('w2', -45)])
      expect(await redis.zrange(key, '0', '-1'), key).toEqual(['k1', 'w2', 'k2', 'k3'])
    }
  })
})

describe('the fan-out of town, county and own boards', () => {
  it('leaves every board, score and TTL exactly as one write per board would', async () => {
    // Communicators of towns in two provinces, of a county, and registered at a city and a province
    // code (their own boards), half in institutions; share-backs and sign-ins, late ones (yesterday's
    // day board), resends and redeliveries, in batches.
    const town = (p: string) => {
      const city = tree.children(p).find((c) => c.code.length === 4)!
      const county = tree.children(city.code).find((c) => c.code.length === 6)!
      return [tree.children(county.code)[0].code, county.code, city.code]
    }
    const [t43, c43, city43] = town('43')
    const [t44] = town('44')
    const regions = [t43, t43, t44, t44, c43, city43, '43']
    const users = regions.map((region_code, i) => ({ id: `fan${i}`, phone: '', real_name: `fan${i}`, region_code, kind: '个人用户', institution_id: i % 2 ? 'inst-fan' : '', certified_at: 0, ix: 100 + i, created_at: 0, updated_at: 0 }))
    await cacheUsers(redis, users)
    let x = 11
    const rand = () => ((x = (x * 48271) % 2147483647) / 2147483647)
    const batches: { user: string; d: Decision }[][] = []
    const sent: StreamEvent[] = []
    const seqOf = new Map<string, number>()
    let seq = 20_000
    for (let b = 0; b < 6; b++) {
      const steps: { ev: StreamEvent; seq: number }[] = []
      for (let i = 0; i < 30; i++) {
        const again = sent.length && rand() < 0.15 ? sent[Math.floor(rand() * sent.length)] : null
        const ts = now - Math.floor(rand() * 3) * 86400_000 - Math.floor(rand() * 60_000)
        const e = again ?? { ...ev(users[Math.floor(rand() * users.length)].id, ts), type: rand() < 0.7 ? 'share_back' : 'signin' }
        if (!again) sent.push(e)
        // A resend comes under a new sequence (a duplicate), a redelivery under its own (a repeat).
        const s = again && rand() < 0.5 ? seqOf.get(e.id)! : ++seq
        seqOf.set(e.id, seqOf.get(e.id) ?? s)
        steps.push({ ev: e, seq: s })
      }
      const ds = await applyUserSteps(redis, steps, win)
      batches.push(ds.map((d, i) => ({ user: steps[i].ev.user_id, d })))
    }
    const statuses = new Set(batches.flat().map(({ d }) => d.status))
    expect(statuses).toEqual(new Set(['new', 'repeat', 'dup']))

    const snapshot = async () => {
      const out: Record<string, { members: string[]; expires: boolean }> = {}
      for (const k of [...(await redis.keys('b:*')), ...(await redis.keys('g:*'))].sort()) out[k] = { members: await redis.zrange(k, 0, '-1', 'WITHSCORES'), expires: (await redis.ttl(k)) > 0 }
      return out
    }
    const clear = async () => {
      const ks = [...(await redis.keys('b:*')), ...(await redis.keys('g:*'))]
      if (ks.length) await redis.del(...ks)
    }
    await clear()
    const bk = createBoardKeys(tree)
    const fanned = createBoardWriter({ topK: 3, refreshMs: 0 })
    let fanEntries = 0
    for (const batch of batches) {
      const bb = new BoardBatch()
      for (const { user, d } of batch) addBoardWrites(bb, bk, user, d)
      fanEntries += bb.fan.entries
      await fanned(redis, bb)
    }
    const viaFan = await snapshot()
    await clear()
    const plain = createBoardWriter({ topK: 3, refreshMs: 0 })
    for (const batch of batches) await plain(redis, batch.flatMap(({ user, d }) => boardWrites(user, d, bk)))
    const viaBoards = await snapshot()

    expect(fanEntries).toBeGreaterThan(0)
    // Town, county and own boards of both provinces, and yesterday's day boards, all written.
    for (const k of [`b:s:{43}r${t43}:`, `b:s:{44}r${t44}:`, `b:p:{43}r${c43}:`, `b:s:{43}o${city43}:`, 'b:s:{43}o43:']) expect(Object.keys(viaFan).some((key) => key.startsWith(k)), k).toBe(true)
    expect(new Set(Object.keys(viaFan).filter((k) => k.includes(':d')).map((k) => k.split(':d')[1])).size).toBeGreaterThan(1)
    expect(viaFan).toEqual(viaBoards)
    await clear()
  })
})
