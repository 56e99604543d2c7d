import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { once } from 'node:events'
import type { Logger } from 'pino'

/**
 * Runs Redis and NATS (JetStream) from Debian's packages on loopback, with data under DATA_DIR,
 * for the embedded default and for tests. Installs them with apt-get when they are absent.
 * The children stay in our process group: killing the group kills them too, and a restart after
 * a kill -9 of this process alone finds the orphans by their pid files and replaces them.
 */
export interface LocalService {
  name: string
  url: string
  child: ChildProcess
  stop(): Promise<void>
}

const PACKAGES: Record<string, string> = { 'redis-server': 'redis-server', 'redis-cli': 'redis-tools', 'nats-server': 'nats-server' }

function which(bin: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin'])) {
    const p = join(dir, bin)
    if (dir && existsSync(p)) return p
  }
  return null
}

/** Finds a binary, installing its Debian package once if it is missing. */
export function ensureBinary(bin: string, log?: Logger): string {
  const found = which(bin)
  if (found) return found
  const pkg = PACKAGES[bin] ?? bin
  log?.info({ pkg }, 'installing missing Debian package')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const update = spawnSync('apt-get', ['update'], { stdio: 'inherit', env })
  const install = update.status === 0 ? spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { stdio: 'inherit', env }) : update
  const after = which(bin)
  if (install.status !== 0 || !after) {
    throw new Error(`${bin} is not installed and 'apt-get install ${pkg}' failed; install it or set the URL of an existing server`)
  }
  return after
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Stops a process left behind by an earlier run (its pid file survives a kill -9 of its parent). */
async function replaceOrphan(pidFile: string, log?: Logger): Promise<void> {
  if (!existsSync(pidFile)) return
  const pid = Number(readFileSync(pidFile, 'utf8').trim())
  if (pid > 0 && pid !== process.pid && alive(pid)) {
    log?.warn({ pid, pidFile }, 'stopping a server left running by an earlier run')
    process.kill(pid, 'SIGTERM')
    const deadline = Date.now() + 5000
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    if (alive(pid)) process.kill(pid, 'SIGKILL')
    while (alive(pid)) await new Promise((r) => setTimeout(r, 20))
  }
  rmSync(pidFile, { force: true })
}

async function startProcess(opts: {
  name: string
  bin: string
  args: string[]
  readyLine: RegExp
  logFile: string
  url: string
  log?: Logger
}): Promise<LocalService> {
  const out = openSync(opts.logFile, 'a')
  const child = spawn(opts.bin, opts.args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let seen = ''
  const ready = new Promise<void>((res, rej) => {
    const onData = (b: Buffer) => {
      seen = (seen + b.toString()).slice(-8192)
      if (opts.readyLine.test(seen)) res()
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => rej(new Error(`${opts.name} exited with ${code} before it was ready: ${seen.slice(-500)}`)))
    child.once('error', rej)
  })
  // Keep copying output to the log file after start.
  const { createWriteStream } = await import('node:fs')
  const sink = createWriteStream('', { fd: out })
  child.stdout!.pipe(sink)
  child.stderr!.pipe(sink)
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  try {
    await ready
  } finally {
    clearTimeout(timer)
  }
  opts.log?.info({ service: opts.name, url: opts.url, pid: child.pid }, 'local server started')
  return {
    name: opts.name,
    url: opts.url,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(t)
    },
  }
}

/**
 * A redis-server on loopback with its data in DATA_DIR/redis (or `opts.dir`); `opts.args` are added
 * to the command line (a cluster node's, say).
 */
export async function startRedis(dataDir: string, port: number, log?: Logger, opts: { dir?: string; name?: string; args?: string[] } = {}): Promise<LocalService> {
  const bin = ensureBinary('redis-server', log)
  const dir = resolve(dataDir, opts.dir ?? 'redis')
  mkdirSync(dir, { recursive: true })
  const pidFile = join(dir, 'redis.pid')
  await replaceOrphan(pidFile, log)
  return startProcess({
    name: opts.name ?? 'redis',
    bin,
    args: [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--pidfile', pidFile,
      '--daemonize', 'no', '--protected-mode', 'yes',
      // Append-only file: a restart finds every write acknowledged before a crash. While the file is
      // rewritten (it grows with the boards: gigabytes at national scale) the per-second fsync would
      // block writes for seconds; skipping it then risks only what the mark check already covers: a
      // Redis that comes back without writes is detected and rebuilt or redelivered (README: Rebuild).
      '--appendonly', 'yes', '--appendfsync', 'everysec', '--no-appendfsync-on-rewrite', 'yes', '--save', '',
      // Rewrite the file when it has grown to 5× its last rewritten size, not 2× (the default): a
      // rewrite is a forked child that serialises the whole dataset, a core for seconds (≈ 2 s of CPU
      // for the 100,000-communicator bench's 400 MB), and the board writes of counting make the file
      // grow fast: at 2× it ran every 13–20 s of counting on that bench, and freshness was 400–700 ms
      // while it did. The price: up to 5× the data on disk and a longer replay when Redis restarts.
      '--auto-aof-rewrite-percentage', '400',
      // Keep per-user dedupe buckets in the compact listpack encoding (see README: memory).
      '--hash-max-listpack-entries', '512', '--hash-max-listpack-value', '64',
      // County boards of the national shape hold a few hundred members (p50 282, p90 630 at
      // 1,000,000): as listpacks ≈ 20 B an entry instead of ≈ 115 B as skiplists, and ZADD / ZRANK no
      // dearer at a few hundred (ZADD ≈ 1.7× dearer at 1,000: hence no higher bound; README: Redis
      // memory). Larger boards still become skiplists.
      '--zset-max-listpack-entries', '1024',
      '--logfile', '',
      ...(opts.args ?? []),
    ],
    readyLine: /Ready to accept connections/,
    logFile: join(dir, 'redis.log'),
    url: `redis://127.0.0.1:${port}`,
    log,
  })
}

/** A nats-server with JetStream on loopback, its data in DATA_DIR/nats (or `opts.dir`); `opts.args` are added (a cluster node's routes, say). */
export async function startNats(dataDir: string, port: number, log?: Logger, opts: { dir?: string; name?: string; args?: string[] } = {}): Promise<LocalService> {
  const bin = ensureBinary('nats-server', log)
  const dir = resolve(dataDir, opts.dir ?? 'nats')
  mkdirSync(dir, { recursive: true })
  const pidFile = join(dir, 'nats.pid')
  await replaceOrphan(pidFile, log)
  return startProcess({
    name: opts.name ?? 'nats',
    bin,
    args: ['-js', '-sd', dir, '-a', '127.0.0.1', '-p', String(port), '-P', pidFile, ...(opts.args ?? [])],
    readyLine: /Server is ready/,
    logFile: join(dir, 'nats.log'),
    url: `nats://127.0.0.1:${port}`,
    log,
  })
}
