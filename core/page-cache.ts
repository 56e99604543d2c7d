/**
 * A short-lived cache of rendered read results (a board page's JSON), shared by every request for
 * the same key. Its one promise: a result is never served once it is `ttlMs` older than the moment
 * its computation started, i.e. than the Redis state it shows. So with ttlMs = 100 a cached page is
 * at most 100 ms behind Redis, well inside the API's "live within a second".
 *
 * Requests for a key whose computation is running wait for it instead of starting their own (one
 * Redis read per key at a time, however many readers). A failed computation is not kept. Size is
 * bounded by entries and by total length; past either bound the oldest entries go first.
 */
export interface PageCache {
  /** The cached value of key, or compute() now (and keep it for ttlMs). */
  get(key: string, compute: () => Promise<string>): Promise<string>
  /** Entries and characters held (for tests and metrics). */
  size(): { entries: number; chars: number }
}

export interface PageCacheOptions {
  /** 0 disables the cache: every get computes. */
  ttlMs: number
  maxEntries?: number
  /** Bound on the total length of the cached strings (UTF-16 code units). */
  maxChars?: number
  now?: () => number
}

interface Entry {
  value: string
  /** When its computation started: the age of the state it shows is measured from here. */
  startedAt: number
}

export function createPageCache(opts: PageCacheOptions): PageCache {
  const { ttlMs } = opts
  const maxEntries = opts.maxEntries ?? 5_000
  const maxChars = opts.maxChars ?? 32 * 1024 * 1024
  const now = opts.now ?? Date.now
  const entries = new Map<string, Entry>()
  const running = new Map<string, { startedAt: number; value: Promise<string> }>()
  let chars = 0

  const drop = (key: string, e: Entry) => {
    entries.delete(key)
    chars -= e.value.length
  }

  function keep(key: string, e: Entry) {
    const old = entries.get(key)
    if (old) drop(key, old)
    entries.set(key, e)
    chars += e.value.length
    // A Map iterates in insertion order: the first entries are the oldest.
    for (const [k, v] of entries) {
      if (entries.size <= maxEntries && chars <= maxChars) break
      drop(k, v)
    }
  }

  return {
    get(key, compute) {
      if (ttlMs <= 0) return compute()
      const t = now()
      const e = entries.get(key)
      if (e) {
        if (t - e.startedAt < ttlMs) return Promise.resolve(e.value)
        drop(key, e)
      }
      // Joining a running computation keeps the promise too: it started less than ttlMs ago.
      const r = running.get(key)
      if (r && t - r.startedAt < ttlMs) return r.value
      const value = compute()
      const run = { startedAt: t, value }
      running.set(key, run)
      value.then(
        (v) => {
          if (running.get(key) === run) running.delete(key)
          const cur = entries.get(key)
          if (!cur || cur.startedAt < t) keep(key, { value: v, startedAt: t })
        },
        () => {
          if (running.get(key) === run) running.delete(key)
        },
      )
      return value
    },
    size: () => ({ entries: entries.size, chars }),
  }
}
