/**
 * `npm run bench -- --cluster`: the national workload end to end on the distributed layout of
 * `npm run cluster` (Redis Cluster 3+3, NATS cluster of 3, 2 ingest, 2 aggregators, the API with its
 * store; issue 12), started by the same script in a temp DATA_DIR on free loopback ports. Prints the
 * end-to-end rate, CPU per event of every process, and what a machine with more cores should reach at
 * that cost; the last line is `BENCH_CLUSTER {json}`. On this 2-core box every process shares the same
 * two cores, so the rate cannot rise over one process: the per-event CPU is the figure that carries.
 *
 * Options: --users=200000 (communicators; --users=1000000 is the single-box bench's size)
 * --events=200000 --batch=500 --senders=8 --seed=1 --e2e-timeout=300 --cores=16 --keep=false
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClickHouse } from '../core/clients/clickhouse.ts'
import { launchCluster } from '../scripts/launch-cluster.ts'
import { loadRegionTree } from '../core/regions.ts'
import { Api } from './lib/api.ts'
import { Ledger, nationalRoster, NationalPlanner } from './lib/national.ts'
import { cpuSeconds } from './lib/proc.ts'
import { fmtInt, options, progress, round, sleep } from './lib/util.ts'
import { buildBodies, importUsers, rosterRow, sendAll } from './lib/workload.ts'

const opt = options({ users: 200_000, events: 200_000, batch: 500, senders: 8, seed: 1, e2eTimeout: 300, cores: 16, keep: false, cluster: true })

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'kepu-bench-cluster-'))
  progress('start', `npm run cluster in ${dir}`)
  const { child, layout } = await launchCluster(dir)
  try {
    const token = readFileSync(layout.admin_token_file, 'utf8').trim()
    const pids: [string, number][] = [
      ...layout.processes.map((p): [string, number] => [p.name, p.pid]),
      ...layout.redis.map((n): [string, number] => [`redis ${n.node} (${n.role})`, n.pid]),
      ...layout.nats.map((n): [string, number] => [`nats ${n.url.replace('nats://', '')}`, n.pid]),
    ]
    progress('start', `ready: ${layout.processes.length} service processes, ${layout.redis.length} Redis nodes, ${layout.nats.length} NATS servers`)

    const api = new Api(layout.api, token)
    const app = await api.createApp('bench-cluster')
    const roster = nationalRoster(loadRegionTree(), opt.users, opt.seed)
    progress('import', `importing ${fmtInt(opt.users)} communicators over every province (chunks of 10,000)`)
    const imp = await importUsers(api, Array.from({ length: opt.users }, (_, i) => ({ ...rosterRow(i), region_code: roster.town[i], institution_id: roster.inst[i] || undefined })))
    if (imp.errors) throw new Error(`import reported ${imp.errors} errors`)
    progress('import', `${fmtInt(imp.created)} in ${round(imp.ms / 1000)} s (${fmtInt(opt.users / (imp.ms / 1000))} rows/s)`)

    const planner = new NationalPlanner(opt.users, 'cl' + Date.now().toString(36), opt.seed, new Ledger(opt.users))
    const bodies = buildBodies(planner, opt.events, 0, opt.batch)
    const halves = [bodies.filter((_, i) => i % 2 === 0), bodies.filter((_, i) => i % 2 === 1)]
    const ingest = layout.ingest.map((base) => new Api(base, token, app))
    const ch = await createClickHouse({ url: `http://kepu:${encodeURIComponent(token)}@${layout.facts.replace('http://', '')}/`, dataDir: dir })
    const facts = async () => Number(((await (await ch.query({ query: 'SELECT count() AS n FROM facts', format: 'JSONEachRow' })).json()) as { n: unknown }[])[0].n)
    const before = await facts()
    const cpu0 = new Map(pids.map(([name, pid]) => [name, cpuSeconds(pid) ?? 0]))
    const t0 = performance.now()
    progress('e2e', `${fmtInt(bodies.length * opt.batch)} events, ${opt.senders} senders × ${opt.batch}, half to each ingest process`)
    const sent = await Promise.all(halves.map((h, i) => sendAll(ingest[i], h, Math.max(1, opt.senders / 2))))
    const accepted = sent.reduce((a, r) => a + r.accepted, 0)
    const tSent = performance.now()
    // Stored = counted in Redis and its fact in ClickHouse (an aggregator acks only after both).
    // Asked every 200 ms: no notification says so.
    let stored = 0
    let shown = performance.now()
    for (const end = t0 + opt.e2eTimeout * 1000; (stored = (await facts()) - before) < accepted && performance.now() < end; ) {
      await sleep(200)
      if (performance.now() - shown > 5000) {
        shown = performance.now()
        progress('e2e', `${fmtInt(stored)} of ${fmtInt(accepted)} stored`)
      }
    }
    const t1 = performance.now()
    const cpu = pids.map(([name, pid]) => ({ name, seconds: (cpuSeconds(pid) ?? 0) - cpu0.get(name)! }))
    await ch.close()
    const seconds = (t1 - t0) / 1000
    const total = cpu.reduce((a, c) => a + c.seconds, 0)
    const usPerEvent = (s: number) => round((s / Math.max(1, stored)) * 1e6, 1)
    const report = {
      workload: 'national',
      users: opt.users,
      events: { sent: bodies.length * opt.batch, accepted, stored, complete: stored >= accepted },
      e2e: { events_per_s: round(stored / seconds, 0), seconds: round(seconds, 1), ingest_events_per_s: round(accepted / ((tSent - t0) / 1000), 0) },
      cpu_us_per_event: Object.fromEntries(cpu.map((c) => [c.name, usPerEvent(c.seconds)])),
      box_cpu_us_per_event: usPerEvent(total),
      // Each process at its CPU per event, all of it scaling: cores ÷ box CPU per event. Redis: each
      // master is one thread, so the busiest master bounds the rate at 1 core ÷ its µs per event.
      projection: {
        cores: opt.cores,
        events_per_s: round((opt.cores * 1e6) / Math.max(1, usPerEvent(total)), 0),
        busiest_redis_master_events_per_s: round(1e6 / Math.max(1, ...cpu.filter((c) => c.name.includes('(master)')).map((c) => usPerEvent(c.seconds))), 0),
      },
      import_rows_per_s: round(opt.users / (imp.ms / 1000), 0),
    }
    const rows: [string, string][] = [
      ['end to end', `${fmtInt(report.e2e.events_per_s)} events/s (${fmtInt(stored)} of ${fmtInt(accepted)} stored in ${report.e2e.seconds} s)`],
      ['ingest (both processes)', `${fmtInt(report.e2e.ingest_events_per_s)} events/s answered 202 while counting runs`],
      ['box CPU per event', `${report.box_cpu_us_per_event} µs over every process below`],
      ...cpu.map((c): [string, string] => [`  ${c.name}`, `${usPerEvent(c.seconds)} µs`]),
      [`on ${opt.cores} cores`, `≈ ${fmtInt(report.projection.events_per_s)} events/s if every process kept its CPU per event; the busiest Redis master alone allows ${fmtInt(report.projection.busiest_redis_master_events_per_s)} events/s (one thread: more masters raise it)`],
      ['import', `${fmtInt(report.import_rows_per_s)} rows/s`],
    ]
    const w = Math.max(...rows.map(([k]) => k.length))
    console.log(`Cluster benchmark (national workload, ${fmtInt(opt.users)} communicators, everything on this machine's cores)`)
    for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`)
    if (!report.events.complete) console.log(`  NOTE: not every event was stored within --e2e-timeout=${opt.e2eTimeout}; the rate is of what was.`)
    console.log(`BENCH_CLUSTER ${JSON.stringify(report)}`)
  } finally {
    child.kill('SIGTERM')
    await new Promise((res) => child.once('exit', res))
    if (!opt.keep) rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
