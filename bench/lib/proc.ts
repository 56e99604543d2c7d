import { readdirSync, readFileSync } from 'node:fs'

/**
 * Linux /proc readings: the process tree under the spawned service, peak memory (VmHWM, and the
 * largest VmRSS seen by a 200 ms sampler) and CPU time per process, so a stage can report how busy
 * each process was.
 */
const CLK_TCK = 100 // USER_HZ on every Linux this runs on (sysconf(_SC_CLK_TCK))

export interface ProcInfo {
  pid: number
  ppid: number
  comm: string
  cmdline: string
}

function readStat(pid: number): { ppid: number; comm: string; cpuTicks: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const close = s.lastIndexOf(')')
    const comm = s.slice(s.indexOf('(') + 1, close)
    const f = s.slice(close + 2).split(' ')
    // fields after comm: state(0) ppid(1) ... utime(11) stime(12)
    return { ppid: Number(f[1]), comm, cpuTicks: Number(f[11]) + Number(f[12]) }
  } catch {
    return null
  }
}

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
  } catch {
    return ''
  }
}

/** Every live descendant of `root` (not including root). */
export function descendants(root: number): ProcInfo[] {
  const all: ProcInfo[] = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    const st = readStat(Number(d))
    if (st) all.push({ pid: Number(d), ppid: st.ppid, comm: st.comm, cmdline: '' })
  }
  const out: ProcInfo[] = []
  const frontier = [root]
  while (frontier.length) {
    const p = frontier.pop()!
    for (const c of all) {
      if (c.ppid === p) {
        c.cmdline = readCmdline(c.pid)
        out.push(c)
        frontier.push(c.pid)
      }
    }
  }
  return out
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return readStat(pid) !== null
  } catch {
    return false
  }
}

export function memKiB(pid: number | 'self'): { rss: number; hwm: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8')
    const rss = /VmRSS:\s+(\d+)/.exec(s)
    const hwm = /VmHWM:\s+(\d+)/.exec(s)
    return { rss: rss ? Number(rss[1]) : 0, hwm: hwm ? Number(hwm[1]) : 0 }
  } catch {
    return null
  }
}

export function cpuSeconds(pid: number | 'self'): number | null {
  const st = readStat(pid === 'self' ? process.pid : pid)
  return st ? st.cpuTicks / CLK_TCK : null
}

export interface Peak {
  label: string
  pid: number
  /** Largest VmRSS seen by the sampler, bytes. */
  maxRss: number
  /** Kernel's high-water mark of RSS (VmHWM) at the last sample, bytes. */
  hwm: number
  lastRss: number
}

/** Samples VmRSS/VmHWM of labelled processes every `everyMs`. */
export class MemorySampler {
  private peaks = new Map<string, Peak>()
  private timer: NodeJS.Timeout | null = null
  constructor(private everyMs = 200) {}

  track(label: string, pid: number | 'self'): void {
    const p = pid === 'self' ? process.pid : pid
    if (!this.peaks.has(label)) this.peaks.set(label, { label, pid: p, maxRss: 0, hwm: 0, lastRss: 0 })
    else this.peaks.get(label)!.pid = p
    this.sampleOne(this.peaks.get(label)!)
  }

  start(): void {
    this.timer = setInterval(() => this.sample(), this.everyMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    this.sample()
  }

  sample(): void {
    for (const p of this.peaks.values()) this.sampleOne(p)
  }

  private sampleOne(p: Peak): void {
    const m = memKiB(p.pid === process.pid ? 'self' : p.pid)
    if (!m) return
    p.lastRss = m.rss * 1024
    p.maxRss = Math.max(p.maxRss, m.rss * 1024)
    p.hwm = Math.max(p.hwm, m.hwm * 1024)
  }

  get(label: string): Peak | undefined {
    return this.peaks.get(label)
  }

  all(): Peak[] {
    return [...this.peaks.values()]
  }
}

/** CPU use of labelled processes over an interval: cpu-seconds / wall-seconds (1.0 = one core). */
export class CpuMeter {
  private start = new Map<string, number>()
  private t0 = performance.now()
  constructor(private pids: Map<string, number>) {
    this.reset()
  }
  /** New pids for the labels (a restarted service); restarts the interval. */
  setPids(pids: Map<string, number>): void {
    this.pids = pids
    this.reset()
  }
  reset(): void {
    this.t0 = performance.now()
    for (const [label, pid] of this.pids) this.start.set(label, cpuSeconds(pid) ?? 0)
  }
  read(): Record<string, number> {
    const wall = (performance.now() - this.t0) / 1000
    const out: Record<string, number> = {}
    for (const [label, pid] of this.pids) {
      const now = cpuSeconds(pid)
      if (now !== null) out[label] = wall > 0 ? (now - (this.start.get(label) ?? 0)) / wall : 0
    }
    return out
  }
}
