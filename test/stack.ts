import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { parseConfig, type Config } from '../core/config.ts'
import { connectDeps, type Deps } from '../core/deps.ts'
import { startNats, startRedis, type LocalService } from '../core/local-services.ts'
import { startNatsCluster, startRedisCluster, type LocalNatsCluster, type LocalRedisCluster } from '../core/local-cluster.ts'
import { freePortRun } from '../scripts/launch-cluster.ts'
import { pino } from 'pino'
import { createLogger } from '../core/logger.ts'
import { startService, type Service } from '../core/service.ts'
import { CONSUMER } from '../core/stream.ts'

/**
 * A whole stack for a test file, on real engines: its own redis-server and nats-server on free
 * loopback ports in a temp dir, ClickHouse embedded (chDB) in this test process, and the service
 * on a free port. Nothing is mocked.
 */
export const ADMIN = 'test-admin-token-0123456789abcdef'

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer()
    s.once('error', rej)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => res(port))
    })
  })
}

export interface Stack {
  dir: string
  config: Config
  deps: Deps & { adminToken: string }
  service: Service
  base: string
  /** The single servers (unset on a cluster stack). */
  redisServer: LocalService
  natsServer: LocalService
  /** On a cluster stack (`startStack(env, { cluster: true })`): the Redis Cluster and the NATS cluster. */
  redisCluster?: LocalRedisCluster
  natsCluster?: LocalNatsCluster
  call(method: string, path: string, opts?: { token?: string | null; body?: unknown; type?: string }): Promise<{ status: number; json: any; text: string; headers: Headers }>
  createAppKey(name?: string): Promise<string>
  importUsers(users: Record<string, unknown>[]): Promise<any>
  postEvents(key: string, events: unknown[]): Promise<{ status: number; json: any }>
  /** Resolves once ClickHouse holds at least n facts (checked after every flush). */
  waitForFacts(n: number, timeoutMs?: number): Promise<void>
  factCount(where?: string): Promise<number>
  /** The stack's last 300 log lines. */
  logLines(): string[]
  /** Stops the service gracefully (drain, flush, ack) and starts a fresh one on the same data and servers. */
  restart(): Promise<void>
  stop(): Promise<void>
}

/**
 * `cluster`: the engines are a Redis Cluster (3 masters, 3 replicas) and a NATS cluster of 3 with
 * the stream and buckets at 3 replicas, started by the same code as `npm run cluster`.
 */
export async function startStack(env: Record<string, string> = {}, opts: { cluster?: boolean } = {}): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'kepu-test-'))
  // The stack's log lines (info and above, or lower when TEST_LOG_LEVEL asks) are kept in memory, the
  // last ones, for logLines() and for the diagnosis a waitForFacts timeout prints; those at or above
  // TEST_LOG_LEVEL are also echoed to stdout.
  const recent: string[] = []
  const echoFrom = process.env.TEST_LOG_LEVEL ? (pino.levels.values[process.env.TEST_LOG_LEVEL] ?? Infinity) : Infinity
  const keep = {
    write(line: string) {
      if (recent.push(line.trimEnd()) > 300) recent.shift()
      if (Number(/"level":(\d+)/.exec(line)?.[1]) >= echoFrom) process.stdout.write(line)
    },
  }
  const log = createLogger(echoFrom < pino.levels.values.info ? process.env.TEST_LOG_LEVEL! : 'info', 'kepu', keep)
  let redisServer!: LocalService
  let natsServer!: LocalService
  let redisCluster: LocalRedisCluster | undefined
  let natsCluster: LocalNatsCluster | undefined
  if (opts.cluster) {
    const run = (n: number, base: number) => Array.from({ length: n }, (_, i) => base + i)
    const [redisBase, natsBase] = [await freePortRun(6, [10_000]), await freePortRun(3, [100])]
    ;[redisCluster, natsCluster] = await Promise.all([startRedisCluster(dir, run(6, redisBase)), startNatsCluster(dir, run(3, natsBase), run(3, natsBase + 100))])
    env = { NATS_REPLICAS: '3', REDIS_WAIT_REPLICAS: '1', ...env }
  } else {
    redisServer = await startRedis(dir, await freePort())
    natsServer = await startNats(dir, await freePort())
  }
  const urls = { redis: redisCluster?.url ?? redisServer.url, nats: natsCluster?.url ?? natsServer.url }
  // Tests read boards right after a flush: the page cache (its own tests) would show them 100 ms late.
  const config = parseConfig({ DATA_DIR: dir, PORT: '0', HOST: '127.0.0.1', ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'silent', FACTS_FLUSH_MS: '50', BOARD_PAGE_CACHE_MS: '0', ...env })
  const stopEngines = () => Promise.all([redisServer?.stop(), natsServer?.stop(), redisCluster?.stop(), natsCluster?.stop()])
  let deps: Deps & { adminToken: string }
  let service: Service
  try {
    deps = { ...(await connectDeps(config, urls, log)), adminToken: ADMIN }
    service = await startService(config, deps)
  } catch (err) {
    // No server left behind by a stack that could not start.
    await stopEngines()
    rmSync(dir, { recursive: true, force: true })
    throw err
  }

  /** What a stalled wait needs to be understood: facts, the consumer's state, counting metrics, the last log lines. */
  async function diagnose(): Promise<string> {
    const part = async (name: string, f: () => Promise<unknown>) => `${name}: ${await f().then((v) => (typeof v === 'string' ? v : JSON.stringify(v)), (err) => `(${String(err)})`)}`
    return (
      await Promise.all([
        part('facts', () => stack.factCount()),
        part('consumer', async () => {
          const ci = await deps.jsm.consumers.info(config.nats.stream, CONSUMER)
          return { pending: ci.num_pending, ack_pending: ci.num_ack_pending, waiting: ci.num_waiting, redelivered: ci.num_redelivered, delivered: ci.delivered.stream_seq, ack_floor: ci.ack_floor.stream_seq }
        }),
        part('metrics', async () => {
          const text = (await stack.call('GET', '/metrics')).text
          return text.split('\n').filter((l) => /^(events_decided_total|facts_inserted_total|aggregator_batch_size_count|consumer_lag_messages)/.test(l)).join('; ')
        }),
      ])
    ).join('\n') + `\nlast log lines:\n${recent.slice(-60).join('\n')}`
  }

  const stack: Stack = {
    dir,
    config,
    get deps() {
      return deps
    },
    get service() {
      return service
    },
    get base() {
      return `http://127.0.0.1:${service.port}`
    },
    redisServer,
    natsServer,
    redisCluster,
    natsCluster,
    async call(method, path, opts = {}) {
      const headers: Record<string, string> = {}
      const token = opts.token === undefined ? ADMIN : opts.token
      if (token) headers.authorization = `Bearer ${token}`
      let body: string | undefined
      if (opts.body !== undefined) {
        body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body)
        headers['content-type'] = opts.type ?? 'application/json'
      }
      const r = await fetch(stack.base + path, { method, headers, body })
      const text = await r.text()
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch {
        json = undefined
      }
      return { status: r.status, json, text, headers: r.headers }
    },
    async createAppKey(name = 'test-app') {
      const r = await stack.call('POST', '/v1/apps', { body: { name } })
      if (r.status !== 201) throw new Error(`create app: ${r.status} ${r.text}`)
      return r.json.key as string
    },
    async importUsers(users) {
      const r = await stack.call('POST', '/v1/users:import', { body: { users } })
      if (r.status !== 200) throw new Error(`import: ${r.status} ${r.text}`)
      return r.json
    },
    async postEvents(key, events) {
      const r = await stack.call('POST', '/v1/events', { token: key, body: { events } })
      return { status: r.status, json: r.json }
    },
    logLines: () => [...recent],
    async factCount(where = '1') {
      const r = await deps.ch.query({ query: `SELECT count() AS n FROM facts FINAL WHERE ${where}`, format: 'JSONEachRow' })
      return Number(((await r.json()) as { n: string }[])[0].n)
    },
    async waitForFacts(n, timeoutMs = 30_000) {
      const agg = service.aggregator!
      await new Promise<void>((res, rej) => {
        let done = false
        const timer = setTimeout(() => void diagnose().then((d) => finish(new Error(`timed out waiting for ${n} facts\n${d}`))), timeoutMs)
        const check = async () => {
          if (!done && (await stack.factCount()) >= n) finish()
        }
        const finish = (err?: Error) => {
          if (done) return
          done = true
          clearTimeout(timer)
          agg.events.off('flushed', onFlush)
          err ? rej(err) : res()
        }
        const onFlush = () => void check().catch(finish)
        agg.events.on('flushed', onFlush)
        void check().catch(finish)
      })
    },
    async restart() {
      await service.stop()
      await deps.close()
      deps = { ...(await connectDeps(config, urls, log)), adminToken: ADMIN }
      service = await startService(config, deps)
    },
    async stop() {
      // The servers stop even when the service cannot, or not in time (a test that failed with NATS
      // down, say): like main.ts's shutdown timeout, so no redis-server or nats-server is left behind.
      let timer: NodeJS.Timeout | undefined
      const graceful = (async () => {
        await service.stop()
        await deps.close()
      })()
      try {
        await Promise.race([graceful, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('stack: graceful stop took over 20 s')), 20_000)))])
      } finally {
        clearTimeout(timer)
        await stopEngines()
        rmSync(dir, { recursive: true, force: true })
      }
    },
  }
  return stack
}

/** A share-back event for tests. */
export function share(user_id: string, ts: number, extra: Record<string, unknown> = {}) {
  return { id: randomUUID(), type: 'share_back', user_id, ts, content_id: 'c1', channel: 'wechat', ...extra }
}

/**
 * A response body as a leak check should read it: the request id is a random UUID and would,
 * now and then, contain the very digits a test says must not leak.
 */
export function bodyWithoutRequestId(r: { text: string; json: any }): string {
  const id = r.json?.error?.request_id
  return typeof id === 'string' ? r.text.replaceAll(id, '') : r.text
}
