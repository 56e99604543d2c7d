import { describe, expect, it } from 'vitest'
import { busiestRoute, serviceLatency, type Buckets } from './service-latency.ts'

const snap = (route: string, cum: [number, number][]): Buckets => new Map([[route, new Map(cum)]])

describe('service-side latency from histogram snapshots', () => {
  it('takes quantiles of the requests between two snapshots, interpolated in their bucket', () => {
    const before = snap('/r', [[0.001, 10], [0.005, 10], [0.01, 10], [Infinity, 10]])
    // 100 new requests: 50 within 1 ms, 48 in (1, 5] ms, 2 in (5, 10] ms.
    const after = snap('/r', [[0.001, 60], [0.005, 108], [0.01, 110], [Infinity, 110]])
    const l = serviceLatency(before, after, '/r')
    expect(l.requests).toBe(100)
    expect(l.p50).toBe(1)
    expect(l.p99).toBe(7.5)
    expect(l.within5ms).toBe(0.98)
  })

  it('picks the route that took the run, and reports nothing for a route without requests', () => {
    const before: Buckets = new Map([['/a', new Map([[Infinity, 5]])], ['/b', new Map([[Infinity, 0]])]])
    const after: Buckets = new Map([['/a', new Map([[Infinity, 6]])], ['/b', new Map([[0.001, 40], [Infinity, 40]])]])
    expect(busiestRoute(before, after)).toBe('/b')
    expect(Number.isNaN(serviceLatency(before, after, '/c').p99)).toBe(true)
  })
})
