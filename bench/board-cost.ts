/**
 * What one board entry costs Redis written by a plain ZADD and by a ZADD inside a script
 * (`npx tsx bench/board-cost.ts`), on a redis-server of its own: a 100,000-member board (a county
 * day board of the county workload) taking batches of 500 and 30 members, and 5,000 new one-member
 * boards (the national workload's towns). Prints Redis µs per entry from INFO commandstats.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRedis, sendFlat, type Sink } from '../core/clients/redis.ts'
import { startRedis } from '../core/local-services.ts'
import { freePort } from './lib/service.ts'

const SCRIPT = `local a = 1
while a <= #ARGV do
  local m = math.min((#ARGV - a + 1) / 2, 1000)
  redis.call('ZADD', KEYS[1], 'LT', unpack(ARGV, a, a + 2 * m - 1))
  a = a + 2 * m
end
return 1`
const dir = mkdtempSync(join(tmpdir(), 'kepu-board-cost-'))
const server = await startRedis(dir, await freePort())
const r = createRedis(server.url)
try {
  const N = 100_000
  for (let i = 0; i < N; i += 5000) {
    const a: (string | number)[] = []
    for (let j = i; j < i + 5000; j++) a.push(-(1e6 + j), 'b' + j)
    await sendFlat(r, 'zadd', ['big', ...a])
  }
  const sha = (await r.script('LOAD', SCRIPT)) as string
  const usecOf = async (cmd: string) => Number(/usec=(\d+)/.exec((await r.info('commandstats')).split('\n').find((l) => l.startsWith(`cmdstat_${cmd}:`)) ?? '')?.[1] ?? NaN)
  let s = 2e6
  const write = (via: 'direct' | 'script', out: Sink, key: string, a: (string | number)[]) => (via === 'direct' ? sendFlat(out, 'zadd', [key, 'LT', ...a]) : sendFlat(out, 'evalsha', [sha, 1, key, ...a]))
  for (const members of [500, 30]) {
    for (const via of ['direct', 'script'] as const) {
      await r.config('RESETSTAT')
      for (let k = 0; k < 200; k++) {
        const a: (string | number)[] = []
        for (let j = 0; j < members; j++) a.push(-s++, 'b' + Math.floor(Math.random() * N))
        await write(via, r, 'big', a)
      }
      console.log(`${via.padEnd(6)} ${members} members a write into ${N.toLocaleString('en')}: ${((await usecOf(via === 'direct' ? 'zadd' : 'evalsha')) / (members * 200)).toFixed(2)} µs per entry`)
    }
  }
  for (const via of ['direct', 'script'] as const) {
    await r.config('RESETSTAT')
    const p = r.pipeline()
    for (let i = 0; i < 5000; i++) void write(via, p as unknown as Sink, `small:${via}:${i}`, [-5, 'b1'])
    await p.exec()
    console.log(`${via.padEnd(6)} one member into a new board: ${((await usecOf(via === 'direct' ? 'zadd' : 'evalsha')) / 5000).toFixed(2)} µs per board`)
  }
} finally {
  r.disconnect()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
}
