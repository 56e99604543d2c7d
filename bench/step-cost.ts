/**
 * What the per-user step alone costs (`npx tsx bench/step-cost.ts [--events=50000] [--users=10000]`):
 * share-backs of imported communicators through applyUserSteps, as the aggregator sends a batch
 * (500 events a batch, STEPS_PER_CALL events a script call), on a redis-server of its own. Prints
 * Redis CPU per event (INFO commandstats: the script with the calls it makes) and this client's CPU
 * per event (building the calls, ioredis, reading the replies). No board writes, no facts.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { applyUserSteps, dedupeWindow, STEPS_PER_CALL, type StepInput } from '../aggregator/user-step.ts'
import { createRedis } from '../core/clients/redis.ts'
import type { StreamEvent } from '../core/events.ts'
import { cacheUsers } from '../core/keys.ts'
import { startRedis } from '../core/local-services.ts'
import { freePort } from './lib/service.ts'
import { options, round } from './lib/util.ts'

const opt = options({ events: 50_000, users: 10_000, batch: 500 })
const dir = mkdtempSync(join(tmpdir(), 'kepu-step-cost-'))
const server = await startRedis(dir, await freePort())
const redis = createRedis(server.url)
try {
  const ids = Array.from({ length: opt.users }, (_, i) => 'sc' + i)
  for (let i = 0; i < ids.length; i += 5000) {
    await cacheUsers(redis, ids.slice(i, i + 5000).map((id, j) => ({ id, phone: '', real_name: id, region_code: '430623110', kind: '个人用户', institution_id: 'inst-1', certified_at: 0, ix: i + j + 1, created_at: 0, updated_at: 0 })))
  }
  const win = dedupeWindow(72 * 3600_000, 600_000)
  const now = Date.now()
  const event = (j: number): StreamEvent => ({
    kind: 'event', id: 'e' + j, type: 'share_back', user_id: ids[j % opt.users], ts: now - (j % 5000), client_ts: now, sent_at: null, received_at: now, app_id: 'a', content_id: 'c1', channel: 'wechat', viewer: '',
  })
  await redis.config('RESETSTAT')
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < opt.events; i += opt.batch) {
    const steps: StepInput[] = []
    for (let j = i; j < Math.min(opt.events, i + opt.batch); j++) steps.push({ ev: event(j), seq: j + 1 })
    await applyUserSteps(redis, steps, win)
  }
  const wall = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const stats = (await redis.info('commandstats')).split('\n').filter((l) => /^cmdstat_(evalsha|eval):/.test(l))
  const usec = stats.reduce((s, l) => s + Number(/usec=(\d+)/.exec(l)?.[1] ?? 0), 0)
  const calls = stats.reduce((s, l) => s + Number(/calls=(\d+)/.exec(l)?.[1] ?? 0), 0)
  console.log(`${opt.events} share-backs of ${opt.users} communicators, batches of ${opt.batch}, up to ${STEPS_PER_CALL} events a script call (${calls} calls)`)
  console.log(`redis-server: ${round(usec / opt.events, 1)} µs per event (the script and its calls)`)
  console.log(`this client:  ${round((cpu.user + cpu.system) / opt.events, 1)} µs of CPU per event (building calls, ioredis, replies; the events' own objects included)`)
  console.log(`wall: ${round(opt.events / (wall / 1000), 0)} events/s`)
} finally {
  redis.disconnect()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
}
