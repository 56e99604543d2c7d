import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClickHouse } from '../core/clients/clickhouse.ts'
import { killGroup, NODE_ARGS, pidAlive, ROOT, until } from '../test/child.ts'
import { launchCluster, type ClusterLayout } from './launch-cluster.ts'

/**
 * `npm run cluster` (issue 12) as a user runs it: the launcher as a child process, the layout it
 * prints, events sent to both ingest processes while one aggregator is killed -9, every event
 * counted once in Redis and stored once in ClickHouse, then `--stop`.
 */
let dir: string
let launcher: ChildProcess
let layout: ClusterLayout
let token: string
let env: NodeJS.ProcessEnv

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kepu-cluster-'))
  ;({ child: launcher, layout, env } = await launchCluster(dir, { detached: true, env: { FACTS_FLUSH_MS: '50' } }))
  token = readFileSync(layout.admin_token_file, 'utf8').trim()
}, 180_000)

afterAll(async () => {
  if (launcher?.pid && pidAlive(launcher.pid)) killGroup(launcher.pid)
  if (layout) for (const p of [...layout.processes, ...layout.redis, ...layout.nats]) if (pidAlive(p.pid)) process.kill(p.pid, 'SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

async function call(base: string, method: string, path: string, body?: unknown, auth = token) {
  const r = await fetch(base + path, { method, headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await r.text()
  return { status: r.status, json: text ? JSON.parse(text) : null }
}

const TOWNS = ['430623110', '110101001', '440103001', '510104017', '330102001'] // towns of five provinces: writes on every master

/** An app key, 200 communicators `<prefix>0…199`, and 20,000 share-backs for them (100 each), not sent yet. */
async function prepare(prefix: string, phone: string) {
  const app = (await call(layout.api, 'POST', '/v1/apps', { name: `cluster-${prefix}` })).json.key as string
  const users = Array.from({ length: 200 }, (_, i) => ({ id: `${prefix}${i}`, phone: `${phone}${String(i).padStart(4, '0')}`, real_name: `集${i}`, region_code: TOWNS[i % 5], certified_at: '2020-01-01' }))
  expect((await call(layout.api, 'POST', '/v1/users:import', { users })).json).toMatchObject({ created: 200, errors: [] })
  const now = Date.now()
  const events = Array.from({ length: 20_000 }, (_, i) => ({ id: randomUUID(), type: 'share_back', user_id: `${prefix}${i % 200}`, ts: now - 60_000 + (i % 50_000), content_id: 'c', channel: 'wechat' }))
  return { app, events }
}

/**
 * Sends the events in requests of 500 from two senders, alternating between the ingest processes; a
 * request not answered 202 is sent again to the other one, as a client would (nothing may be lost).
 * `faults[n]` runs once n events have been accepted.
 */
async function sendAll(app: string, events: unknown[], faults: Record<number, () => void>) {
  let sent = 0
  const send = async (i: number) => {
    for (let attempt = 0; ; attempt++) {
      const r = await call(layout.ingest[(i / 500 + attempt) % 2], 'POST', '/v1/events', { events: events.slice(i, i + 500) }, app).catch(() => ({ status: 0, json: null }))
      if (r.status === 202) return expect(r.json.accepted + r.json.duplicates).toBe(500)
      expect(attempt, `request at ${i}: ${r.status} ${JSON.stringify(r.json)}`).toBeLessThan(100)
      await new Promise((res) => setTimeout(res, 200))
    }
  }
  const sender = async (lane: number) => {
    for (let i = lane * 500; i < events.length; i += 1000) {
      await send(i)
      sent += 500
      faults[sent]?.()
    }
  }
  await Promise.all([sender(0), sender(1)])
}

/** Waits until the facts of `<prefix>…` are stored, then: 20,000 of them, each event once, all counted. */
async function expectStoredOnce(prefix: string) {
  const ch = await createClickHouse({ url: `http://kepu:${encodeURIComponent(token)}@${layout.facts.replace('http://', '')}/`, dataDir: dir })
  try {
    const stats = async () => {
      const r = await ch.query({ query: `SELECT count() AS n, uniqExact(event_id) AS u, countIf(decision = 'counted') AS c FROM facts FINAL WHERE startsWith(user_id, {p:String})`, query_params: { p: prefix }, format: 'JSONEachRow' })
      const [row] = (await r.json()) as { n: unknown; u: unknown; c: unknown }[]
      return [Number(row.n), Number(row.u), Number(row.c)]
    }
    // The messages a killed process held come back after ack_wait (10 s); a failover takes a few seconds.
    let last = [0, 0, 0]
    await until(async () => (last = await stats())[0] >= 20_000, 'every event stored', 150_000, 250).catch((err) => {
      throw new Error(`${(err as Error).message}: [facts, events, counted] = ${JSON.stringify(last)}`)
    })
    expect(last).toEqual([20_000, 20_000, 20_000])
  } finally {
    await ch.close()
  }
}

/**
 * For 8 s: whether the API's /readyz ever answered 503 naming `node`, and every read of a board
 * that failed otherwise than 200, or 503 with Retry-After.
 */
async function watchOutage(node: string): Promise<{ named: boolean; failures: string[] }> {
  let named = false
  const failures: string[] = []
  for (const end = Date.now() + 8000; Date.now() < end; ) {
    const ready = await fetch(`${layout.api}/readyz`).then(async (r) => ({ status: r.status, json: await r.json() }))
    if (ready.status === 503 && ready.json.down.includes(node)) named = true
    for (const code of ['43', '11', '44', '51', '33']) {
      const r = await fetch(`${layout.api}/v1/leaderboards?metric=shares&period=all&region=${code}`, { headers: { authorization: `Bearer ${token}` } })
      await r.arrayBuffer()
      if (r.status !== 200 && !(r.status === 503 && r.headers.get('retry-after'))) failures.push(`${code}: ${r.status}`)
    }
    await new Promise((res) => setTimeout(res, 100))
  }
  return { named, failures }
}

/** Every one of the 200 `<prefix>…` on the national all-time board of `metric` with `score`. */
async function expectBoard(prefix: string, metric: 'shares' | 'points', score: number) {
  const b = await call(layout.api, 'GET', `/v1/leaderboards?metric=${metric}&period=all&limit=1000`)
  expect(b.status, JSON.stringify(b.json)).toBe(200)
  const mine = b.json.entries.filter((e: { user_id: string }) => e.user_id.startsWith(prefix))
  expect(mine).toHaveLength(200)
  expect(new Set(mine.map((e: { score: number }) => e.score))).toEqual(new Set([score]))
}

describe('npm run cluster', () => {
  it('prints the layout: 3 Redis masters with a replica each, 3 NATS servers, 2 ingest, 2 aggregators, the API and its store', () => {
    expect(layout.redis.filter((n) => n.role === 'master')).toHaveLength(3)
    expect(layout.redis.filter((n) => n.role === 'replica')).toHaveLength(3)
    expect(layout.nats).toHaveLength(3)
    expect(layout.ingest).toHaveLength(2)
    expect(layout.aggregators).toHaveLength(2)
    for (const p of layout.processes) expect(pidAlive(p.pid), p.name).toBe(true)
  })

  it('counts 20,000 events sent to both ingest processes exactly once while one aggregator is killed -9', async () => {
    const { app, events } = await prepare('k', '1390000')
    const victim = layout.processes.find((p) => p.name === 'aggregator-1')!
    await sendAll(app, events, { 6000: () => process.kill(victim.pid, 'SIGKILL') })
    expect(pidAlive(victim.pid)).toBe(false)
    await expectStoredOnce('k')
    await expectBoard('k', 'shares', 100)
    for (const code of ['43', '11', '44', '51', '33']) {
      const b = await call(layout.api, 'GET', `/v1/leaderboards?metric=shares&period=all&region=${code}`)
      expect(b.json.total, code).toBe(40)
    }
  }, 240_000)

  it('counts 20,000 events exactly once, points included, while a Redis master is killed -9 and its replica takes over', async () => {
    const { app, events } = await prepare('f', '1370000')
    const victim = layout.redis.find((n) => n.role === 'master')!
    let outage: ReturnType<typeof watchOutage> | null = null
    await sendAll(app, events, {
      6000: () => {
        process.kill(victim.pid, 'SIGKILL')
        outage = watchOutage(`redis ${victim.node}`)
      },
    })
    // While it fails over: /readyz names the dead node; reads answer or say 503 with Retry-After, never 500.
    const seen = await outage!
    expect(seen.named, JSON.stringify(seen)).toBe(true)
    expect(seen.failures).toEqual([])
    await expectStoredOnce('f')
    // The replica is the master now, and holds every write of what was acked.
    await expectBoard('f', 'shares', 100)
    // Points: the first 20 share-backs of a day earn one each.
    await expectBoard('f', 'points', 20)
  }, 300_000)

  it('loses and doubles nothing when a NATS server and then an ingest process are killed -9 mid-stream (clients retry on the other)', async () => {
    const { app, events } = await prepare('n', '1360000')
    const ingest1 = layout.processes.find((p) => p.name === 'ingest-1')!
    let named: Promise<unknown> | null = null
    await sendAll(app, events, {
      6000: () => {
        process.kill(layout.nats[1].pid, 'SIGKILL')
        // /readyz names the dead server (it stays dead: the cluster goes on with two).
        const node = `nats ${layout.nats[1].url.replace('nats://', '')}`
        named = until(async () => {
          const r = await fetch(`${layout.api}/readyz`)
          return r.status === 503 && ((await r.json()) as { down: string[] }).down.includes(node)
        }, `/readyz to name ${node}`, 10_000, 100).then(() => null, (err: Error) => err.message)
      },
      12_000: () => process.kill(ingest1.pid, 'SIGKILL'),
    })
    expect(await named).toBeNull()
    await expectStoredOnce('n')
    await expectBoard('n', 'shares', 100)
  }, 300_000)

  it('--stop stops every process and engine and removes the pid file', async () => {
    const stop = spawn(process.execPath, [...NODE_ARGS, 'scripts/cluster.ts', '--stop'], { cwd: ROOT, env, stdio: 'ignore' })
    const code = await new Promise<number | null>((res) => stop.once('exit', res))
    expect(code).toBe(0)
    await until(() => !pidAlive(layout.pid), 'the launcher to exit', 30_000)
    // (aggregator-1, ingest-1, a Redis master and a NATS server were killed above.)
    const alive = [...layout.processes, ...layout.redis, ...layout.nats].filter((p) => p.pid && pidAlive(p.pid))
    expect(alive).toEqual([])
  }, 90_000)
})
