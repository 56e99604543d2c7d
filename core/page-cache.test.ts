import { describe, expect, it } from 'vitest'
import { createPageCache } from './page-cache.ts'

/** A clock the test moves by hand. */
function clock(start = 1_000_000) {
  let t = start
  return { now: () => t, advance: (ms: number) => (t += ms) }
}

/** A computation whose result the test releases, counting its calls. */
function source() {
  let calls = 0
  let version = 0
  return {
    calls: () => calls,
    bump: () => version++,
    compute: async () => {
      calls++
      return `v${version}`
    },
  }
}

describe('page cache', () => {
  it('serves a result until ttlMs after its computation started, never later', async () => {
    const c = clock()
    const s = source()
    const cache = createPageCache({ ttlMs: 100, now: c.now })
    expect(await cache.get('k', s.compute)).toBe('v0')
    s.bump()
    c.advance(99)
    expect(await cache.get('k', s.compute)).toBe('v0')
    c.advance(1)
    expect(await cache.get('k', s.compute)).toBe('v1')
    expect(s.calls()).toBe(2)
  })

  it('measures age from the start of the computation, not its end', async () => {
    const c = clock()
    const cache = createPageCache({ ttlMs: 100, now: c.now })
    let release!: (v: string) => void
    const slow = cache.get('k', () => new Promise<string>((r) => (release = r)))
    c.advance(80) // the read took 80 ms: what it shows is 80 ms old when it lands
    release('old')
    expect(await slow).toBe('old')
    c.advance(20)
    expect(await cache.get('k', async () => 'new')).toBe('new')
  })

  it('lets concurrent requests for a key share one computation', async () => {
    const c = clock()
    const cache = createPageCache({ ttlMs: 100, now: c.now })
    let calls = 0
    let release!: (v: string) => void
    const compute = () => {
      calls++
      return new Promise<string>((r) => (release = r))
    }
    const all = Promise.all([cache.get('k', compute), cache.get('k', compute), cache.get('k', compute)])
    release('page')
    expect(await all).toEqual(['page', 'page', 'page'])
    expect(calls).toBe(1)
  })

  it('does not join a running computation older than ttlMs', async () => {
    const c = clock()
    const cache = createPageCache({ ttlMs: 100, now: c.now })
    const releases: ((v: string) => void)[] = []
    const compute = () => new Promise<string>((r) => releases.push(r))
    const first = cache.get('k', compute)
    c.advance(100)
    const second = cache.get('k', compute)
    expect(releases).toHaveLength(2)
    releases[1]('fresh')
    releases[0]('stale')
    expect(await second).toBe('fresh')
    expect(await first).toBe('stale')
    // The older result landing last does not replace the fresher one.
    expect(await cache.get('k', async () => 'recomputed')).toBe('fresh')
  })

  it('keeps no failed computation', async () => {
    const c = clock()
    const cache = createPageCache({ ttlMs: 100, now: c.now })
    await expect(cache.get('k', async () => Promise.reject(new Error('redis down')))).rejects.toThrow('redis down')
    expect(await cache.get('k', async () => 'ok')).toBe('ok')
  })

  it('keys are separate, and the oldest go first past the bounds', async () => {
    const c = clock()
    const cache = createPageCache({ ttlMs: 100, now: c.now, maxEntries: 2, maxChars: 10 })
    await cache.get('a', async () => 'aaaa')
    await cache.get('b', async () => 'bbbb')
    await cache.get('c', async () => 'cccc')
    expect(cache.size()).toEqual({ entries: 2, chars: 8 })
    expect(await cache.get('a', async () => 'A')).toBe('A') // a was evicted
    expect(await cache.get('c', async () => 'C')).toBe('cccc')
    await cache.get('d', async () => 'dddddddddd')
    expect(cache.size().chars).toBeLessThanOrEqual(10)
  })

  it('with ttlMs 0 computes every time', async () => {
    const s = source()
    const cache = createPageCache({ ttlMs: 0 })
    await cache.get('k', s.compute)
    await cache.get('k', s.compute)
    expect(s.calls()).toBe(2)
    expect(cache.size().entries).toBe(0)
  })
})
