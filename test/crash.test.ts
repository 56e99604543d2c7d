import { randomUUID } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { killGroup, pidAlive, queryClickHouse, spawnService, until, type ServiceProcess } from './child.ts'
import { ADMIN, freePort } from './stack.ts'
import { keys, parseTotals } from '../core/keys.ts'

/**
 * Crash test, on real engines (the service as a child process, with the redis-server and
 * nats-server it starts itself and ClickHouse embedded through chDB): while 20,000 share-backs are
 * being posted, kill -9 the service at a random moment — the Node process alone, and in the other
 * case its whole process group with Redis and NATS — start it again on the same data, resend every
 * batch that got no 202, and check that every event is counted exactly once in Redis (boards and
 * per-user totals) and in ClickHouse (facts).
 */
const TOWN = '430623110'
const USERS = 200
const PER_USER = 100 // below the 300 share-backs a day that count, so every event counts
const EVENTS = USERS * PER_USER
const BATCH = 500
const BATCHES = EVENTS / BATCH
const SENDERS = 2
const STREAM = 'EVENTS'

/** Seeded PRNG (mulberry32), so a failing run can be replayed with CRASH_SEED=<seed>. */
function prng(seed: number) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A process that exists and is not a zombie (orphans killed with their group may wait unreaped). */
function running(pid: number): boolean {
  if (!pidAlive(pid)) return false
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

function pidFromFile(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim())
    return pid > 0 ? pid : null
  } catch {
    return null
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Run {
  dir: string
  groups: number[]
  services: ServiceProcess[]
}
let run: Run | null = null

afterEach(async () => {
  if (!run) return
  const r = run
  run = null
  for (const s of r.services) if (s.alive()) killGroup(s.pid)
  for (const g of r.groups) killGroup(g)
  // Orphans of a node-only kill live in the old group; the pid files name whatever is left.
  for (const f of ['redis/redis.pid', 'nats/nats.pid']) {
    const pid = pidFromFile(join(r.dir, f))
    if (pid && running(pid)) process.kill(pid, 'SIGKILL')
  }
  await Promise.all(r.services.map((s) => s.exited))
  rmSync(r.dir, { recursive: true, force: true })
})

async function api(base: string, method: string, path: string, token: string, body?: unknown) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await r.text()
  let json: any
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: r.status, json, text, headers: r.headers }
}

async function crashRun(mode: 'node' | 'group') {
  const t0 = Date.now()
  const seed = process.env.CRASH_SEED ? Number(process.env.CRASH_SEED) : Math.floor(Math.random() * 2 ** 32)
  const rand = prng(seed + (mode === 'group' ? 1 : 0))
  const dir = mkdtempSync(join(tmpdir(), `kepu-crash-${mode}-`))
  run = { dir, groups: [], services: [] }
  const [port, redisPort, natsPort] = [await freePort(), await freePort(), await freePort()]
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATA_DIR: dir,
    PORT: String(port),
    HOST: '127.0.0.1',
    ADMIN_TOKEN: ADMIN,
    LOG_LEVEL: 'info',
    LOCAL_REDIS_PORT: String(redisPort),
    LOCAL_NATS_PORT: String(natsPort),
    REDIS_URL: '',
    NATS_URL: '',
    CLICKHOUSE_URL: '',
    ROLE: 'all',
  }
  const start = async () => {
    const s = await spawnService(env, port)
    run!.services.push(s)
    run!.groups.push(s.pid)
    return s
  }
  const tag = `[crash ${mode}]`

  // --- Setup through the HTTP API.
  let svc = await start()
  const base = svc.base
  const app = await api(base, 'POST', '/v1/apps', ADMIN, { name: `crash-${mode}` })
  expect(app.status, app.text).toBe(201)
  const key = app.json.key as string
  const ids = Array.from({ length: USERS }, (_, i) => `cr${String(i).padStart(3, '0')}`)
  const imp = await api(base, 'POST', '/v1/users:import', ADMIN, {
    users: ids.map((id, i) => ({ id, phone: `1380000${String(i).padStart(4, '0')}`, real_name: `传播者${i}`, region_code: TOWN, certified_at: '2020-01-01' })),
  })
  expect(imp.status, imp.text).toBe(200)
  expect(imp.json).toMatchObject({ created: USERS, errors: [] })

  // --- 20,000 share-backs, 100 per user, all within the last minute, in 40 batches of 500.
  const now = Date.now()
  const events = Array.from({ length: EVENTS }, (_, k) => ({
    id: randomUUID(),
    type: 'share_back',
    user_id: ids[k % USERS],
    ts: now - k,
    content_id: `c${k % 37}`,
    channel: 'wechat',
  }))
  const batches = Array.from({ length: BATCHES }, (_, b) => JSON.stringify({ events: events.slice(b * BATCH, (b + 1) * BATCH) }))
  const post = (url: string, b: number) =>
    fetch(`${url}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: batches[b] })

  // --- Phase 1: two senders; kill -9 after a random number (5–30) of 202s plus a random 0–150 ms.
  const killAfter = 5 + Math.floor(rand() * 26)
  const killDelay = Math.floor(rand() * 150)
  const got202 = new Array<boolean>(BATCHES).fill(false)
  const inFlight = new Set<number>()
  let next = 0
  let ok = 0
  let killed = false
  let killInfo = ''
  let armed = false
  let onKilled!: () => void
  const killedP = new Promise<void>((res) => (onKilled = res))
  const arm = () => {
    if (armed) return
    armed = true
    setTimeout(() => {
      killed = true
      killInfo = `after ${ok} batches answered 202 (+${killDelay} ms), in flight: [${[...inFlight].join(',')}], next unsent: ${next}`
      process.kill(mode === 'node' ? svc.pid : -svc.pid, 'SIGKILL')
      onKilled()
    }, killDelay)
  }
  async function sender1() {
    while (!killed && next < BATCHES) {
      const b = next++
      inFlight.add(b)
      try {
        const r = await post(base, b)
        // The status line arrived: that is the answer, even if the body is then cut by the kill.
        if (r.status === 202) {
          got202[b] = true
          ok++
          if (ok >= killAfter) arm()
        }
        await r.text().catch(() => {})
      } catch {
        /* the request died with the service: no 202 */
      } finally {
        inFlight.delete(b)
      }
    }
  }
  const t1 = Date.now()
  await Promise.all(Array.from({ length: SENDERS }, sender1))
  await killedP
  const exit = await svc.exited
  expect(exit.signal).toBe('SIGKILL')
  const phase1Ms = Date.now() - t1
  const before202 = got202.filter(Boolean).length
  console.log(`${tag} seed ${seed}: killed ${mode === 'node' ? 'the Node process alone' : 'the whole process group'} ${killInfo}; phase 1 took ${phase1Ms} ms`)

  // What survived the kill: with the Node process alone, Redis and NATS live on as orphans.
  const redisPid = pidFromFile(join(dir, 'redis/redis.pid'))
  const natsPid = pidFromFile(join(dir, 'nats/nats.pid'))
  if (mode === 'group') {
    await until(() => !(redisPid && running(redisPid)) && !(natsPid && running(natsPid)), 'redis and nats to die with their group', 10_000)
  }
  console.log(`${tag} after the kill: redis ${redisPid} ${redisPid && running(redisPid) ? 'running' : 'gone'}, nats ${natsPid} ${natsPid && running(natsPid) ? 'running' : 'gone'}`)

  // --- Restart on the same data and ports; resend every batch that got no 202 (sent or not).
  const t2 = Date.now()
  svc = await start()
  const restartMs = Date.now() - t2
  if (mode === 'node') {
    // The orphans were found by their pid files and replaced, not left running beside the new ones.
    if (redisPid) expect(running(redisPid)).toBe(false)
    if (natsPid) expect(running(natsPid)).toBe(false)
  }
  const todo = got202.map((g, b) => (g ? -1 : b)).filter((b) => b >= 0)
  let resendDuplicates = 0
  let retries = 0
  async function sendUntil202(b: number) {
    for (let attempt = 1; ; attempt++) {
      let status = 0
      let detail = ''
      let wait = 250
      try {
        const r = await post(svc.base, b)
        status = r.status
        detail = await r.text()
        if (status === 202) {
          const j = JSON.parse(detail)
          expect(j.rejected).toEqual([])
          expect(j.accepted + j.duplicates).toBe(BATCH)
          resendDuplicates += j.duplicates
          got202[b] = true
          return
        }
        if (status !== 503 && status !== 429) throw new Error(`batch ${b}: unexpected ${status} ${detail}`)
        wait = Math.min(5, Number(r.headers.get('retry-after') ?? '1')) * 1000
      } catch (e) {
        if (status && status !== 503 && status !== 429) throw e
        detail = String(e)
      }
      if (attempt >= 20) throw new Error(`batch ${b}: no 202 after ${attempt} attempts (last: ${status} ${detail})`)
      retries++
      await sleep(wait)
    }
  }
  const queue = [...todo]
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      for (let b = queue.shift(); b !== undefined; b = queue.shift()) await sendUntil202(b)
    }),
  )
  expect(got202.every(Boolean)).toBe(true)
  console.log(
    `${tag} restart took ${restartMs} ms; ${before202}/${BATCHES} batches had 202 before the kill; resent ${todo.length} batches ` +
      `(${todo.length * BATCH} events, ${resendDuplicates} answered as duplicates by the stream, ${retries} retries)`,
  )

  // --- Await "all counted": the national all-time board sums to 20,000 and the consumer is idle.
  const nc = await connect({ servers: `nats://127.0.0.1:${natsPort}` })
  const redis = new Redis(`redis://127.0.0.1:${redisPort}`, { maxRetriesPerRequest: 2 })
  try {
    const jsm = await jetstreamManager(nc)
    let board: any = null
    let sum = 0
    let pending = -1
    const t3 = Date.now()
    const first = await jsm.consumers.info(STREAM, 'aggregator')
    console.log(`${tag} consumer after the resend: ${first.num_pending} pending, ${first.num_ack_pending} delivered and not yet acked (ack_wait ${(first.config.ack_wait ?? 0) / 1e9} s)`)
    await until(
      async () => {
        const r = await api(svc.base, 'GET', '/v1/leaderboards?metric=shares&period=all&limit=1000', ADMIN)
        expect(r.status, r.text).toBe(200)
        board = r.json
        sum = board.entries.reduce((a: number, e: { score: number }) => a + e.score, 0)
        const info = await jsm.consumers.info(STREAM, 'aggregator')
        pending = info.num_pending + info.num_ack_pending
        return sum >= EVENTS && pending === 0
      },
      'all events counted',
      90_000,
      200,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: board sums to ${sum}, ${pending} messages pending in the consumer`)
    })
    console.log(`${tag} all counted ${Date.now() - t3} ms after the resend`)
    expect(sum).toBe(EVENTS)
    expect(board.total).toBe(USERS)
    expect(board.entries).toHaveLength(USERS)
    expect(new Set(board.entries.map((e: { user_id: string }) => e.user_id))).toEqual(new Set(ids))
    const wrong = board.entries.filter((e: { score: number }) => e.score !== PER_USER)
    expect(wrong, 'users whose board score is not 100').toEqual([])

    // Per-user all-time totals in Redis.
    const p = redis.pipeline()
    for (const id of ids) p.hget(keys.user(id), 'a')
    const totals = (await p.exec())!.map(([err, v]) => (err ? String(err) : parseTotals(v as string | null).shares))
    const off = ids.filter((_, i) => totals[i] !== PER_USER).map((id, i) => `${id}=${totals[i]}`)
    expect(off, 'users whose Redis all-time share total is not 100').toEqual([])
  } finally {
    await nc.close().catch(() => {})
    redis.disconnect()
  }

  // --- Graceful stop (drain, flush facts, ack, stop Redis and NATS), then read the facts.
  const stopped = await svc.stop()
  expect(stopped, svc.lines.slice(-10).join('\n')).toEqual({ code: 0, signal: null })
  const [[counted], [multi], [multiSeq], decisions, perUser, countedIds] = await queryClickHouse(dir, [
    "SELECT count() AS n, uniqExact(event_id) AS u FROM facts FINAL WHERE decision = 'counted'",
    "SELECT count() AS n FROM (SELECT event_id FROM facts FINAL WHERE decision = 'counted' GROUP BY event_id HAVING count() > 1)",
    "SELECT count() AS n FROM (SELECT event_id FROM facts WHERE decision = 'counted' GROUP BY event_id HAVING uniqExact(stream_seq) > 1)",
    'SELECT decision, count() AS n FROM facts FINAL GROUP BY decision ORDER BY decision',
    "SELECT user_id, count() AS n FROM facts FINAL WHERE decision = 'counted' GROUP BY user_id",
    "SELECT event_id FROM facts FINAL WHERE decision = 'counted'",
  ])
  console.log(`${tag} facts by decision: ${decisions.map((d) => `${d.decision}=${d.n}`).join(', ')}; total ${Date.now() - t0} ms`)
  expect(Number(counted.n)).toBe(EVENTS)
  expect(Number(counted.u)).toBe(EVENTS)
  expect(Number(multi.n), 'events with more than one counted fact').toBe(0)
  expect(Number(multiSeq.n), 'events counted under two stream sequences').toBe(0)
  expect(decisions.map((d) => d.decision).filter((d) => d !== 'counted' && d !== 'duplicate')).toEqual([])
  expect(perUser).toHaveLength(USERS)
  expect(perUser.filter((u) => Number(u.n) !== PER_USER)).toEqual([])
  expect(new Set(countedIds.map((r) => r.event_id))).toEqual(new Set(events.map((e) => e.id)))
}

describe('crash: kill -9 while 20,000 events are being ingested', () => {
  it('node process alone killed: every event answered 202 is counted exactly once, in Redis and ClickHouse', async () => {
    await crashRun('node')
  }, 180_000)

  it('whole process group killed (with its Redis and NATS): every event answered 202 is counted exactly once, in Redis and ClickHouse', async () => {
    await crashRun('group')
  }, 180_000)
})
