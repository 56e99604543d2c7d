import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { dirname, join } from 'node:path'

/**
 * The service as a child process (`node --import tsx main.ts`), as it runs in production, so a test can
 * kill -9 it — the Node process alone, or its whole process group with the redis-server and
 * nats-server it started. Also a tiny CLI (`tsx test/child.ts query <data dir> <sql>…`) that opens
 * a data directory's embedded ClickHouse in a fresh process: chDB binds one data directory per
 * process, so a test that checks several data directories reads each through its own child.
 */
const require = createRequire(import.meta.url)
/**
 * `node --import <tsx loader>`: ONE Node process runs the service. (The tsx CLI, `tsx main.ts`, is a
 * wrapper that runs the service in a second Node process: a kill -9 of the wrapper would leave the
 * real service running, still holding its port and the chDB lock.)
 */
export const NODE_ARGS = ['--import', pathToFileURL(require.resolve('tsx')).href]
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

export interface ServiceProcess {
  proc: ChildProcess
  pid: number
  base: string
  /** Every stdout/stderr line so far (JSON logs and anything else). */
  lines: string[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  alive(): boolean
  /** Resolves with the first line (past or future) matching re; rejects on exit or timeout. */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>
  /** SIGTERM (graceful: drain, flush facts, ack, stop redis/nats) and wait for the exit. */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** True while a process (pid > 0) or a process group (pid < 0) has a live member. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Kills a process group, ignoring one that is already gone. */
export function killGroup(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(-pid, signal)
  } catch {
    /* already gone */
  }
}

/** Awaits a condition, checking every `everyMs`; rejects with `what` after `timeoutMs`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** Spawns the service (`main.ts`) as a process-group leader and waits until it listens and /readyz answers 200. */
export async function spawnService(env: NodeJS.ProcessEnv, port: number, readyTimeoutMs = 60_000): Promise<ServiceProcess> {
  const proc = spawn(process.execPath, [...NODE_ARGS, 'main.ts'], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  const waiters = new Set<{ re: RegExp; res: (l: string) => void }>()
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    proc.once('exit', (code, signal) => res((exitInfo = { code, signal })))
  })
  const onData = (stream: NodeJS.ReadableStream) => {
    let partial = ''
    stream.on('data', (b: Buffer) => {
      const parts = (partial + b.toString()).split('\n')
      partial = parts.pop()!
      for (const l of parts) {
        lines.push(l)
        for (const w of waiters) if (w.re.test(l)) (waiters.delete(w), w.res(l))
      }
    })
  }
  onData(proc.stdout!)
  onData(proc.stderr!)
  const sp: ServiceProcess = {
    proc,
    pid: proc.pid!,
    base: `http://127.0.0.1:${port}`,
    lines,
    exited,
    alive: () => exitInfo === null,
    waitForLine(re, timeoutMs = 60_000) {
      const seen = lines.find((l) => re.test(l))
      if (seen) return Promise.resolve(seen)
      return new Promise<string>((res, rej) => {
        const w = { re, res: (l: string) => (clearTimeout(t), res(l)) }
        const t = setTimeout(() => (waiters.delete(w), rej(new Error(`no line matching ${re} within ${timeoutMs} ms`))), timeoutMs)
        waiters.add(w)
        void exited.then((e) => {
          if (!waiters.delete(w)) return
          clearTimeout(t)
          rej(new Error(`service exited (${JSON.stringify(e)}) before a line matching ${re}:\n${lines.slice(-20).join('\n')}`))
        })
      })
    },
    async stop(timeoutMs = 30_000) {
      if (exitInfo) return exitInfo
      proc.kill('SIGTERM')
      const t = setTimeout(() => killGroup(proc.pid!), timeoutMs)
      const e = await exited
      clearTimeout(t)
      return e
    },
  }
  const listening = await sp.waitForLine(/"msg":"listening"/, readyTimeoutMs)
  // The process we hold is the service itself, so a kill -9 of it kills the service.
  if (JSON.parse(listening).pid !== sp.pid) throw new Error(`service logs pid ${JSON.parse(listening).pid}, spawned ${sp.pid}`)
  await until(async () => {
    if (!sp.alive()) throw new Error(`service exited before it was ready:\n${lines.slice(-20).join('\n')}`)
    try {
      return (await fetch(`${sp.base}/readyz`)).status === 200
    } catch {
      return false
    }
  }, '/readyz → 200', readyTimeoutMs, 100)
  return sp
}

/** Runs queries against a data directory's embedded ClickHouse in a child process (JSONEachRow rows per query). */
export async function queryClickHouse(dataDir: string, queries: string[]): Promise<Record<string, unknown>[][]> {
  const proc = spawn(process.execPath, [...NODE_ARGS, fileURLToPath(import.meta.url), 'query', dataDir, ...queries], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()))
  proc.stderr!.on('data', (b: Buffer) => (err += b.toString()))
  const [code] = (await once(proc, 'exit')) as [number | null]
  if (code !== 0) throw new Error(`clickhouse query child exited with ${code}: ${err.slice(-2000)}`)
  return JSON.parse(out.slice(out.indexOf('\u0001') + 1)) as Record<string, unknown>[][]
}

async function cli(argv: string[]) {
  const [cmd, dataDir, ...queries] = argv
  if (cmd !== 'query' || !dataDir) throw new Error('usage: tsx test/child.ts query <data dir> <sql>…')
  const { createClickHouse } = await import('../core/clients/clickhouse.ts')
  const ch = await createClickHouse({ dataDir })
  const results: unknown[] = []
  for (const query of queries) results.push(await (await ch.query({ query, format: 'JSONEachRow' })).json())
  await ch.close()
  // A marker, so anything chDB may print to stdout first is skipped.
  process.stdout.write('\u0001' + JSON.stringify(results), () => process.exit(0))
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  cli(process.argv.slice(2)).catch((e) => {
    console.error(e)
    process.exit(1)
  })
}
