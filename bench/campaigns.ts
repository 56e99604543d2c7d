/**
 * Campaign benchmark (issue 4), on the service as deployed (`tsx main.ts` with its own redis-server,
 * nats-server and embedded ClickHouse, fresh temp DATA_DIR):
 *   1. end-to-end events/s with no campaign running (every one of --users communicators gets a share-back)
 *   2. 20 running campaigns over the communicators' county and everything above it (each event
 *      feeds all 20), created with a window that started earlier today: the backfill of 20 × users
 *   3. end-to-end events/s again, with the 20 campaigns fed by the aggregator
 *   4. standings read latency (top 100, a communicator's own standing ±5) with the campaign's
 *      participants on the board
 *   npx tsx bench/campaigns.ts [--users=100000] [--events=100000] [--campaigns=20] [--read-seconds=8]
 */
import { parseConfig } from '../core/config.ts'
import { dayStart } from '../core/time.ts'
import { Api } from './lib/api.ts'
import { cannon } from './lib/cannon.ts'
import { startService, type RunningService } from './lib/service.ts'
import { StreamWatch } from './lib/stream.ts'
import { fmtInt, options, progress, round, sleep } from './lib/util.ts'
import { buildBodies, importUsers, Ledger, Planner, rosterRow, sendAll, userId, waitForDrain } from './lib/workload.ts'

const opt = options({ users: 100_000, events: 100_000, campaigns: 20, batch: 500, senders: 8, readSeconds: 8, readConnections: 10, e2eTimeout: 300, seed: 7 })
const REGIONS = ['43', '4306', '430623'] // the roster's county and above: every event is in all campaigns
let svc: RunningService | null = null

async function e2e(api: Api, stream: StreamWatch, tag: string) {
  const ledger = new Ledger(opt.users)
  const planner = new Planner(opt.users, tag, opt.seed, ledger)
  const bodies = buildBodies(planner, opt.events, opt.users, opt.batch)
  const total = bodies.reduce((a, b) => a + b.events, 0)
  let sent = false
  const t0 = performance.now()
  const sendP = sendAll(api, bodies, opt.senders).finally(() => (sent = true))
  const done = await waitForDrain(api, stream, { everyMs: 100, timeoutMs: opt.e2eTimeout * 1000, ready: () => sent })
  await sendP
  const secs = (done.at - t0) / 1000
  const rate = (total - done.stream.messages) / secs
  progress('e2e', `${tag}: ${fmtInt(total)} events ${done.ok ? 'counted and stored' : 'NOT all done'} in ${secs.toFixed(1)} s = ${fmtInt(rate)} events/s`)
  return { events: total, seconds: round(secs, 2), events_per_s: round(rate, 0), complete: done.ok }
}

async function main() {
  svc = await startService({ logLevel: 'warn' })
  const config = parseConfig(svc.env)
  const api = new Api(svc.base, svc.adminToken)
  await api.createApp('bench-campaigns')
  const stream = await StreamWatch.open(`nats://127.0.0.1:${svc.env.LOCAL_NATS_PORT}`, config.nats.stream)
  const imp = await importUsers(api, Array.from({ length: opt.users }, (_, i) => rosterRow(i)))
  progress('import', `${fmtInt(imp.created)} communicators in ${(imp.ms / 1000).toFixed(1)} s`)

  const without = await e2e(api, stream, 'no-campaigns')

  const t0 = performance.now()
  const ids: string[] = []
  for (let i = 0; i < opt.campaigns; i++) {
    const r = await api.call('POST', '/v1/campaigns', {
      body: { name: `bench ${i}`, region_code: REGIONS[i % REGIONS.length], starts_at: dayStart(Date.now()), ends_at: Date.now() + 30 * 86_400_000, metric: i % 2 ? 'points' : 'shares', min_score: 1, top_n: 100, tiers: [{ from_rank: 1, to_rank: 100, prize: '奖' }] },
    })
    if (r.status !== 201) throw new Error(`POST /v1/campaigns: ${r.status} ${r.text}`)
    ids.push(r.json.id)
  }
  for (;;) {
    const st = await Promise.all(ids.map(async (id) => (await api.call('GET', `/v1/campaigns/${id}`)).json.backfill))
    if (st.every((b) => b === 'done')) break
    if (performance.now() - t0 > 600_000) throw new Error('backfill did not finish in 10 minutes')
    await sleep(200)
  }
  const backfillS = (performance.now() - t0) / 1000
  progress('backfill', `${opt.campaigns} campaigns created and backfilled (${fmtInt(opt.users)} participants each) in ${backfillS.toFixed(1)} s`)

  const withC = await e2e(api, stream, `with-${opt.campaigns}-campaigns`)
  if (!withC.complete) {
    // Reads are measured on a quiet service, not behind the rest of that backlog.
    progress('reads', 'waiting for the rest of the backlog to be counted first')
    await waitForDrain(api, stream, { everyMs: 200, timeoutMs: 1_200_000 })
  }

  const first = (await api.call('GET', `/v1/campaigns/${ids[0]}/standings?limit=100`, { token: api.appKey })).json
  const top = await cannon(svc.base, api.appKey, opt.readConnections, opt.readSeconds, () => `/v1/campaigns/${ids[0]}/standings?limit=100`)
  const mine = await cannon(svc.base, api.appKey, opt.readConnections, opt.readSeconds, () => `/v1/campaigns/${ids[0]}/standings/users/${userId(Math.floor(Math.random() * opt.users))}?around=5`)
  progress('reads', `standings top 100 p50 ${top.p50} ms p99 ${top.p99} ms; own ±5 p50 ${mine.p50} ms p99 ${mine.p99} ms (${fmtInt(first.total)} participants)`)

  const result = {
    users: opt.users, campaigns: opt.campaigns, e2e_without: without, e2e_with: withC,
    ratio: round(withC.events_per_s / without.events_per_s, 2), backfill_s: round(backfillS, 1),
    standings: { participants: first.total, top100: top, own_around5: mine },
  }
  console.log(`\nCampaigns (service with embedded engines, ${fmtInt(opt.users)} communicators)`)
  console.log(`  end to end, no campaign running       ${fmtInt(without.events_per_s)} events/s (${fmtInt(without.events)} events)`)
  console.log(`  end to end, ${opt.campaigns} campaigns fed            ${fmtInt(withC.events_per_s)} events/s (${fmtInt(withC.events)} events)  ratio ${result.ratio}`)
  console.log(`  backfill of ${opt.campaigns} campaigns created mid-day  ${backfillS.toFixed(1)} s`)
  console.log(`  standings top 100 (${fmtInt(first.total)} participants)  p50 ${top.p50} ms  p99 ${top.p99} ms  (${fmtInt(top.rps)} req/s, ${opt.readConnections} connections)`)
  console.log(`  own standing ±5                       p50 ${mine.p50} ms  p99 ${mine.p99} ms`)
  console.log(`CAMPAIGN_BENCH_RESULT ${JSON.stringify(result)}`)
}

main()
  .catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
  .finally(async () => {
    await svc?.stop()
  })
