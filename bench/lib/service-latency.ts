/**
 * Service-side latency of a route from the service's own histogram (http_request_duration_seconds,
 * timed from the first middleware to the response: no client, no socket queueing). Two /metrics
 * snapshots around a run; quantiles interpolated inside a bucket, as Prometheus' histogram_quantile.
 */
export type Buckets = Map<string, Map<number, number>>

const LINE = /^http_request_duration_seconds_bucket\{([^}]*)\} (\d+(?:\.\d+)?(?:e[+-]?\d+)?)$/

/** One read of the service's /metrics: its latency buckets and its GC totals so far. */
export async function metricsSnapshot(base: string): Promise<{ buckets: Buckets; gc: GcTotals }> {
  const text = await (await fetch(`${base}/metrics`)).text()
  return { buckets: latencyBuckets(text), gc: gcTotals(text) }
}

function latencyBuckets(text: string): Buckets {
  const out: Buckets = new Map()
  for (const line of text.split('\n')) {
    const m = LINE.exec(line)
    if (!m) continue
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (labels.method !== 'GET' || !labels.status?.startsWith('2')) continue
    const le = labels.le === '+Inf' ? Infinity : Number(labels.le)
    const byLe = out.get(labels.route) ?? out.set(labels.route, new Map()).get(labels.route)!
    byLe.set(le, (byLe.get(le) ?? 0) + Number(m[2]))
  }
  return out
}

export interface ServiceLatency {
  route: string
  requests: number
  /** ms; NaN without requests. */
  p50: number
  p99: number
  /** Share of requests answered within 5 ms (an exact bucket bound). */
  within5ms: number
}

/** The route that took the most requests between the snapshots (what a one-kind read run hit). */
export function busiestRoute(before: Buckets, after: Buckets): string {
  let best = ''
  let most = -1
  for (const [route, a] of after) {
    const n = (a.get(Infinity) ?? 0) - (before.get(route)?.get(Infinity) ?? 0)
    if (n > most) [best, most] = [route, n]
  }
  return best
}

export function serviceLatency(before: Buckets, after: Buckets, route = busiestRoute(before, after)): ServiceLatency {
  const a = after.get(route) ?? new Map<number, number>()
  const b = before.get(route) ?? new Map<number, number>()
  const les = [...a.keys()].sort((x, y) => x - y)
  const cum = les.map((le) => (a.get(le) ?? 0) - (b.get(le) ?? 0))
  const n = cum.length ? cum[cum.length - 1] : 0
  const q = (p: number) => {
    if (!n) return NaN
    const rank = p * n
    for (let i = 0; i < les.length; i++) {
      if (cum[i] < rank) continue
      const lo = i ? les[i - 1] : 0
      const hi = les[i]
      if (hi === Infinity) return lo * 1000 // beyond the last bound: its lower edge
      const below = i ? cum[i - 1] : 0
      const inside = cum[i] - below
      return 1000 * (lo + (hi - lo) * (inside ? (rank - below) / inside : 1))
    }
    return NaN
  }
  const i5 = les.indexOf(0.005)
  return { route, requests: n, p50: Math.round(q(0.5) * 100) / 100, p99: Math.round(q(0.99) * 100) / 100, within5ms: n && i5 >= 0 ? Math.round((1000 * cum[i5]) / n) / 1000 : NaN }
}

/** Garbage collection so far, by kind (major, minor, …): pauses and their total ms (prom-client's default metric). */
export type GcTotals = Record<string, { n: number; ms: number }>

function gcTotals(text: string): GcTotals {
  const out: GcTotals = {}
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_(sum|count)\{kind="(\w+)"\} (\S+)$/gm)) {
    const k = (out[m[2]] ??= { n: 0, ms: 0 })
    if (m[1] === 'sum') k.ms += Number(m[3]) * 1000
    else k.n += Number(m[3])
  }
  return out
}

/** What collected between two snapshots: "major 3 × 41.2 ms, minor 120 × 1.1 ms". */
export function gcBetween(before: GcTotals, after: GcTotals): { [kind: string]: { n: number; avg_ms: number } } {
  const out: { [kind: string]: { n: number; avg_ms: number } } = {}
  for (const [k, a] of Object.entries(after)) {
    const n = a.n - (before[k]?.n ?? 0)
    if (n > 0) out[k] = { n, avg_ms: Math.round((100 * (a.ms - (before[k]?.ms ?? 0))) / n) / 100 }
  }
  return out
}
