// k6: POST /v1/events with batches at a constant arrival rate (scenario `ingest`).
//   k6 run -e APP_KEY=... -e RATE=20 -e DURATION=60s loadtest/k6/ingest.js
// Env: BASE_URL, APP_KEY, USERS, USER_PREFIX, BATCH, RATE (batches/s), DURATION, P99_MS, RUN_ID.
import http from 'k6/http'
import { check, fail } from 'k6'
import exec from 'k6/execution'
import { Counter } from 'k6/metrics'
import { buildRequest, k6Arrival, missingCredentials, settingsFrom } from '../scenarios.js'

const s = settingsFrom(__ENV, 'ingest')
const accepted = new Counter('events_accepted')
const duplicates = new Counter('events_duplicate')
const rejected = new Counter('events_rejected')

export const options = {
  scenarios: { ingest: k6Arrival(s.rate, s.duration, 'postBatch', { kind: 'events' }) },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_duration{kind:events}': ['p(99)<' + s.p99Ms],
    checks: ['rate>0.99'],
  },
}

export function setup() {
  const missing = missingCredentials(s)
  if (missing.length) fail('set ' + missing.join(', ') + ' (see loadtest/README.md)')
  return { runId: s.runId || 'k6' + Date.now().toString(36) }
}

/** One batch; the iteration number across all VUs numbers the event ids. */
export function postBatch(data) {
  const r = buildRequest('events', exec.scenario.iterationInTest, Object.assign({}, s, { runId: data.runId }), Date.now())
  const res = http.request(r.method, s.baseUrl + r.path, r.body, { headers: r.headers, tags: { kind: 'events', name: 'POST /v1/events' } })
  const ok = check(res, { 'events: 202': (x) => x.status === 202 })
  if (ok) {
    const body = res.json()
    accepted.add(body.accepted || 0)
    duplicates.add(body.duplicates || 0)
    rejected.add((body.rejected || []).length)
  }
}

export default postBatch
