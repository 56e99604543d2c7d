#!/usr/bin/env node
// Installs what is missing before `npm start` / `npm test`: npm packages when node_modules is absent
// or older than package-lock.json, and (unless REDIS_URL / NATS_URL point elsewhere) redis-server
// and nats-server from Debian's packages. Plain Node, no dependencies: it runs before they exist.
import { spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'

const run = (cmd, args, env = process.env) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env })
  if (r.status !== 0) {
    console.error(`ensure: '${cmd} ${args.join(' ')}' failed (exit ${r.status ?? r.signal})`)
    process.exit(1)
  }
}
const has = (bin) => ['/usr/bin', '/usr/sbin', '/usr/local/bin', '/bin', '/sbin'].some((d) => existsSync(`${d}/${bin}`))

const lock = existsSync('package-lock.json') ? statSync('package-lock.json').mtimeMs : 0
const marker = 'node_modules/.package-lock.json'
if (!existsSync(marker) || statSync(marker).mtimeMs < lock) {
  console.error('ensure: installing npm packages')
  // Not `npm ci`: chdb lists optional per-platform packages that the registry does not serve for
  // every platform, so the lock file cannot hold them all and `npm ci` refuses; install tolerates it.
  run('npm', ['install', '--no-audit', '--no-fund', '--no-save'])
}

const wanted = []
if (!process.env.REDIS_URL && !has('redis-server')) wanted.push('redis-server')
if (!process.env.NATS_URL && !has('nats-server')) wanted.push('nats-server')
if (process.argv.includes('--browser') && !has('chromium')) wanted.push('chromium')
if (wanted.length) {
  console.error(`ensure: installing Debian packages: ${wanted.join(' ')}`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const sudo = process.getuid?.() === 0 ? [] : ['sudo']
  const apt = (args) => (sudo.length ? run('sudo', ['apt-get', ...args], env) : run('apt-get', args, env))
  apt(['update'])
  apt(['install', '-y', '--no-install-recommends', ...wanted])
}
