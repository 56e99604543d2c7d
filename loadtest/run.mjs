#!/usr/bin/env node
// The k6 scenarios (loadtest/scenarios.js) run with autocannon, for machines without k6.
// Same env vars as the k6 scripts; flags override them. Bounded: stops after --duration.
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { DEFAULTS, SCENARIOS, buildRequest, durationSeconds, missingCredentials, pickKind, settingsFrom } from './scenarios.js'

const HELP = `Usage: node loadtest/run.mjs [options]

Runs one load-test scenario against BASE_URL with autocannon and prints a summary.

Options:
  --scenario <name>     ${Object.keys(SCENARIOS).join(' | ')} (default ingest)
  --duration <d>        seconds, or 30s / 2m (env DURATION; default 10)
  --connections <n>     concurrent connections (default 4)
  --users <n>           communicators ${DEFAULTS.userPrefix}0… to use (env USERS; default ${DEFAULTS.users})
  --rate <n>            cap on requests/s across connections (env RATE; default: as fast as answered)
  --batch <n>           events per batch (env BATCH; default ${DEFAULTS.batchSize})
  --base-url <url>      target (env BASE_URL; default ${DEFAULTS.baseUrl})
  --allow-remote        allow a target that is not on loopback
  --p99 <ms>            exit 1 when p99 latency exceeds this (env P99_MS; default: the scenario's)
  -h, --help            this text

Env: BASE_URL, APP_KEY (events), ADMIN_TOKEN (reads), USERS, USER_PREFIX, REGION, RATE, DURATION,
BATCH, P99_MS, RUN_ID. Get APP_KEY and the communicators from: node loadtest/seed.mjs
Exit status: 0 when under 1% of requests failed (non-2xx or errors) and p99 is within --p99.

Scenarios:
${Object.entries(SCENARIOS).map(([k, v]) => `  ${k.padEnd(12)} ${v.description}`).join('\n')}
`

let args
try {
  args = parseArgs({
    options: {
      scenario: { type: 'string', default: 'ingest' },
      duration: { type: 'string' },
      connections: { type: 'string', default: '4' },
      users: { type: 'string' },
      rate: { type: 'string' },
      batch: { type: 'string' },
      'base-url': { type: 'string' },
      'allow-remote': { type: 'boolean', default: false },
      p99: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values
} catch (e) {
  console.error(`${e.message}\n\n${HELP}`)
  process.exit(2)
}
if (args.help) {
  console.log(HELP)
  process.exit(0)
}

const die = (msg) => {
  console.error(msg)
  process.exit(2)
}
if (!SCENARIOS[args.scenario]) die(`unknown --scenario ${args.scenario} (one of ${Object.keys(SCENARIOS).join(', ')})`)

// Flags override the environment; then the same settings as the k6 scripts.
const env = { ...process.env }
if (args['base-url']) env.BASE_URL = args['base-url']
if (args.users) env.USERS = args.users
if (args.batch) env.BATCH = args.batch
if (args.p99) env.P99_MS = args.p99
const s = settingsFrom(env, args.scenario)
s.runId ||= `ac${Date.now().toString(36)}`
let duration
try {
  duration = durationSeconds(args.duration ?? process.env.DURATION ?? '10')
} catch (e) {
  die(e.message)
}
const connections = Number.parseInt(args.connections, 10)
const rate = args.rate ?? process.env.RATE
const overallRate = rate === undefined ? undefined : Number.parseInt(rate, 10)
if (!(duration > 0 && duration <= 3600)) die('--duration must be between 1 s and 1 h')
if (!(connections >= 1 && connections <= 1000)) die('--connections must be 1…1000')
if (!(s.users >= 1)) die('--users must be at least 1')
if (!(s.batchSize >= 1 && s.batchSize <= 1000)) die('--batch must be 1…1000')
if (overallRate !== undefined && !(overallRate >= 1)) die('--rate must be at least 1')

let target
try {
  target = new URL(s.baseUrl)
} catch {
  die(`BASE_URL is not a URL: ${s.baseUrl}`)
}
if (!/^https?:$/.test(target.protocol)) die(`BASE_URL must be http(s): ${s.baseUrl}`)
const host = target.hostname.replace(/^\[|\]$/g, '')
const loopback = host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
if (!loopback && !args['allow-remote']) die(`refusing non-loopback target ${target.host}; pass --allow-remote if you mean it`)
const missing = missingCredentials(s)
if (missing.length) die(`set ${missing.join(', ')} (node loadtest/seed.mjs prints APP_KEY; ADMIN_TOKEN is the service's)`)

// Each request is built fresh by setupRequest: kind by the scenario's mix, events numbered by
// the batch counter so ids never repeat within a run.
let requestNo = 0
let batchNo = 0
const built = {}
const tally = { accepted: 0, duplicates: 0, rejected: 0, answered: 0 }
const request = {
  setupRequest(req) {
    const kind = pickKind(args.scenario, requestNo++)
    const r = buildRequest(kind, kind === 'events' ? batchNo++ : requestNo, s, Date.now())
    built[kind] = (built[kind] ?? 0) + 1
    return { ...req, method: r.method, path: r.path, headers: r.headers, body: r.body ?? undefined }
  },
  onResponse(status, body) {
    if (status !== 202) return
    try {
      const j = JSON.parse(body)
      tally.accepted += j.accepted ?? 0
      tally.duplicates += j.duplicates ?? 0
      tally.rejected += j.rejected?.length ?? 0
      tally.answered += (j.accepted ?? 0) + (j.duplicates ?? 0) + (j.rejected?.length ?? 0)
    } catch {
      /* not an events answer */
    }
  },
}

console.log(`scenario ${args.scenario}: ${SCENARIOS[args.scenario].description}`)
console.log(`target ${s.baseUrl}  duration ${duration}s  connections ${connections}  users ${s.users}  run ${s.runId}${overallRate ? `  rate ≤${overallRate}/s` : ''}`)

const instance = autocannon({
  url: s.baseUrl,
  connections,
  duration,
  overallRate,
  timeout: 10,
  requests: [request],
})
// Belt and braces: never outlive the duration by more than 15 s, also on Ctrl-C.
const guard = setTimeout(() => instance.stop(), (duration + 15) * 1000)
process.once('SIGINT', () => instance.stop())

const result = await instance
clearTimeout(guard)

const secs = result.duration || duration
const fmt = (x) => (Math.round(x * 10) / 10).toLocaleString('en-US')
const codes = Object.entries(result.statusCodeStats ?? {}).map(([c, v]) => `${c}: ${v.count}`).join(', ') || 'none'
const failed = result.non2xx + result.errors // errors include timeouts
const total = result.requests.total + result.errors
const failRate = total ? failed / total : 1
console.log(`
requests      ${result.requests.total} answered, ${fmt(result.requests.total / secs)}/s  (built: ${Object.entries(built).map(([k, v]) => `${k} ${v}`).join(', ')})
events 202    ${tally.answered} in 202 answers, ${fmt(tally.answered / secs)}/s  (accepted ${tally.accepted}, duplicates ${tally.duplicates}, rejected ${tally.rejected})
status codes  ${codes}
failures      ${failed} (non-2xx ${result.non2xx}, errors ${result.errors} incl. ${result.timeouts} timeouts) = ${fmt(failRate * 100)} %
latency       p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, max ${result.latency.max} ms
throughput    ${fmt(result.throughput.average / 1024)} KiB/s received`)

const ok = failRate < 0.01 && result.latency.p99 <= s.p99Ms
console.log(ok ? 'PASS' : `FAIL (thresholds: failures < 1 %, p99 ≤ ${s.p99Ms} ms)`)
process.exit(ok ? 0 : 1)
