import Redis from 'ioredis'
import { readFileSync } from 'node:fs'
const r = new Redis({ port: 6399 })
const pid = Number((await r.info('server')).match(/process_id:(\d+)/)[1])
const cpu = () => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(' '); return (Number(f[13]) + Number(f[14])) * 10 }
await r.flushall()
const K = 60, N = 100000
// fill
for (let k = 0; k < K; k++) { const args = []; for (let i = 0; i < N; i++) args.push(-Math.random() * 1e12, 'u' + i); for (let i = 0; i < args.length; i += 20000) await r.zadd('b' + k, ...args.slice(i, i + 20000)) }
console.log('filled', (await r.info('memory')).match(/used_memory_human:(\S+)/)[1])
async function run(name, events, fn) {
  const c0 = cpu(), t0 = Date.now()
  await fn()
  const c1 = cpu(), t1 = Date.now()
  console.log(name, 'redis µs/event', ((c1 - c0) * 1000 / events).toFixed(1), 'wall ms', t1 - t0)
}
const E = 5000
await run('single zadd pipelined x60', E, async () => {
  for (let e = 0; e < E; e += 100) { const p = r.pipeline(); for (let j = 0; j < 100; j++) { const m = 'u' + Math.floor(Math.random() * N); for (let k = 0; k < K; k++) p.zadd('b' + k, 'LT', -Math.random() * 1e12, m) } await p.exec() }
})
await run('variadic zadd 100 members per key', E, async () => {
  for (let e = 0; e < E; e += 100) { const p = r.pipeline(); for (let k = 0; k < K; k++) { const a = []; for (let j = 0; j < 100; j++) a.push(-Math.random() * 1e12, 'u' + Math.floor(Math.random() * N)); p.zadd('b' + k, 'LT', ...a) } await p.exec() }
})
r.defineCommand('wb', { lua: `for i, k in ipairs(KEYS) do redis.call('ZADD', k, 'LT', ARGV[i + 1], ARGV[1]) end return 1` })
await run('lua 60 zadd per event', E, async () => {
  for (let e = 0; e < E; e += 100) { const p = r.pipeline(); for (let j = 0; j < 100; j++) { const m = 'u' + Math.floor(Math.random() * N); const ks = []; const ss = []; for (let k = 0; k < K; k++) { ks.push('b' + k); ss.push(-Math.random() * 1e12) } p.wb(K, ...ks, m, ...ss) } await p.exec() }
})
await r.config('set', 'appendonly', 'no')
await run('variadic, no aof', E, async () => {
  for (let e = 0; e < E; e += 100) { const p = r.pipeline(); for (let k = 0; k < K; k++) { const a = []; for (let j = 0; j < 100; j++) a.push(-Math.random() * 1e12, 'u' + Math.floor(Math.random() * N)); p.zadd('b' + k, 'LT', ...a) } await p.exec() }
})
await run('lua 60, no aof', E, async () => {
  for (let e = 0; e < E; e += 100) { const p = r.pipeline(); for (let j = 0; j < 100; j++) { const m = 'u' + Math.floor(Math.random() * N); const ks = []; const ss = []; for (let k = 0; k < K; k++) { ks.push('b' + k); ss.push(-Math.random() * 1e12) } p.wb(K, ...ks, m, ...ss) } await p.exec() }
})
r.disconnect()
