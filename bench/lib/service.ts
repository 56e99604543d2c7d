import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { alive, descendants } from './proc.ts'
import { progress, sleep } from './util.ts'

/**
 * The service under test, started exactly as a deployment would start it (`tsx main.ts`) in a
 * child process with its own data dir, ports and admin token; redis-server and nats-server are its
 * own children (embedded default).
 */
export interface RunningService {
  base: string
  adminToken: string
  dataDir: string
  redisUrl: string
  env: Record<string, string>
  /** The tsx CLI wrapper we spawned. */
  wrapper: ChildProcess
  /** The node process that runs main.ts (tsx's child), redis-server and nats-server. */
  pids: { wrapper: number; service: number; redis: number; nats: number }
  /** Output lines the service printed (last 200), for diagnosis. */
  output: string[]
  sawListeningLine: boolean
  /** SIGTERM; waits for the service to exit, then for its redis-server / nats-server (by pid). */
  stop(opts?: { keepData?: boolean }): Promise<StopResult>
}

export interface StopResult {
  exitCode: number | null
  signal: string | null
  /** SIGTERM → the service process exited. */
  ms: number
  /** SIGTERM → everything it started is gone too. */
  allMs: number
  leftovers: string[]
}

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

/**
 * Starts the service; with `reuse` (the env of an earlier run) on the same data dir and ports.
 * `engines: false` when it runs on another service's Redis and NATS (REDIS_URL / NATS_URL in
 * extraEnv): then it starts no redis-server or nats-server of its own to look for.
 */
export async function startService(opts: { logLevel: string; extraEnv?: Record<string, string>; readyTimeoutMs?: number; reuse?: Record<string, string>; profileDir?: string; engines?: boolean }): Promise<RunningService> {
  const root = resolve(new URL('../..', import.meta.url).pathname)
  let env: Record<string, string>
  if (opts.reuse) env = { ...opts.reuse }
  else {
    const dataDir = mkdtempSync(join(tmpdir(), 'kepu-bench-'))
    const [port, redisPort, natsPort] = [await freePort(), await freePort(), await freePort()]
    env = {
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOCAL_REDIS_PORT: String(redisPort),
      LOCAL_NATS_PORT: String(natsPort),
      ADMIN_TOKEN: 'bench-admin-' + randomBytes(16).toString('hex'),
      LOG_LEVEL: opts.logLevel,
      ...opts.extraEnv,
    }
  }
  const dataDir = env.DATA_DIR
  const adminToken = env.ADMIN_TOKEN
  const port = Number(env.PORT)
  const redisPort = Number(env.LOCAL_REDIS_PORT)
  // Never let the bench's own environment point the service at shared servers.
  const inherited = { ...process.env }
  for (const k of ['REDIS_URL', 'NATS_URL', 'CLICKHOUSE_URL', 'ROLE']) delete inherited[k]
  const require = createRequire(import.meta.url)
  // The service's whole environment (what parseConfig sees there), also what a restart reuses.
  env = { ...(inherited as Record<string, string>), ...env }
  // With a profile dir the service runs in this node child itself, under the V8 CPU profiler (a
  // .cpuprofile is written there when it exits; open it in Chrome DevTools or speedscope).
  const args = opts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.profileDir, '--import', 'tsx', 'main.ts'] : [require.resolve('tsx/cli'), 'main.ts']
  // The node flags `npm start` and the Dockerfile give the service (tsx passes NODE_OPTIONS on);
  // the bench's own NODE_OPTIONS come after them, so they can override (the last flag wins).
  env.NODE_OPTIONS = ['--max-semi-space-size=64', process.env.NODE_OPTIONS].filter(Boolean).join(' ')
  const wrapper = spawn(process.execPath, args, {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const output: string[] = []
  let sawListeningLine = false
  const onLine = (line: string) => {
    if (!line.trim()) return
    output.push(line)
    if (output.length > 200) output.shift()
    if (/"msg":"listening"|\blistening\b/.test(line)) sawListeningLine = true
    // Errors from the service are worth seeing while the bench runs.
    if (/"level":(50|60)|Error|error/.test(line)) progress('service', line.slice(0, 400))
  }
  let buf = ''
  const feed = (b: Buffer) => {
    buf += b.toString()
    let i: number
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i))
      buf = buf.slice(i + 1)
    }
  }
  wrapper.stdout!.on('data', feed)
  wrapper.stderr!.on('data', feed)
  let exited: { code: number | null; signal: string | null } | null = null
  const exitPromise = new Promise<void>((res) => wrapper.once('exit', (code, signal) => ((exited = { code, signal }), res())))

  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 90_000)
  // LOG_LEVEL=warn hides the info-level "listening" line, so readiness is /readyz 200 (and the
  // "listening" line when the level shows it).
  for (;;) {
    if (exited) throw new Error(`service exited before it was ready (${JSON.stringify(exited)}):\n${output.slice(-30).join('\n')}`)
    if (Date.now() > deadline) {
      wrapper.kill('SIGKILL')
      throw new Error(`service not ready after ${opts.readyTimeoutMs ?? 90_000} ms:\n${output.slice(-30).join('\n')}`)
    }
    try {
      const r = await fetch(base + '/readyz', { signal: AbortSignal.timeout(2000) })
      await r.text()
      if (r.status === 200 && (sawListeningLine || !/^(trace|debug|info)$/.test(opts.logLevel))) break
    } catch {
      /* not listening yet */
    }
    await sleep(100)
  }

  // Find the real processes: tsx's node child (runs main.ts) and its redis-server / nats-server.
  let pids = { wrapper: wrapper.pid!, service: 0, redis: 0, nats: 0 }
  const engines = opts.engines ?? true
  const found = () => !!pids.service && (!engines || (!!pids.redis && !!pids.nats))
  for (let i = 0; i < 50 && !found(); i++) {
    const tree = descendants(wrapper.pid!)
    const node = tree.find((p) => p.comm.startsWith('node') && /main\.ts/.test(p.cmdline))
    pids = {
      wrapper: wrapper.pid!,
      service: node?.pid ?? 0,
      redis: tree.find((p) => p.comm.startsWith('redis-server'))?.pid ?? 0,
      nats: tree.find((p) => p.comm.startsWith('nats-server'))?.pid ?? 0,
    }
    if (!found()) await sleep(100)
  }
  if (!pids.service) pids.service = wrapper.pid! // tsx ran it in-process (older tsx): the wrapper is the service

  return {
    base,
    adminToken,
    dataDir,
    redisUrl: `redis://127.0.0.1:${redisPort}`,
    env,
    wrapper,
    pids,
    output,
    get sawListeningLine() {
      return sawListeningLine
    },
    async stop(o = {}) {
      const t0 = performance.now()
      let exitedAt = 0
      void exitPromise.then(() => (exitedAt = performance.now()))
      const leftovers: string[] = []
      if (!exited) {
        // SIGTERM the process that runs main.ts: its handler drains, flushes and stops redis/nats.
        // (Signalling only tsx's wrapper gives the child 30 ms to confirm before tsx SIGKILLs it.)
        try {
          process.kill(pids.service, 'SIGTERM')
        } catch {
          wrapper.kill('SIGTERM')
        }
        const timeout = sleep(20_000).then(() => 'timeout')
        if ((await Promise.race([exitPromise.then(() => 'exited'), timeout])) === 'timeout') {
          leftovers.push('service did not exit within 20 s of SIGTERM: SIGKILL')
          try {
            process.kill(pids.service, 'SIGKILL')
          } catch {
            /* gone */
          }
          wrapper.kill('SIGKILL')
          await exitPromise
        }
      }
      // The service stops its redis-server and nats-server; make sure, by their pids only.
      await Promise.all(
        ([['redis-server', pids.redis], ['nats-server', pids.nats]] as const).map(async ([name, pid]) => {
          if (!pid) return
          for (let i = 0; i < 20 && alive(pid); i++) await sleep(100)
          if (!alive(pid)) return
          leftovers.push(`${name} (pid ${pid}) was still running after the service exited (the bench stopped it)`)
          try {
            process.kill(pid, 'SIGTERM')
          } catch {
            /* gone */
          }
          for (let i = 0; i < 50 && alive(pid); i++) await sleep(100)
          if (alive(pid)) process.kill(pid, 'SIGKILL')
        }),
      )
      if (!o.keepData) rmSync(dataDir, { recursive: true, force: true })
      const ex = exited as { code: number | null; signal: string | null } | null
      const allMs = performance.now() - t0
      return { exitCode: ex?.code ?? null, signal: ex?.signal ?? null, ms: (exitedAt || performance.now()) - t0, allMs, leftovers }
    },
  }
}
