/**
 * KPI benchmark: loads N facts (default 10,000,000) and their communicators into a fresh embedded
 * ClickHouse with SQL (`INSERT … SELECT … FROM numbers()`, so the materialized view builds the
 * rollups exactly as live inserts do), prints how long loading took, then times the query function
 * behind GET /v1/kpis (regionKpis, the same SQL) for a province drill-down (湖南 43 → its cities)
 * and a city drill-down (岳阳 4306 → its counties) over a day, 30 days and a year: p50/p99.
 * Facts arrive in time order as in a live stream (stream sequences grow with the day), each day
 * with its share of the facts, spread over the communicators.
 * HTTP is not in these figures (see `npm run bench` for the HTTP read paths).
 *   npx tsx bench/kpi.ts [--facts=10000000] [--users=1000000] [--runs=60]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { regionKpis } from '../api/routes/kpis.ts'
import { createClickHouse } from '../core/clients/clickhouse.ts'
import { loadRegionTree } from '../core/regions.ts'
import { migrate } from '../core/schema.ts'
import { loadCensus, type PopulationStore } from '../core/store/populations.ts'
import { DAY_MS, dayStart, isoDay } from '../core/time.ts'

const arg = (name: string, def: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? process.env[name.toUpperCase()] ?? def)
const FACTS = arg('facts', 10_000_000)
const USERS = arg('users', 1_000_000)
const RUNS = arg('runs', 60)
const log = (s: string) => console.error(`[kpi ${((performance.now() / 1000).toFixed(1) + 's').padStart(7)}] ${s}`)

const tree = loadRegionTree()
const towns = [...tree.children('43')].flatMap((c) => tree.children(c.code)).flatMap((c) => tree.children(c.code)).map((t) => t.code)
const dir = mkdtempSync(join(tmpdir(), 'kepu-kpi-'))
const ch = await createClickHouse({ dataDir: dir })
await migrate(ch)
const census = loadCensus()
const populations: PopulationStore = {
  put: async () => {
    throw new Error('read-only')
  },
  of: async (code) => (census.has(code) ? { region_code: code, year: 2020, population: census.get(code)!, source: 'census-2020', updated_at: 0 } : null),
}
const today = dayStart(Date.now())
const townsSql = `[${towns.map((t) => `'${t}'`).join(',')}]`

log(`loading ${USERS.toLocaleString()} communicators and ${FACTS.toLocaleString()} facts over ${towns.length} towns of 湖南省, 365 days`)
const t0 = performance.now()
await ch.command({
  query: `INSERT INTO users SELECT concat('bu', toString(number)), '', '', ${townsSql}[number % ${towns.length} + 1], '个人用户', concat('inst', toString(number % 500)),
          fromUnixTimestamp64Milli(toInt64(${today} - (number % 730) * 86400000)), now64(3) FROM numbers(${USERS})`,
})
// Their registration facts, as an import records them (the rollup registrations_daily follows).
await ch.command({
  query: `INSERT INTO registrations SELECT id, 1, 1, region_code, institution_id, assumeNotNull(certified_at), toDate(assumeNotNull(certified_at)), 'bench', now64(3) FROM users`,
})
const CHUNK = 2_000_000
for (let off = 0; off < FACTS; off += CHUNK) {
  const n = Math.min(CHUNK, FACTS - off)
  await ch.command({
    query: `INSERT INTO facts SELECT
        concat('e', toString(number)) AS event_id, number + 1 AS stream_seq, 0 AS stream_idx,
        if(number % 10 < 8, 'share_back', 'read') AS type,
        concat('bu', toString(number % ${USERS})) AS user_id, toUInt32(number % ${USERS} + 1) AS user_ix, 'bench' AS app_id,
        fromUnixTimestamp64Milli(toInt64(${today} - (364 - intDiv(number * 365, ${FACTS})) * 86400000 + (number % 86400) * 1000)) AS ts, ts AS client_ts, NULL AS sent_at, ts AS received_at,
        toDate(ts, 'Asia/Shanghai') AS day,
        if(number % 50 = 0, 'capped', 'counted') AS decision, '' AS reason,
        if(decision = 'counted' AND type = 'share_back', 1, 0) AS shares, if(decision = 'counted', 1, 0) AS points, 0 AS streak, 1 AS rule_version,
        ${townsSql}[(number % ${USERS}) % ${towns.length} + 1] AS region_code, concat('inst', toString((number % ${USERS}) % 500)) AS institution_id,
        'c' AS content_id, 'wechat' AS channel, '' AS viewer, '' AS raw
      FROM numbers(${off}, ${n})`,
  })
  log(`facts ${Math.min(off + n, FACTS).toLocaleString()}/${FACTS.toLocaleString()}`)
}
const loadS = (performance.now() - t0) / 1000
log(`loaded in ${loadS.toFixed(1)} s`)

const pct = (xs: number[], p: number) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]
const results: Record<string, { p50: number; p99: number }> = {}
async function timeQueries(stage: string) {
  for (const [region, label] of [['43', 'province 43 → 14 cities'], ['4306', 'city 4306 → counties']] as const) {
    for (const days of [1, 30, 365]) {
      const times: number[] = []
      for (let i = 0; i < RUNS; i++) {
        const s = performance.now()
        await regionKpis({ ch, tree, populations }, region, today - (days - 1) * DAY_MS, today + DAY_MS)
        times.push(performance.now() - s)
      }
      results[`${stage}: ${label}, ${days} day${days > 1 ? 's' : ''}`] = { p50: pct(times, 50), p99: pct(times, 99) }
    }
  }
}
// Right after loading, the rollups are many unmerged parts; ClickHouse merges them in the background
// as a live system runs. Both are measured: as loaded, and once merged (OPTIMIZE … FINAL).
await timeQueries('as loaded')
const t1 = performance.now()
for (const t of ['kpi_daily', 'kpi_monthly', 'registrations_daily']) await ch.command({ query: `OPTIMIZE TABLE ${t} FINAL` })
const mergeS = (performance.now() - t1) / 1000
log(`merged the rollups in ${mergeS.toFixed(1)} s`)
await timeQueries('merged')
const { top } = await regionKpis({ ch, tree, populations }, '43', today - 364 * DAY_MS, today + DAY_MS)
await ch.close()
rmSync(dir, { recursive: true, force: true })

console.log(`\nKPI queries (embedded ClickHouse, ${FACTS.toLocaleString()} facts, ${USERS.toLocaleString()} communicators; ${RUNS} runs each; to ${isoDay(today)})`)
console.log(`  load (INSERT … SELECT, rollups built by the materialized views)  ${loadS.toFixed(1)} s; merging them afterwards ${mergeS.toFixed(1)} s`)
for (const [k, v] of Object.entries(results)) console.log(`  ${k.padEnd(50)} p50 ${v.p50.toFixed(1).padStart(7)} ms   p99 ${v.p99.toFixed(1).padStart(7)} ms`)
console.log(`  sanity: 43 over the year: shares ${top.shares.toLocaleString()}, active ${top.active.toLocaleString()}, certified ${top.certified.toLocaleString()}`)
console.log(`KPI_RESULT ${JSON.stringify({ facts: FACTS, users: USERS, load_s: loadS, merge_s: mergeS, results })}`)
