#!/usr/bin/env node
// Prepares a service for the load tests: registers an app (POST /v1/apps) and imports the
// communicators the scenarios use (POST /v1/users:import), all in town 430623101 (华容县).
// Progress goes to stderr; stdout is only `APP_KEY=…`, so `export $(node loadtest/seed.mjs)` works.
import { parseArgs } from 'node:util'
import { DEFAULTS } from './scenarios.js'

const HELP = `Usage: ADMIN_TOKEN=… node loadtest/seed.mjs [--users N] [--prefix P] [--base-url URL]

  --users <n>       communicators to import: <prefix>0 … <prefix>N-1 (env USERS; default ${DEFAULTS.users})
  --prefix <p>      user id prefix (env USER_PREFIX; default ${DEFAULTS.userPrefix})
  --base-url <url>  target (env BASE_URL; default ${DEFAULTS.baseUrl})
  --allow-remote    allow a target that is not on loopback
  --app-name <n>    name of the app to register (default "loadtest")
Phones are 13 followed by the index padded to 9 digits; imports go in chunks of 1000.`

const { values: args } = parseArgs({
  options: {
    users: { type: 'string' },
    prefix: { type: 'string' },
    'base-url': { type: 'string' },
    'allow-remote': { type: 'boolean', default: false },
    'app-name': { type: 'string', default: 'loadtest' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (args.help) {
  console.log(HELP)
  process.exit(0)
}
const die = (msg) => {
  console.error(msg)
  process.exit(2)
}

const base = (args['base-url'] ?? process.env.BASE_URL ?? DEFAULTS.baseUrl).replace(/\/+$/, '')
const users = Number.parseInt(args.users ?? process.env.USERS ?? String(DEFAULTS.users), 10)
const prefix = args.prefix ?? process.env.USER_PREFIX ?? DEFAULTS.userPrefix
const admin = process.env.ADMIN_TOKEN
const TOWN = '430623101'
if (!admin) die('set ADMIN_TOKEN')
if (!(users >= 1 && users <= 1e9)) die('--users must be 1…1000000000')
if (!/^[A-Za-z0-9_-]{1,54}$/.test(prefix)) die('--prefix must be of [A-Za-z0-9_-]')
const host = new URL(base).hostname.replace(/^\[|\]$/g, '')
if (!(host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)) && !args['allow-remote']) {
  die(`refusing non-loopback target ${host}; pass --allow-remote if you mean it`)
}

async function post(path, body) {
  const r = await fetch(base + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(120_000),
  })
  const text = await r.text()
  if (!r.ok) die(`POST ${path} → ${r.status}: ${text.slice(0, 500)}`)
  return JSON.parse(text)
}

const app = await post('/v1/apps', { name: args['app-name'] })
console.error(`app ${app.id} registered`)

let created = 0
let updated = 0
let errors = 0
for (let from = 0; from < users; from += 1000) {
  const rows = []
  for (let i = from; i < Math.min(from + 1000, users); i++) {
    rows.push({ id: `${prefix}${i}`, phone: `13${String(i).padStart(9, '0')}`, real_name: `Load test ${i}`, region_code: TOWN })
  }
  const r = await post('/v1/users:import', { users: rows })
  created += r.created
  updated += r.updated
  errors += r.errors.length
  if (r.errors.length) console.error(`rows ${from}…: ${r.errors.length} errors, first: ${JSON.stringify(r.errors[0])}`)
  console.error(`imported ${Math.min(from + 1000, users)}/${users}`)
}
console.error(`communicators: ${created} created, ${updated} updated, ${errors} errors`)
console.log(`APP_KEY=${app.key}`)
process.exit(errors ? 1 : 0)
