import type { ClickHouseClient } from '@clickhouse/client'

/**
 * ClickHouse tables. `facts` is the record: one row per event that reached the aggregator (and one
 * per event ingest refused), with its decision. Redelivery of a message writes an identical row with
 * the same (event_id, stream_seq): ReplacingMergeTree folds such copies, and readers that must be
 * exact either use FINAL or group by (event_id, stream_seq).
 */
const ACTIVITY_SELECT = `SELECT day, region_code, institution_id,
         uniqExactState(user_id) AS active,
         uniqExactStateIf(event_id, decision = 'counted' AND type = 'share_back') AS shares,
         toUInt64(sumIf(points, decision = 'counted')) AS points
  FROM facts
  WHERE decision IN ('counted', 'capped') AND region_code != ''
  GROUP BY day, region_code, institution_id`

export const DDL = [
  `CREATE TABLE IF NOT EXISTS facts (
    event_id String,
    stream_seq UInt64,
    type LowCardinality(String),
    user_id String,
    app_id LowCardinality(String),
    ts DateTime64(3, 'Asia/Shanghai'),
    client_ts DateTime64(3, 'Asia/Shanghai'),
    sent_at Nullable(DateTime64(3, 'Asia/Shanghai')),
    received_at DateTime64(3, 'Asia/Shanghai'),
    day Date,
    decision LowCardinality(String),
    reason String,
    shares UInt8,
    points UInt16,
    streak UInt16,
    rule_version UInt16,
    region_code LowCardinality(String),
    institution_id String,
    content_id String,
    channel LowCardinality(String),
    viewer String,
    raw String
  ) ENGINE = ReplacingMergeTree
  PARTITION BY toYYYYMM(day)
  ORDER BY (day, user_id, event_id, stream_seq)`,
  `CREATE TABLE IF NOT EXISTS users (
    id String,
    phone String,
    real_name String,
    region_code LowCardinality(String),
    kind LowCardinality(String),
    institution_id String,
    certified_at Nullable(DateTime64(3, 'Asia/Shanghai')),
    updated_at DateTime64(3, 'Asia/Shanghai')
  ) ENGINE = ReplacingMergeTree(updated_at)
  ORDER BY id`,
  // KPI rollup, fed by a materialized view as facts arrive: per day, region and institution, the distinct active
  // communicators (any counted or capped event), the distinct counted share-backs (by event id, so a
  // second copy of a fact adds nothing) and the points awarded.
  `CREATE TABLE IF NOT EXISTS activity_daily (
    day Date,
    region_code LowCardinality(String),
    institution_id String,
    active AggregateFunction(uniqExact, String),
    shares AggregateFunction(uniqExact, String),
    points SimpleAggregateFunction(sum, UInt64)
  ) ENGINE = AggregatingMergeTree
  ORDER BY (day, region_code, institution_id)`,
  `CREATE MATERIALIZED VIEW IF NOT EXISTS activity_daily_mv TO activity_daily AS ${ACTIVITY_SELECT}`,
]



export async function migrate(ch: ClickHouseClient): Promise<void> {
  const r = await ch.query({ query: 'EXISTS TABLE activity_daily', format: 'JSONEachRow' })
  const hadRollup = Object.values(((await r.json()) as Record<string, number>[])[0] ?? {})[0] === 1
  for (const query of DDL) await ch.command({ query })
  // A rollup added to a database that already holds facts starts from them.
  if (!hadRollup) await ch.command({ query: `INSERT INTO activity_daily ${ACTIVITY_SELECT}` })
}

/** Epoch milliseconds as ClickHouse DateTime64(3) text input ("seconds.millis", time-zone free). */
export function chTime(ms: number): string {
  const s = Math.floor(ms / 1000)
  return `${s}.${String(ms - s * 1000).padStart(3, '0')}`
}
