import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ClickHouseClient } from '@clickhouse/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClickHouse } from '../core/clients/clickhouse.ts'
import { migrate } from '../core/schema.ts'
import { rollupCounts, splitRange } from './routes/kpis.ts'

/**
 * The KPI rollups (daily and monthly bitmaps per level × institution) against a direct recount from
 * the facts, over ranges that cut months anywhere. Facts are written with SQL, spread over 14 months
 * (the API only accepts events of the last 72 hours), including copies of some facts (a redelivery
 * that wrote twice), which must add nothing to shares or active.
 */
let dir: string
let ch: ClickHouseClient
const TOWNS = ['430623101', '430623110', '430624101', '430103001', '110101001']
const INSTS = ['', 'inst-a', 'inst-b']

async function one<T>(query: string, params: Record<string, unknown> = {}): Promise<T> {
  const r = await ch.query({ query, query_params: params, format: 'JSONEachRow' })
  return ((await r.json()) as T[])[0]
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kepu-rollup-'))
  ch = await createClickHouse({ dataDir: dir })
  await migrate(ch)
  const facts = `SELECT concat('e', toString(number)) AS event_id, number + 1 AS stream_seq, 0 AS stream_idx,
      ['share_back', 'read', 'signin'][number % 3 + 1] AS type, concat('u', toString(number % 97)) AS user_id, toUInt32(number % 97 + 1) AS user_ix,
      'app' AS app_id, toDateTime64('2025-01-01 12:00:00', 3, 'Asia/Shanghai') + toIntervalDay(number % 425) AS ts, ts AS client_ts, NULL AS sent_at, ts AS received_at,
      toDate(ts, 'Asia/Shanghai') AS day, if(number % 11 = 0, 'capped', if(number % 13 = 0, 'duplicate', 'counted')) AS decision, '' AS reason,
      0 AS shares, if(decision = 'counted', number % 3, 0) AS points, 0 AS streak, 1 AS rule_version,
      [${TOWNS.map((t) => `'${t}'`).join(',')}][number % 97 % ${TOWNS.length} + 1] AS region_code,
      [${INSTS.map((t) => `'${t}'`).join(',')}][number % 97 % ${INSTS.length} + 1] AS institution_id, '' AS content_id, '' AS channel, '' AS viewer, '' AS raw`
  await ch.command({ query: `INSERT INTO facts ${facts} FROM numbers(20000)` })
  // A second copy of every 7th fact, as a redelivery that was stored twice would write.
  await ch.command({ query: `INSERT INTO facts ${facts} FROM numbers(20000) WHERE number % 7 = 0` })
})
afterAll(async () => {
  await ch?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('splitRange', () => {
  it('splits a range into whole months and the days around them', () => {
    expect(splitRange('2025-01-15', '2025-01-20')).toEqual({ days: [['2025-01-15', '2025-01-20']], months: null })
    expect(splitRange('2025-01-01', '2025-01-31')).toEqual({ days: [], months: ['2025-01-01', '2025-01-01'] })
    expect(splitRange('2025-01-02', '2025-03-30')).toEqual({ days: [['2025-01-02', '2025-01-31'], ['2025-03-01', '2025-03-30']], months: ['2025-02-01', '2025-02-01'] })
    expect(splitRange('2024-12-31', '2026-01-01')).toEqual({ days: [['2024-12-31', '2024-12-31'], ['2026-01-01', '2026-01-01']], months: ['2025-01-01', '2025-12-01'] })
    expect(splitRange('2025-02-01', '2025-02-28')).toEqual({ days: [], months: ['2025-02-01', '2025-02-01'] })
    expect(splitRange('2024-02-10', '2024-03-05')).toEqual({ days: [['2024-02-10', '2024-03-05']], months: null })
  })
})

describe('rollups equal a recount from the facts', () => {
  const ranges: [string, string][] = [
    ['2025-01-01', '2025-01-01'],
    ['2025-01-01', '2026-02-28'],
    ['2025-02-14', '2025-11-03'],
    ['2025-03-01', '2025-05-31'],
    ['2025-06-30', '2025-07-01'],
    ['2024-01-01', '2025-12-31'],
  ]
  const levels = ['', '43', '4306', '430623', '430623110', '11', '430103']
  for (const [from, to] of ranges) {
    it(`${from} … ${to}, every level and institution`, async () => {
      const got = await rollupCounts(ch, levels, '', from, to)
      const byInst = await rollupCounts(ch, levels, null, from, to)
      for (const level of levels) {
        for (const inst of ['', 'inst-a', 'inst-b']) {
          const want = await one<{ active: string; shares: string; points: string }>(
            `SELECT uniqExact(user_ix) AS active, uniqExactIf(stream_seq, decision = 'counted' AND type = 'share_back') AS shares,
                    (SELECT sum(points) FROM facts WHERE decision = 'counted' AND startsWith(region_code, {l:String}) AND ({i:String} = '' OR institution_id = {i:String}) AND day BETWEEN {f:Date} AND {t:Date}) AS points
             FROM facts WHERE decision IN ('counted', 'capped') AND startsWith(region_code, {l:String}) AND ({i:String} = '' OR institution_id = {i:String}) AND day BETWEEN {f:Date} AND {t:Date}`,
            { l: level, i: inst, f: from, t: to },
          )
          const c = (inst ? byInst : got).get(`${level}|${inst}`)
          const label = `${level || 'national'} ${inst || 'all'}`
          expect({ active: c?.active ?? 0, shares: c?.shares ?? 0 }, label).toEqual({ active: Number(want.active), shares: Number(want.shares) })
          // Points are a plain sum over stored rows: a copy adds again. Exactness rests on the
          // aggregator never storing a redelivered fact twice (insertFacts looks it up; the crash
          // test checks that no event has two stored rows).
          expect(c?.points ?? 0, label).toBe(Number(want.points))
        }
      }
    })
  }
})
