/**
 * Asia/Shanghai calendar arithmetic. China has used UTC+8 without daylight saving since 1991,
 * so a fixed offset is exact for every date this service handles.
 */
export const SHANGHAI_OFFSET_MS = 8 * 3600_000
export const DAY_MS = 86_400_000

export type Period = 'day' | 'week' | 'month' | 'year' | 'all'
export const PERIODS: readonly Period[] = ['day', 'week', 'month', 'year', 'all']

/** Start of the period 'all' for score packing: 2020-01-01 00:00 Asia/Shanghai. */
export const ALL_TIME_START_MS = Date.UTC(2020, 0, 1) - SHANGHAI_OFFSET_MS

/** Shanghai wall-clock fields of an instant. */
function fields(ms: number) {
  const d = new Date(ms + SHANGHAI_OFFSET_MS)
  return { y: d.getUTCFullYear(), m: d.getUTCMonth(), d: d.getUTCDate(), dow: d.getUTCDay() }
}

/** Instant at which the Shanghai day y-m-d (month 0-based) begins. */
export function shanghaiMidnight(y: number, m: number, d: number): number {
  return Date.UTC(y, m, d) - SHANGHAI_OFFSET_MS
}

export function dayStart(ms: number): number {
  return Math.floor((ms + SHANGHAI_OFFSET_MS) / DAY_MS) * DAY_MS - SHANGHAI_OFFSET_MS
}

/** 'YYYY-MM-DD' of the Shanghai day containing ms (the last few days asked are remembered). */
export function isoDay(ms: number): string {
  const n = Math.floor((ms + SHANGHAI_OFFSET_MS) / DAY_MS)
  let s = dayNames.get(n)
  if (s === undefined) {
    s = new Date(ms + SHANGHAI_OFFSET_MS).toISOString().slice(0, 10)
    if (dayNames.size >= 4096) dayNames.clear()
    dayNames.set(n, s)
  }
  return s
}
const dayNames = new Map<number, string>()

/** 'YYYYMMDD' of the Shanghai day containing ms. */
export function compactDay(ms: number): string {
  return isoDay(ms).replaceAll('-', '')
}

/** Parses a bare 'YYYY-MM-DD' as the start of that Shanghai day; null when not a real date. */
export function parseDay(s: string): number | null {
  const m = /^(20\d{2})-(\d{2})-(\d{2})$/.exec(s) // 2000–2099, as instants
  if (!m) return null
  const [y, mo, d] = [Number(m[1]), Number(m[2]) - 1, Number(m[3])]
  const ms = shanghaiMidnight(y, mo, d)
  return isoDay(ms) === s ? ms : null
}

export interface PeriodRange {
  period: Period
  /** Compact key used in Redis key names, e.g. d20261123, w20261123 (the Monday), m202611, y2026, a. */
  key: string
  startMs: number
  /** Exclusive end; Infinity for 'all'. */
  endMs: number
  from: string | null
  to: string | null
}

/**
 * The period of the given kind that contains ms. Ranges are computed once per (period, Shanghai
 * day) and shared: callers must not modify them.
 */
export function periodRange(period: Period, ms: number): PeriodRange {
  const k = `${period}${Math.floor((ms + SHANGHAI_OFFSET_MS) / DAY_MS)}`
  let r = ranges.get(k)
  if (!r) {
    r = Object.freeze(computeRange(period, ms))
    if (ranges.size >= 4096) ranges.clear()
    ranges.set(k, r)
  }
  return r
}
const ranges = new Map<string, PeriodRange>()

function computeRange(period: Period, ms: number): PeriodRange {
  const f = fields(ms)
  switch (period) {
    case 'day': {
      const s = shanghaiMidnight(f.y, f.m, f.d)
      return mk(period, 'd' + compactDay(s), s, s + DAY_MS)
    }
    case 'week': {
      const back = (f.dow + 6) % 7 // Monday = 0
      const s = shanghaiMidnight(f.y, f.m, f.d - back)
      return mk(period, 'w' + compactDay(s), s, s + 7 * DAY_MS)
    }
    case 'month': {
      const s = shanghaiMidnight(f.y, f.m, 1)
      return mk(period, 'm' + compactDay(s).slice(0, 6), s, shanghaiMidnight(f.y, f.m + 1, 1))
    }
    case 'year': {
      const s = shanghaiMidnight(f.y, 0, 1)
      return mk(period, 'y' + f.y, s, shanghaiMidnight(f.y + 1, 0, 1))
    }
    case 'all':
      return { period, key: 'a', startMs: ALL_TIME_START_MS, endMs: Infinity, from: null, to: null }
  }
}

function mk(period: Period, key: string, startMs: number, endMs: number): PeriodRange {
  return { period, key, startMs, endMs, from: isoDay(startMs), to: isoDay(endMs - 1) }
}

/** The instants the API takes: from 2000-01-01 to the end of 2099 (UTC). Beyond, a time is a typo or an attack, and some would not even print. */
export const INSTANT_MIN_MS = Date.UTC(2000, 0, 1)
export const INSTANT_MAX_MS = Date.UTC(2100, 0, 1) - 1

/**
 * Parses an API time: ISO-8601 with an offset, or epoch milliseconds (number or digit string), within
 * 2000–2099. A device's own clock (`clock`: an event's ts and sent_at) may be anywhere from 1970 to
 * 2099: a phone reset to 1970 is exactly what the sent_at correction is for.
 */
export function parseInstant(v: unknown, clock = false): number | null {
  const min = clock ? 1 : INSTANT_MIN_MS
  const inRange = (ms: number) => (Number.isInteger(ms) && ms >= min && ms <= INSTANT_MAX_MS ? ms : null)
  if (typeof v === 'number') return inRange(v)
  if (typeof v !== 'string') return null
  if (/^\d{10,16}$/.test(v)) return inRange(Number(v))
  // Require an explicit offset (Z or ±hh:mm): a bare local time is ambiguous.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i.test(v)) return null
  return inRange(Date.parse(v))
}

/** ISO-8601 in Asia/Shanghai with its +08:00 offset, e.g. 2026-11-23T10:00:00.000+08:00. */
export function shanghaiIso(ms: number): string {
  const t = ms + SHANGHAI_OFFSET_MS
  // Written by hand for years 1970–9999 (a board page formats 100 of these; Date.toISOString and a
  // replace were a tenth of a top-page read's CPU); anything else goes through Date.
  if (!Number.isSafeInteger(t) || t < 0 || t >= 253402300800000) return new Date(t).toISOString().replace('Z', '+08:00')
  const days = Math.floor(t / DAY_MS)
  let rest = t - days * DAY_MS
  // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil, inverted), for days ≥ 0.
  const z = days + 719468
  const era = Math.floor(z / 146097)
  const doe = z - era * 146097
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365)
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100))
  const mp = Math.floor((5 * doy + 2) / 153)
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1
  const m = mp < 10 ? mp + 3 : mp - 9
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0)
  const h = Math.floor(rest / 3600_000)
  rest -= h * 3600_000
  const mi = Math.floor(rest / 60_000)
  rest -= mi * 60_000
  const sec = Math.floor(rest / 1000)
  const msec = rest - sec * 1000
  return `${y}-${two(m)}-${two(d)}T${two(h)}:${two(mi)}:${two(sec)}.${msec < 10 ? '00' : msec < 100 ? '0' : ''}${msec}+08:00`
}
const two = (n: number) => (n < 10 ? '0' + n : String(n))
