/** Small helpers shared by the benchmark stages: timing, progress lines, percentiles, options. */

export const T0 = performance.now()

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export function elapsed(): string {
  return `${((performance.now() - T0) / 1000).toFixed(1).padStart(6)}s`
}

/** A progress line: `[  12.3s] stage: message`. Goes to stderr so stdout stays the report. */
export function progress(stage: string, msg: string): void {
  process.stderr.write(`[${elapsed()}] ${stage}: ${msg}\n`)
}

/** Nearest-rank percentile of an unsorted sample (copied and sorted). */
export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN
  const s = Float64Array.from(values).sort()
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))
  return s[rank]
}

export function round(n: number, digits = 1): number {
  if (!Number.isFinite(n)) return n
  const f = 10 ** digits
  return Math.round(n * f) / f
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : String(n)
}

export function fmtMiB(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 1048576).toFixed(1)} MiB` : 'n/a'
}

/** Options from `--name=value` flags, then the environment (NAME), then the default. */
export function options<T extends Record<string, number | string | boolean>>(defaults: T): T {
  const flags = new Map<string, string>()
  for (const a of process.argv.slice(2)) {
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/i.exec(a)
    if (!m) throw new Error(`unknown argument ${a} (use --name=value)`)
    flags.set(m[1].toLowerCase(), m[2] ?? 'true')
  }
  if (flags.has('help')) {
    process.stdout.write(
      'usage: npm run bench -- [--name=value ...]  (or the same names as UPPER_SNAKE environment variables)\n' +
        Object.entries(defaults).map(([k, v]) => `  --${kebab(k)}=${v}`).join('\n') + '\n',
    )
    process.exit(0)
  }
  const out: Record<string, number | string | boolean> = { ...defaults }
  for (const [k, def] of Object.entries(defaults)) {
    const raw = flags.get(kebab(k)) ?? process.env[snake(k)]
    if (raw === undefined || raw === '') continue
    if (typeof def === 'number') {
      const n = Number(raw.replaceAll('_', ''))
      if (!Number.isFinite(n)) throw new Error(`--${kebab(k)} must be a number, got ${raw}`)
      out[k] = n
    } else if (typeof def === 'boolean') out[k] = raw !== 'false' && raw !== '0'
    else out[k] = raw
  }
  for (const f of flags.keys()) if (!Object.keys(defaults).some((k) => kebab(k) === f)) throw new Error(`unknown flag --${f}`)
  return out as T
}
const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
const snake = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase()

/** Deterministic PRNG (mulberry32) so runs generate the same event plan. */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
