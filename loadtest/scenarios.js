// Load-test scenarios shared by the k6 scripts (loadtest/k6/*.js) and the Node runner
// (loadtest/run.mjs). Plain ES module, no dependencies, no Node or k6 APIs, conservative syntax
// so k6's JavaScript runtime loads it too. Everything is deterministic in its inputs.

export const DEFAULTS = {
  baseUrl: 'http://127.0.0.1:8080',
  users: 1000,
  userPrefix: 'lt-u',
  batchSize: 500,
  duration: '30s',
  region: '430623', // 华容县; seed.mjs puts every communicator in its town 430623101
}

export const CHANNELS = ['wechat', 'moments', 'qq', 'weibo', 'other']

/**
 * Each scenario is a weighted mix of request kinds: `events` (POST /v1/events, one batch),
 * `top` (GET the top 100) and `around` (GET one user's rank with 5 neighbours each side).
 * `rate` is the default request rate per second (RATE overrides it).
 */
export const SCENARIOS = {
  ingest: {
    description: 'POST /v1/events with batches of 500 events at a constant arrival rate',
    mix: [['events', 1]],
    rate: 20,
    p99Ms: 1000,
  },
  leaderboard: {
    description: 'GET the county top 100 and a user with neighbours, half and half',
    mix: [['top', 1], ['around', 1]],
    rate: 200,
    p99Ms: 250,
  },
  mixed: {
    description: '1 event batch for every 4 leaderboard reads',
    mix: [['events', 1], ['top', 2], ['around', 2]],
    rate: 100,
    p99Ms: 1000,
  },
}

/** 32-bit integer hash of (n, salt): a cheap, well-mixed, deterministic pseudo-random source. */
export function hash32(n, salt) {
  let h = (Math.imul(n | 0, 0x9e3779b1) ^ Math.imul((n / 4294967296) | 0, 0x85ebca77) ^ Math.imul(salt | 0, 0xc2b2ae3d)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d)
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b)
  return (h ^ (h >>> 16)) >>> 0
}

export function userId(i, userPrefix) {
  return userPrefix + i
}

/** A user index in [0, users), skewed toward low indices so the boards have a clear head. */
function pickUser(n, users) {
  const u = hash32(n, 1) / 4294967296
  return Math.floor(u * u * users)
}

/**
 * One batch for POST /v1/events: `size` events numbered startIndex … startIndex+size-1, ids
 * `${runId}-${n}` (unique per run as long as the index ranges do not overlap). Mix: 80 %
 * share_back (channel from CHANNELS), 10 % read, 5 % share_view (with viewer), 5 % signin.
 * Event times fall within the 30 s before `now` (epoch ms); sent_at is `now`.
 */
export function makeBatch(opts) {
  const size = opts.size
  const users = opts.users
  const userPrefix = opts.userPrefix === undefined ? DEFAULTS.userPrefix : opts.userPrefix
  const startIndex = opts.startIndex || 0
  const now = opts.now
  const runId = opts.runId || 'lt'
  const events = []
  for (let k = 0; k < size; k++) {
    const n = startIndex + k
    const roll = hash32(n, 2) % 100
    const e = {
      id: runId + '-' + n,
      type: 'share_back',
      user_id: userId(pickUser(n, users), userPrefix),
      ts: now - (hash32(n, 3) % 30000),
      sent_at: now,
    }
    if (roll < 80) {
      e.content_id = 'c' + (hash32(n, 4) % 5000)
      e.channel = CHANNELS[hash32(n, 5) % CHANNELS.length]
    } else if (roll < 90) {
      e.type = 'read'
      e.content_id = 'c' + (hash32(n, 4) % 5000)
    } else if (roll < 95) {
      e.type = 'share_view'
      e.content_id = 'c' + (hash32(n, 4) % 5000)
      e.viewer = 'v' + (hash32(n, 6) % 1000000)
    } else {
      e.type = 'signin'
    }
    events.push(e)
  }
  return { events: events }
}

export function topPath(region, limit) {
  return '/v1/leaderboards?metric=shares&region=' + (region || DEFAULTS.region) + '&period=day&limit=' + (limit || 100)
}

export function aroundPath(user, region, around) {
  return '/v1/leaderboards/users/' + encodeURIComponent(user) + '?metric=shares&region=' + (region || DEFAULTS.region) + '&period=day&around=' + (around || 5)
}

/** The kind of the n-th request of a scenario (weighted round robin over its mix). */
export function pickKind(scenario, n) {
  const mix = SCENARIOS[scenario].mix
  let total = 0
  for (let i = 0; i < mix.length; i++) total += mix[i][1]
  let slot = n % total
  for (let i = 0; i < mix.length; i++) {
    if (slot < mix[i][1]) return mix[i][0]
    slot -= mix[i][1]
  }
  return mix[0][0]
}

/** The share of a scenario's requests that are event batches (0 … 1). */
export function eventsShare(scenario) {
  const mix = SCENARIOS[scenario].mix
  let total = 0
  let events = 0
  for (let i = 0; i < mix.length; i++) {
    total += mix[i][1]
    if (mix[i][0] === 'events') events += mix[i][1]
  }
  return events / total
}

/**
 * The n-th request of a kind: {kind, method, path, headers, body}. Event batches are signed with
 * the app key and numbered from n * batchSize; reads use the admin token.
 */
export function buildRequest(kind, n, s, now) {
  if (kind === 'events') {
    const batch = makeBatch({ size: s.batchSize, users: s.users, userPrefix: s.userPrefix, startIndex: n * s.batchSize, now: now, runId: s.runId })
    return {
      kind: kind,
      method: 'POST',
      path: '/v1/events',
      headers: { 'content-type': 'application/json', authorization: 'Bearer ' + s.appKey },
      body: JSON.stringify(batch),
    }
  }
  const path = kind === 'top' ? topPath(s.region, 100) : aroundPath(userId(pickUser(hash32(n, 7), s.users), s.userPrefix), s.region, 5)
  return { kind: kind, method: 'GET', path: path, headers: { authorization: 'Bearer ' + s.adminToken }, body: null }
}

function int(v, fallback) {
  const x = parseInt(v, 10)
  return isNaN(x) ? fallback : x
}

/** Settings from an environment object (k6 __ENV or process.env) for one scenario. */
export function settingsFrom(env, scenario) {
  const sc = SCENARIOS[scenario]
  if (!sc) throw new Error('unknown scenario ' + scenario + ' (one of ' + Object.keys(SCENARIOS).join(', ') + ')')
  return {
    scenario: scenario,
    baseUrl: (env.BASE_URL || DEFAULTS.baseUrl).replace(/\/+$/, ''),
    appKey: env.APP_KEY || '',
    adminToken: env.ADMIN_TOKEN || '',
    users: int(env.USERS, DEFAULTS.users),
    userPrefix: env.USER_PREFIX || DEFAULTS.userPrefix,
    batchSize: int(env.BATCH, DEFAULTS.batchSize),
    rate: int(env.RATE, sc.rate),
    duration: env.DURATION || DEFAULTS.duration,
    p99Ms: int(env.P99_MS, sc.p99Ms),
    region: env.REGION || DEFAULTS.region,
    runId: env.RUN_ID || '',
  }
}

/** The credentials a scenario needs, as a list of missing variable names. */
export function missingCredentials(s) {
  const kinds = SCENARIOS[s.scenario].mix.map(function (m) { return m[0] })
  const missing = []
  if (kinds.indexOf('events') >= 0 && !s.appKey) missing.push('APP_KEY')
  if ((kinds.indexOf('top') >= 0 || kinds.indexOf('around') >= 0) && !s.adminToken) missing.push('ADMIN_TOKEN')
  return missing
}

/** Duration in seconds from `30`, `30s`, `2m` or `1h`. */
export function durationSeconds(d) {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(String(d).trim())
  if (!m) throw new Error('bad duration ' + d + ' (use 30, 30s, 2m or 1h)')
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1)
}

/** A k6 constant-arrival-rate scenario running `exec` at `rate` iterations per second. */
export function k6Arrival(rate, duration, exec, tags) {
  const r = Math.max(1, Math.round(rate))
  return {
    executor: 'constant-arrival-rate',
    exec: exec,
    rate: r,
    timeUnit: '1s',
    duration: durationSeconds(duration) + 's',
    preAllocatedVUs: Math.max(4, Math.ceil(r / 5)),
    maxVUs: Math.min(2000, Math.max(20, r * 2)),
    tags: tags || {},
  }
}
