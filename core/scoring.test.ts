import { describe, expect, it } from 'vitest'
import { packScore, unpackScore } from './scoring.ts'
import { periodRange } from './time.ts'

describe('packed board scores', () => {
  const t = Date.parse('2026-11-23T10:00:00+08:00')
  const year = periodRange('year', t)
  it('round-trips count and reached_at exactly', () => {
    for (const [count, at] of [[1, t], [300, t + 123], [109_800, year.endMs - 1], [0, year.startMs]] as const) {
      expect(unpackScore('year', year.startMs, packScore('year', year.startMs, count, at))).toEqual({ count, reachedAt: at })
    }
    const all = periodRange('all', t)
    expect(unpackScore('all', all.startMs, packScore('all', all.startMs, 2_000_000, t))).toEqual({ count: 2_000_000, reachedAt: Math.floor(t / 1000) * 1000 })
  })
  it('orders more first, then earlier reached_at, as ascending stored scores', () => {
    const s = (c: number, at: number) => packScore('day', year.startMs, c, at)
    expect(s(5, t + 1000)).toBeLessThan(s(4, t))
    expect(s(5, t)).toBeLessThan(s(5, t + 1))
    // A later state of the same user never compares as "lower" than an earlier one with fewer counts: ZADD LT keeps the max.
    expect(Math.min(s(5, t + 5000), s(6, t + 9000))).toBe(s(6, t + 9000))
  })
})
