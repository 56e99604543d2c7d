/**
 * `npm run cluster`: the distributed layout on this machine, with real engines (issue 12):
 *   - a Redis Cluster of 3 masters with 1 replica each (Debian's redis-server);
 *   - a NATS cluster of 3 nats-server nodes with routes, the stream and every bucket at 3 replicas;
 *   - the API process, which also holds the embedded ClickHouse and serves it to the others over
 *     ClickHouse's HTTP interface (ROLE=api,facts; core/facts-server.ts);
 *   - 2 aggregator processes sharing the durable consumer, and 2 ingest processes.
 * Data under DATA_DIR/cluster. When all of it is ready it prints one line `CLUSTER {json}` (URLs,
 * nodes with their roles, pids, the admin token's file) and stays in the foreground, watching its
 * processes; SIGINT / SIGTERM or `npm run cluster -- --stop` stops it all, in order: ingest,
 * aggregators (they flush their facts), the API and store, then the engines.
 *
 * Ports: PORT (8080) for the API, PORT+1 and +2 ingest, +3 and +4 the aggregators' health and
 * metrics; FACTS_HTTP_PORT (18123) the store; LOCAL_REDIS_PORT (16379) … +5 the Redis nodes (their
 * cluster bus at +10,000); LOCAL_NATS_PORT (14222) … +2 the NATS servers, their routes at +100.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { resolveAdminToken } from '../core/admin-token.ts'
import { configOrExit } from '../core/config.ts'
import { FACTS_USER } from '../core/facts-server.ts'
import { startNatsCluster, startRedisCluster } from '../core/local-cluster.ts'
import { createLogger } from '../core/logger.ts'

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)))

const config = configOrExit()
const log = createLogger(config.logLevel === 'silent' ? 'silent' : 'info', 'cluster')
const dir = resolve(config.dataDir, 'cluster')
const pidFile = join(dir, 'cluster.pid')

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

if (process.argv.includes('--stop')) {
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : 0
  if (!pid || !alive(pid)) {
    console.log(`no cluster is running on ${dir}`)
    process.exit(0)
  }
  process.kill(pid, 'SIGTERM')
  // The launcher removes its pid file once everything under it has stopped.
  for (const end = Date.now() + 60_000; alive(pid) && Date.now() < end; ) await sleep(100)
  if (alive(pid)) {
    console.error(`the cluster (pid ${pid}) did not stop within 60 s`)
    process.exit(1)
  }
  console.log('cluster stopped')
  process.exit(0)
}

if (existsSync(pidFile) && alive(Number(readFileSync(pidFile, 'utf8')))) {
  console.error(`a cluster is already running on ${dir} (pid ${readFileSync(pidFile, 'utf8').trim()}); stop it with npm run cluster -- --stop`)
  process.exit(1)
}
mkdirSync(dir, { recursive: true })
writeFileSync(pidFile, String(process.pid))

interface Proc {
  name: string
  role: string
  port: number
  child: ChildProcess
}
const procs: Proc[] = []
let stopping = false
const engines: { stop(): Promise<void> }[] = []

async function stopAll(code: number): Promise<never> {
  stopping = true
  // Ingest first (no new events), then the aggregators (they finish and flush their facts into the
  // store), then the API and the store, then the engines.
  for (const roles of [['ingest'], ['aggregator'], ['api,facts']]) {
    await Promise.all(
      procs
        .filter((p) => roles.includes(p.role) && p.child.exitCode === null && p.child.signalCode === null)
        .map(async (p) => {
          const exited = once(p.child, 'exit')
          p.child.kill('SIGTERM')
          const t = setTimeout(() => p.child.kill('SIGKILL'), 15_000)
          await exited
          clearTimeout(t)
        }),
    )
  }
  await Promise.allSettled(engines.map((e) => e.stop()))
  rmSync(pidFile, { force: true })
  log.info('cluster stopped')
  process.exit(code)
}
process.on('SIGTERM', () => void stopAll(0))
process.on('SIGINT', () => void stopAll(0))

async function waitReady(p: Proc, ms = 120_000): Promise<void> {
  // /readyz has no push notification: asked every 100 ms until it answers 200 or the process dies.
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (p.child.exitCode !== null) throw new Error(`${p.name} exited with ${p.child.exitCode} before it was ready (see ${join(dir, p.name, 'service.log')})`)
    const ok = await fetch(`http://127.0.0.1:${p.port}/readyz`).then((r) => r.ok, () => false)
    if (ok) return
    await sleep(100)
  }
  throw new Error(`${p.name} was not ready within ${ms / 1000} s`)
}

try {
  const redisPorts = Array.from({ length: 6 }, (_, i) => config.redis.localPort + i)
  const natsPorts = Array.from({ length: 3 }, (_, i) => config.nats.localPort + i)
  const [redis, nats] = await Promise.all([
    startRedisCluster(dir, redisPorts, log),
    startNatsCluster(dir, natsPorts, natsPorts.map((p) => p + 100), log),
  ])
  engines.push(redis, nats)
  const adminToken = resolveAdminToken(config.adminToken, dir, log)
  const tokenFile = config.adminToken ? null : join(dir, 'admin-token')
  const facts = `http://${FACTS_USER}:${encodeURIComponent(adminToken)}@127.0.0.1:${config.clickhouse.serve.port}/`
  const base = config.http.port
  const start = (name: string, role: string, port: number, extra: Record<string, string> = {}): Proc => {
    const data = join(dir, name)
    mkdirSync(data, { recursive: true })
    const out = createWriteStream(join(data, 'service.log'), { flags: 'a' })
    const env: Record<string, string | undefined> = {
      ...process.env,
      ROLE: role,
      PORT: String(port),
      HOST: config.http.host,
      DATA_DIR: data,
      REDIS_URL: redis.url,
      NATS_URL: nats.url,
      NATS_REPLICAS: '3',
      ADMIN_TOKEN: adminToken,
      CLICKHOUSE_URL: facts,
      ...extra,
    }
    const child = spawn(process.execPath, ['--max-semi-space-size=64', '--import', 'tsx', 'main.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout!.pipe(out)
    child.stderr!.pipe(out)
    const p = { name, role, port, child }
    child.once('exit', (code, signal) => {
      if (!stopping) log.error({ process: name, code, signal }, 'a process of the cluster exited; the others go on (restart the cluster to bring it back)')
    })
    procs.push(p)
    return p
  }
  // The store first (every other process reads and writes ClickHouse through it), with the API.
  const api = start('api', 'api,facts', base, { CLICKHOUSE_URL: '', FACTS_HTTP_PORT: String(config.clickhouse.serve.port) })
  await waitReady(api)
  // One after the other: the first creates the stream and the consumer, the second finds them.
  const aggregators = [start('aggregator-1', 'aggregator', base + 3)]
  await waitReady(aggregators[0])
  aggregators.push(start('aggregator-2', 'aggregator', base + 4))
  await waitReady(aggregators[1])
  const ingest = [start('ingest-1', 'ingest', base + 1), start('ingest-2', 'ingest', base + 2)]
  await Promise.all(ingest.map((p) => waitReady(p)))
  const url = (p: Proc) => `http://127.0.0.1:${p.port}`
  const layout = {
    api: url(api),
    ingest: ingest.map(url),
    aggregators: aggregators.map(url),
    facts: `http://127.0.0.1:${config.clickhouse.serve.port}`,
    redis: (await redis.nodes()).map((n, i) => ({ node: `${n.host}:${n.port}`, role: n.role, pid: redis.servers[i].child.pid })),
    nats: nats.urls.map((u, i) => ({ url: u, pid: nats.servers[i].child.pid })),
    processes: procs.map((p) => ({ name: p.name, role: p.role, url: url(p), pid: p.child.pid })),
    admin_token_file: tokenFile,
    data_dir: dir,
    pid: process.pid,
  }
  writeFileSync(join(dir, 'cluster.json'), JSON.stringify(layout, null, 2))
  console.log(`CLUSTER ${JSON.stringify(layout)}`)
} catch (err) {
  log.fatal({ err: String(err) }, 'cluster start failed')
  await stopAll(1)
}
