import type { ClickHouseClient } from '@clickhouse/client'

/**
 * ClickHouse tables. `facts` is the record: one row per event that reached the aggregator (and one
 * per event ingest refused), with its decision. Redelivery of a message writes an identical row with
 * the same (event_id, stream_seq): ReplacingMergeTree folds such copies, and readers that must be
 * exact either use FINAL or group by (event_id, stream_seq).
 */
/**
 * Every level a row counts at: the nation (''), the province, city, county and the region code itself,
 * each once for all institutions ('') and, when the row has one, once for its institution. A KPI for
 * any region (and any institution within it) reads rows already at that level: a province drill-down
 * reads 15 rows per day, not every town's.
 */
const levels = (rc: string, inst: string) => `arrayDistinct(arrayConcat(
    [('', ''), (substring(${rc}, 1, 2), ''), (substring(${rc}, 1, 4), ''), (substring(${rc}, 1, 6), ''), (${rc}, '')],
    if(${inst} = '', [], [('', ${inst}), (substring(${rc}, 1, 2), ${inst}), (substring(${rc}, 1, 4), ${inst}), (substring(${rc}, 1, 6), ${inst}), (${rc}, ${inst})])))`

/**
 * KPI rollups, fed by materialized views as facts arrive, per level × institution × day (or month):
 * active communicators (any counted or capped event) as a bitmap of their dense indexes, counted
 * share-backs as a bitmap of their stream places, seq·1024 + index in the message (so a second copy of a
 * fact adds nothing), points
 * awarded. Bitmaps keep the counts exact and merge fast: a year is 12 monthly bitmaps, not 365 daily.
 */
const KPI_DAILY_SELECT = `SELECT lvl.1 AS region_code, lvl.2 AS institution_id, day,
         groupBitmapState(user_ix) AS active,
         groupBitmapStateIf(stream_seq * 1024 + stream_idx, decision = 'counted' AND type = 'share_back') AS shares,
         toUInt64(sumIf(points, decision = 'counted')) AS points
  FROM (SELECT day, user_ix, stream_seq, stream_idx, decision, type, points, region_code AS rc0, institution_id AS inst0
        FROM facts WHERE decision IN ('counted', 'capped') AND region_code != '')
  ARRAY JOIN ${levels('rc0', 'inst0')} AS lvl
  GROUP BY region_code, institution_id, day`

/** The monthly rollup is fed from the daily one (a chained view): a few rows per insert, not every fact again. */
const KPI_MONTHLY_SELECT = (from: string) => `SELECT region_code, institution_id, toStartOfMonth(day) AS month,
         groupBitmapMergeState(active) AS active, groupBitmapMergeState(shares) AS shares, sum(points) AS points
  FROM ${from} GROUP BY region_code, institution_id, month`

const kpiTable = (name: string, bucket: 'day' | 'month') => `CREATE TABLE IF NOT EXISTS ${name} (
    region_code LowCardinality(String),
    institution_id String,
    ${bucket} Date,
    active AggregateFunction(groupBitmap, UInt32),
    shares AggregateFunction(groupBitmap, UInt64),
    points SimpleAggregateFunction(sum, UInt64)
  ) ENGINE = AggregatingMergeTree
  ORDER BY (region_code, institution_id, ${bucket})
  SETTINGS index_granularity = 64`

/** Registrations per level × institution × day of certification, summed from the registration facts. */
const REG_SELECT = `SELECT lvl.1 AS region_code, lvl.2 AS institution_id, day, toInt64(sum(delta)) AS delta
  FROM (SELECT day, delta, region_code AS rc0, institution_id AS inst0 FROM registrations)
  ARRAY JOIN ${levels('rc0', 'inst0')} AS lvl
  GROUP BY region_code, institution_id, day`

export const DDL = [
  `CREATE TABLE IF NOT EXISTS facts (
    event_id String,
    stream_seq UInt64,
    stream_idx UInt16,
    type LowCardinality(String),
    user_id String,
    user_ix UInt32,
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
  kpiTable('kpi_daily', 'day'),
  kpiTable('kpi_monthly', 'month'),
  `CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_daily_mv TO kpi_daily AS ${KPI_DAILY_SELECT}`,
  `CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_monthly_mv TO kpi_monthly AS ${KPI_MONTHLY_SELECT('kpi_daily')}`,
  // Registration facts: every change to who is a certified communicator where. A new communicator is
  // +1 at (region, institution, day certified); a correction of region, institution or certification
  // time retracts the previous state (−1, as it was recorded) and asserts the new one (+1).
  `CREATE TABLE IF NOT EXISTS registrations (
    user_id String,
    version UInt64,
    delta Int8,
    region_code LowCardinality(String),
    institution_id String,
    certified_at DateTime64(3, 'Asia/Shanghai'),
    day Date,
    source LowCardinality(String),
    recorded_at DateTime64(3, 'Asia/Shanghai')
  ) ENGINE = MergeTree
  ORDER BY (user_id, version)`,
  `CREATE TABLE IF NOT EXISTS registrations_daily (
    region_code LowCardinality(String),
    institution_id String,
    day Date,
    delta Int64
  ) ENGINE = SummingMergeTree
  ORDER BY (region_code, institution_id, day)
  SETTINGS index_granularity = 256`,
  // Settled campaigns: the frozen standings, one row per ranked communicator, kept forever. A second
  // settlement writes identical rows (same campaign, rank): ReplacingMergeTree folds them.
  `CREATE TABLE IF NOT EXISTS campaign_results (
    campaign_id String,
    rank UInt32,
    user_id String,
    name String,
    institution_id String,
    region_code LowCardinality(String),
    score UInt64,
    reached_at DateTime64(3, 'Asia/Shanghai'),
    eligible Bool,
    prize String,
    settled_at DateTime64(3, 'Asia/Shanghai')
  ) ENGINE = ReplacingMergeTree
  ORDER BY (campaign_id, rank)`,
  `CREATE MATERIALIZED VIEW IF NOT EXISTS registrations_daily_mv TO registrations_daily AS ${REG_SELECT}`,
  // Points spent and returned (积分商城): one row per redemption (delta −price) and per refund
  // (+price). With the counted facts' points they make a communicator's ledger and balance. A row
  // written twice (a retried write, the reservation sweeper) has the same id: folded.
  `CREATE TABLE IF NOT EXISTS ledger (
    id String,
    user_id String,
    kind LowCardinality(String),
    delta Int64,
    item_id String,
    redemption_id String,
    idempotency_key String,
    reason String,
    actor String,
    at DateTime64(3, 'Asia/Shanghai')
  ) ENGINE = ReplacingMergeTree
  ORDER BY (user_id, id)`,
  // The certification review queue: a mirror of the applications in NATS KV, latest version wins.
  `CREATE TABLE IF NOT EXISTS certifications (
    id String,
    account_id String,
    user_id String,
    phone String,
    real_name String,
    region_code LowCardinality(String),
    unit_name String,
    kind LowCardinality(String),
    institution_id String,
    status LowCardinality(String),
    reason String,
    submitted_at DateTime64(3, 'Asia/Shanghai'),
    reviewed_at Nullable(DateTime64(3, 'Asia/Shanghai')),
    reviewer String,
    updated_at DateTime64(3, 'Asia/Shanghai')
  ) ENGINE = ReplacingMergeTree(updated_at)
  ORDER BY id`,
  // Institutions (机构入驻): a mirror of the registrations in NATS KV for the review queue, name search
  // and "my institutions"; latest version wins, the KV record is the truth.
  `CREATE TABLE IF NOT EXISTS institutions (
    id String,
    name String,
    region_code LowCardinality(String),
    kind LowCardinality(String),
    status LowCardinality(String),
    applicant_account String,
    applicant_user String,
    admins Array(String),
    submitted_at DateTime64(3, 'Asia/Shanghai'),
    updated_at DateTime64(3, 'Asia/Shanghai')
  ) ENGINE = ReplacingMergeTree(updated_at)
  ORDER BY id`,
]



async function exists(ch: ClickHouseClient, table: string): Promise<boolean> {
  const r = await ch.query({ query: `EXISTS TABLE ${table}`, format: 'JSONEachRow' })
  return Object.values(((await r.json()) as Record<string, number>[])[0] ?? {})[0] === 1
}

/** Drops a materialized view made before `mark` was part of its query, so that the DDL creates it anew. */
async function replaceOldView(ch: ClickHouseClient, view: string, mark: string): Promise<void> {
  const r = await ch.query({ query: `SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() AND name = {view:String}`, query_params: { view }, format: 'JSONEachRow' })
  const row = ((await r.json()) as { q: string }[])[0]
  if (row && !row.q.includes(mark)) await ch.command({ query: `DROP VIEW ${view}` })
}

export async function migrate(ch: ClickHouseClient): Promise<void> {
  const had = { kpi: await exists(ch, 'kpi_daily'), registrations: await exists(ch, 'registrations') }
  // The first rollup (per town × institution, uniqExact states) is replaced by kpi_daily/kpi_monthly.
  await ch.command({ query: 'DROP VIEW IF EXISTS activity_daily_mv' })
  await ch.command({ query: 'DROP TABLE IF EXISTS activity_daily' })
  for (const [i, query] of DDL.entries()) {
    await ch.command({ query })
    // facts (DDL[0]) of a database from before the KPI bitmaps: add the communicator index first;
    // from before batch messages: the index in the message (0 for every older fact: one per message).
    if (i === 0) {
      await ch.command({ query: 'ALTER TABLE facts ADD COLUMN IF NOT EXISTS user_ix UInt32 AFTER user_id' })
      await ch.command({ query: 'ALTER TABLE facts ADD COLUMN IF NOT EXISTS stream_idx UInt16 AFTER stream_seq' })
      await replaceOldView(ch, 'kpi_daily_mv', 'stream_idx')
    }
  }
  // Rollups added to a database that already holds facts start from them.
  if (!had.kpi) {
    // Inserting into kpi_daily feeds kpi_monthly through the chained view.
    await ch.command({ query: `INSERT INTO kpi_daily ${KPI_DAILY_SELECT}` })
  }
  // Registration facts added to a database that already holds communicators start from them.
  if (!had.registrations) {
    await ch.command({
      query: `INSERT INTO registrations SELECT id, toUInt64(toUnixTimestamp64Milli(updated_at)), 1, region_code, institution_id,
                assumeNotNull(certified_at), toDate(assumeNotNull(certified_at)), 'backfill', now64(3)
              FROM users FINAL WHERE certified_at IS NOT NULL`,
    })
  }
}

/** Epoch milliseconds as ClickHouse DateTime64(3) text input ("seconds.millis", time-zone free). */
export function chTime(ms: number): string {
  const s = Math.floor(ms / 1000)
  return `${s}.${String(ms - s * 1000).padStart(3, '0')}`
}
