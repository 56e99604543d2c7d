import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'

/**
 * `npm run cluster` (scripts/cluster.ts) as a child process on free loopback ports, for the tests and
 * the cluster bench: resolves with the layout of its `CLUSTER {json}` line.
 */
export interface ClusterLayout {
  api: string
  ingest: string[]
  aggregators: string[]
  facts: string
  redis: { node: string; role: 'master' | 'replica'; pid: number }[]
  nats: { url: string; pid: number }[]
  processes: { name: string; role: string; url: string; pid: number }[]
  admin_token_file: string
  data_dir: string
  pid: number
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer()
    s.once('error', () => res(false))
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)))
  })
}

/**
 * A base port from 20,000–29,000 whose `n` successors are free, each also at the `alsoAt` offsets (a
 * Redis Cluster node's bus listens at +10,000, which must stay below 65,536: hence not the ephemeral range).
 */
export async function freePortRun(n: number, alsoAt: number[] = []): Promise<number> {
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * 9_000)
    const ports = Array.from({ length: n }, (_, i) => base + i).flatMap((p) => [p, ...alsoAt.map((o) => p + o)])
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base
  }
}

/**
 * Starts scripts/cluster.ts with its data in `dataDir` on free ports; `env` is added (LOG_LEVEL, say).
 * `detached`: the launcher leads its own process group (a test kills the group when it fails).
 */
export async function launchCluster(
  dataDir: string,
  opts: { env?: NodeJS.ProcessEnv; detached?: boolean; timeoutMs?: number } = {},
): Promise<{ child: ChildProcess; layout: ClusterLayout; env: NodeJS.ProcessEnv }> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATA_DIR: dataDir,
    PORT: String(await freePortRun(5)),
    LOCAL_REDIS_PORT: String(await freePortRun(6, [10_000])),
    LOCAL_NATS_PORT: String(await freePortRun(3, [100])),
    FACTS_HTTP_PORT: String(await freePortRun(1)),
    LOG_LEVEL: 'warn',
    ...opts.env,
  }
  // The launcher sets these for each of its processes.
  for (const k of ['REDIS_URL', 'NATS_URL', 'CLICKHOUSE_URL', 'ADMIN_TOKEN', 'ROLE', 'NODE_OPTIONS']) delete env[k]
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/cluster.ts'], { cwd: join(import.meta.dirname, '..'), env, detached: opts.detached, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const timeoutMs = opts.timeoutMs ?? 150_000
  const layout = await new Promise<ClusterLayout>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no CLUSTER line within ${timeoutMs / 1000} s: ${out.slice(-2000)}`)), timeoutMs)
    const onData = (b: Buffer) => {
      out += b.toString()
      const m = /^CLUSTER (.+)$/m.exec(out)
      if (m) {
        clearTimeout(timer)
        res(JSON.parse(m[1]))
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      rej(new Error(`npm run cluster exited with ${code}: ${out.slice(-2000)}`))
    })
  })
  return { child, layout, env }
}
