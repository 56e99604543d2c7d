import type { ClickHouseClient } from '@clickhouse/client'
import { chTime } from './schema.ts'
import type { User } from './store/users.ts'
import { isoDay } from './time.ts'

/**
 * Registration facts (table `registrations`): who is a certified communicator where, as signed rows.
 * A communicator's recorded state is compared with her stored profile; when region, institution or
 * certification time differ, the recorded state is retracted (−1, exactly as it was recorded) and the
 * new one asserted (+1). Comparing with what ClickHouse holds (not with the previous profile) means a
 * roster imported again after a crash between the profile write and this insert records what was
 * missed. The rollup `registrations_daily` sums the rows per level, institution and day, so
 * "certified by day D" and "new registrations in a range" are sums over a few rows.
 */
export interface RegistrationRow {
  user_id: string
  version: number
  delta: 1 | -1
  region_code: string
  institution_id: string
  certified_at: string
  day: string
  source: string
  recorded_at: string
}

type Recorded = { region_code: string; institution_id: string; certified_at: number; version: number }

async function recorded(ch: ClickHouseClient, ids: string[]): Promise<Map<string, Recorded>> {
  const r = await ch.query({
    query: `SELECT user_id, sum(delta) AS n,
                   argMaxIf(region_code, version, delta > 0) AS r,
                   argMaxIf(institution_id, version, delta > 0) AS i,
                   argMaxIf(toUnixTimestamp64Milli(certified_at), version, delta > 0) AS c,
                   maxIf(version, delta > 0) AS v
            FROM registrations WHERE user_id IN {ids:Array(String)} GROUP BY user_id`,
    query_params: { ids },
    format: 'JSONEachRow',
  })
  const out = new Map<string, Recorded>()
  for (const x of (await r.json()) as { user_id: string; n: string; r: string; i: string; c: string; v: string }[]) {
    if (Number(x.n) > 0) out.set(x.user_id, { region_code: x.r, institution_id: x.i, certified_at: Number(x.c), version: Number(x.v) })
  }
  return out
}

/** The rows that bring the recorded state of `users` to their current profiles (pure, for tests). */
export function registrationChanges(users: User[], before: Map<string, Recorded>, source: string, now: number): RegistrationRow[] {
  const rows: RegistrationRow[] = []
  const row = (user_id: string, s: Recorded, delta: 1 | -1): RegistrationRow => ({
    user_id, version: s.version, delta, region_code: s.region_code, institution_id: s.institution_id,
    certified_at: chTime(s.certified_at), day: isoDay(s.certified_at), source, recorded_at: chTime(now),
  })
  for (const u of users) {
    const was = before.get(u.id)
    const is: Recorded = { region_code: u.region_code, institution_id: u.institution_id, certified_at: u.certified_at, version: u.updated_at }
    if (was && was.region_code === is.region_code && was.institution_id === is.institution_id && was.certified_at === is.certified_at) continue
    if (was) rows.push(row(u.id, was, -1))
    rows.push(row(u.id, is, 1))
  }
  return rows
}

/** Records the registration facts of stored (created or updated) communicators. */
export async function recordRegistrations(ch: ClickHouseClient, users: User[], source: string): Promise<number> {
  let n = 0
  for (let i = 0; i < users.length; i += 5000) {
    const chunk = users.slice(i, i + 5000)
    const rows = registrationChanges(chunk, await recorded(ch, chunk.map((u) => u.id)), source, Date.now())
    if (rows.length) await ch.insert({ table: 'registrations', format: 'JSONEachRow', values: rows })
    n += rows.length
  }
  return n
}
