import autocannon from 'autocannon'
import { percentile, round } from './util.ts'

export interface ReadResult {
  requests: number
  rps: number
  p50: number
  p90: number
  p99: number
  max: number
  non2xx: number
  errors: number
  timeouts: number
}

/**
 * One autocannon run; latencies are taken from its per-response event (sub-millisecond). Without
 * `rate` a closed loop (each connection sends its next request on the last answer: the service's
 * capacity, and latencies of a saturated service); with it, at most `rate` requests a second over
 * all connections (autocannon's overallRate): latencies at that load.
 */
export function cannon(base: string, token: string, connections: number, seconds: number, path: () => string, rate = 0): Promise<ReadResult> {
  return new Promise((res, rej) => {
    const lat: number[] = []
    const inst = autocannon(
      {
        url: base,
        connections,
        duration: seconds,
        ...(rate > 0 ? { overallRate: rate } : {}),
        headers: { authorization: `Bearer ${token}` },
        requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: path() }) }],
      },
      (err, r) => {
        if (err) return rej(err)
        res({
          requests: lat.length,
          rps: round(lat.length / r.duration, 0),
          p50: round(percentile(lat, 50), 2),
          p90: round(percentile(lat, 90), 2),
          p99: round(percentile(lat, 99), 2),
          max: round(lat.length ? Math.max(...lat) : NaN, 2),
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
        })
      },
    )
    inst.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status >= 200 && status < 300) lat.push(ms)
    })
  })
}

