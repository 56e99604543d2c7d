// k6: leaderboard reads at a constant arrival rate (scenario `leaderboard`), or with SCENARIO=mixed
// the same reads plus event batches (1 batch for every 4 reads) as two concurrent scenarios.
//   k6 run -e ADMIN_TOKEN=... -e RATE=200 -e DURATION=60s loadtest/k6/leaderboard.js
//   k6 run -e SCENARIO=mixed -e APP_KEY=... -e ADMIN_TOKEN=... -e RATE=100 loadtest/k6/leaderboard.js
// Env: BASE_URL, ADMIN_TOKEN (reads), APP_KEY (mixed), USERS, USER_PREFIX, REGION, RATE (total
// requests/s), DURATION, P99_MS, RUN_ID. USERS and USER_PREFIX must match seed.mjs.
import http from 'k6/http'
import { check, fail } from 'k6'
import exec from 'k6/execution'
import { buildRequest, eventsShare, k6Arrival, missingCredentials, pickKind, settingsFrom } from '../scenarios.js'
import { postBatch } from './ingest.js'

const scenario = __ENV.SCENARIO === 'mixed' ? 'mixed' : 'leaderboard'
const s = settingsFrom(__ENV, scenario)
const share = eventsShare(scenario)

const scenarios = { reads: k6Arrival(s.rate * (1 - share), s.duration, 'reads') }
const thresholds = {
  http_req_failed: ['rate<0.01'],
  'http_req_duration{kind:top}': ['p(99)<' + s.p99Ms],
  'http_req_duration{kind:around}': ['p(99)<' + s.p99Ms],
  checks: ['rate>0.99'],
}
if (share > 0) {
  scenarios.ingest = k6Arrival(s.rate * share, s.duration, 'ingest', { kind: 'events' })
  thresholds['http_req_duration{kind:events}'] = ['p(99)<' + s.p99Ms]
}
export const options = { scenarios, thresholds }

export function setup() {
  const missing = missingCredentials(s)
  if (missing.length) fail('set ' + missing.join(', ') + ' (see loadtest/README.md)')
  return { runId: s.runId || 'k6' + Date.now().toString(36) }
}

/** One read: the top 100 or one user's rank with neighbours, alternating as in `leaderboard`. */
export function reads() {
  const n = exec.scenario.iterationInTest
  const r = buildRequest(pickKind('leaderboard', n), n, s, Date.now())
  const res = http.request(r.method, s.baseUrl + r.path, null, {
    headers: r.headers,
    tags: { kind: r.kind, name: r.kind === 'top' ? 'GET /v1/leaderboards' : 'GET /v1/leaderboards/users/{id}' },
  })
  check(res, { [r.kind + ': 200']: (x) => x.status === 200 })
}

export const ingest = postBatch
