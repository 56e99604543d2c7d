import type { Redis } from 'ioredis'

/** Redis memory accounting: INFO memory, and MEMORY USAGE of sampled keys. */
export async function infoMemory(redis: Redis): Promise<Record<string, number>> {
  const text = await redis.info('memory')
  const out: Record<string, number> = {}
  for (const line of text.split('\r\n')) {
    const m = /^([a-z_]+):(\d+(?:\.\d+)?)$/.exec(line)
    if (m) out[m[1]] = Number(m[2])
  }
  return out
}

export async function infoKeys(redis: Redis): Promise<number> {
  const text = await redis.info('keyspace')
  return Number(/db0:keys=(\d+)/.exec(text)?.[1] ?? 0)
}

async function scanKeys(redis: Redis, match: string, max: number): Promise<string[]> {
  const out: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 2000)
    cursor = next
    out.push(...batch)
  } while (cursor !== '0' && out.length < max)
  return out.slice(0, max)
}

export interface DedupeMemory {
  keys: number
  entries: number
  bytes: number
  bytesPerEntry: number
  /** Least-squares fit bytes = perKey + perEntry·entries over the sampled keys. */
  marginalPerEntry: number
  perKeyOverhead: number
  entriesPerKey: number
  encoding: string
}

/** MEMORY USAGE (exact: SAMPLES 0) of up to `max` dedupe generation keys u:{<prefix>…}:x<gen>, divided by their entries. */
export async function dedupeMemory(redis: Redis, userPrefix: string, max = 3000): Promise<DedupeMemory> {
  const ks = await scanKeys(redis, `u:{${userPrefix}*}:x*`, max)
  const p = redis.pipeline()
  for (const k of ks) {
    p.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')
    p.hlen(k)
  }
  const res = (await p.exec()) ?? []
  const pts: [number, number][] = []
  for (let i = 0; i < ks.length; i++) pts.push([Number(res[2 * i + 1][1]), Number(res[2 * i][1])])
  const entries = pts.reduce((s, [n]) => s + n, 0)
  const bytes = pts.reduce((s, [, b]) => s + b, 0)
  const fit = linearFit(pts)
  const encoding = ks.length ? String(await redis.object('ENCODING', ks[0])) : 'n/a'
  return {
    keys: ks.length,
    entries,
    bytes,
    bytesPerEntry: entries ? bytes / entries : NaN,
    marginalPerEntry: fit.slope,
    perKeyOverhead: fit.intercept,
    entriesPerKey: ks.length ? entries / ks.length : NaN,
    encoding,
  }
}

/** Per-user state other than dedupe: the communicator's one hash (info, period totals, counters, streak). */
export async function userStateMemory(redis: Redis, ids: string[]): Promise<{ users: number; bytesPerUser: number }> {
  const p = redis.pipeline()
  for (const id of ids) p.call('MEMORY', 'USAGE', `u:{${id}}`, 'SAMPLES', '0')
  const res = (await p.exec()) ?? []
  const bytes = res.reduce((s, [, v]) => s + (Number(v) || 0), 0)
  return { users: ids.length, bytesPerUser: ids.length ? bytes / ids.length : NaN }
}

export async function boardMemory(redis: Redis, key: string): Promise<{ key: string; members: number; bytes: number; bytesPerMember: number; encoding: string }> {
  const [members, bytes, encoding] = await Promise.all([
    redis.zcard(key),
    redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0') as Promise<number | null>,
    redis.object('ENCODING', key) as Promise<string | null>,
  ])
  return { key, members, bytes: Number(bytes ?? 0), bytesPerMember: members ? Number(bytes ?? 0) / members : NaN, encoding: String(encoding) }
}

function linearFit(pts: [number, number][]): { slope: number; intercept: number } {
  const n = pts.length
  if (n < 2) return { slope: NaN, intercept: NaN }
  const mx = pts.reduce((s, [x]) => s + x, 0) / n
  const my = pts.reduce((s, [, y]) => s + y, 0) / n
  let sxx = 0
  let sxy = 0
  for (const [x, y] of pts) {
    sxx += (x - mx) ** 2
    sxy += (x - mx) * (y - my)
  }
  if (sxx === 0) return { slope: NaN, intercept: NaN }
  const slope = sxy / sxx
  return { slope, intercept: my - slope * mx }
}

/** INFO commandstats: per command, calls and microseconds spent executing it inside Redis. */
export async function commandStats(redis: Redis): Promise<Map<string, { calls: number; usec: number }>> {
  const text = await redis.info('commandstats')
  const out = new Map<string, { calls: number; usec: number }>()
  for (const line of text.split('\r\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line)
    if (m) out.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) })
  }
  return out
}

/** The difference of two commandstats snapshots, per event, busiest first. */
export function commandStatsPerEvent(
  before: Map<string, { calls: number; usec: number }>,
  after: Map<string, { calls: number; usec: number }>,
  events: number,
): { command: string; calls_per_event: number; usec_per_event: number }[] {
  const rows = []
  for (const [cmd, a] of after) {
    const b = before.get(cmd) ?? { calls: 0, usec: 0 }
    const calls = a.calls - b.calls
    if (calls <= 0) continue
    rows.push({ command: cmd, calls_per_event: Math.round((100 * calls) / events) / 100, usec_per_event: Math.round((100 * (a.usec - b.usec)) / events) / 100 })
  }
  return rows.sort((x, y) => y.usec_per_event - x.usec_per_event)
}
