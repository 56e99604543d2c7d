/**
 * What a batch's board writes cost in the national shape (`npx tsx bench/board-batch-cost.ts
 * [--users=100000] [--warm=100000] [--events=100000]`): the national mix over communicators spread
 * over every town by census weight, half in institutions, through the real per-user step, then the
 * batch's board writes as the aggregator makes them (500 events a batch), on a redis-server of its
 * own. The first `warm` events fill the boards, the writer's TTL memory and the gated boards'
 * thresholds as in a process that has run a while; the next `events` are measured. Prints, for the
 * board part only: this client's CPU per event (collecting the writes, building the commands,
 * ioredis) and redis-server's CPU per event (/proc), and board entries per event.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as boards from '../aggregator/boards.ts'
import { applyUserSteps, dedupeWindow, type StepInput } from '../aggregator/user-step.ts'
import { createRedis } from '../core/clients/redis.ts'
import type { StreamEvent } from '../core/events.ts'
import { cacheUsers } from '../core/keys.ts'
import { startRedis } from '../core/local-services.ts'
import { loadRegionTree } from '../core/regions.ts'
import { DEFAULT_TOP_K } from '../core/scoring.ts'
import { Ledger, NationalPlanner, nationalRoster } from './lib/national.ts'
import { freePort } from './lib/service.ts'
import { options, round } from './lib/util.ts'

const opt = options({ users: 100_000, warm: 100_000, events: 100_000, batch: 500, seed: 1, zsetListpack: 0 })
const tree = loadRegionTree()
const roster = nationalRoster(tree, opt.users, opt.seed)
const dir = mkdtempSync(join(tmpdir(), 'kepu-board-batch-'))
const server = await startRedis(dir, await freePort())
const redis = createRedis(server.url)
const pid = Number(readFileSync(join(dir, 'redis', 'redis.pid'), 'utf8'))
/** redis-server's CPU so far, µs (clock ticks of 10 ms: summed over many batches). */
const redisCpu = () => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) * 10_000
}
try {
  if (opt.zsetListpack) await redis.config('SET', 'zset-max-listpack-entries', String(opt.zsetListpack))
  const id = (i: number) => 'bb' + i
  for (let i = 0; i < opt.users; i += 5000) {
    const us = []
    for (let j = i; j < Math.min(opt.users, i + 5000); j++) {
      us.push({ id: id(j), phone: '', real_name: id(j), region_code: roster.town[j], kind: '个人用户', institution_id: roster.inst[j], certified_at: 0, ix: j + 1, created_at: 0, updated_at: 0 })
    }
    await cacheUsers(redis, us)
  }
  const planner = new NationalPlanner(opt.users, 'bb', opt.seed, new Ledger(opt.users))
  const win = dedupeWindow(72 * 3600_000, 600_000)
  const now = Date.now()
  const bk = boards.createBoardKeys(tree)
  const write = boards.createBoardWriter({ topK: DEFAULT_TOP_K })
  // A batch of the current module's kind (the flat batch where it exists, the map of groups before).
  const newBatch = (): any => ('BoardBatch' in boards ? new (boards as any).BoardBatch() : new Map())
  let seq = 0
  let client = 0
  let server_ = 0
  let entries = 0
  let counted = 0
  const total = opt.warm + opt.events
  for (let i = 0; i < total; i += opt.batch) {
    const steps: StepInput[] = []
    for (let j = i; j < Math.min(total, i + opt.batch); j++) {
      const p = planner.next()
      const ts = now - (j % 5000)
      const ev: StreamEvent = { kind: 'event', id: p.id, type: p.type, user_id: id(p.user), ts, client_ts: ts, sent_at: null, received_at: ts, app_id: 'a', content_id: p.content_id, channel: p.channel ?? '', viewer: p.viewer ?? '' }
      steps.push({ ev, seq: ++seq })
    }
    const ds = await applyUserSteps(redis, steps, win)
    const measured = i >= opt.warm
    if (i === opt.warm) await redis.config('RESETSTAT')
    const c0 = process.cpuUsage()
    const r0 = redisCpu()
    const batch = newBatch()
    ds.forEach((d, j) => boards.addBoardWrites(batch, bk, steps[j].ev.user_id, d))
    await write(redis, batch)
    if (!measured) continue
    const c = process.cpuUsage(c0)
    client += c.user + c.system
    server_ += redisCpu() - r0
    counted += ds.filter((d) => d.decision === 'counted').length
    entries += batch instanceof Map ? [...batch.values()].reduce((s: number, g: any) => s + g.members.size, 0) : batch.entries + (batch.fan?.entries ?? 0)
  }
  console.log(`${opt.events} events measured after ${opt.warm} (national mix, ${opt.users} communicators), batches of ${opt.batch}; ${counted} counted`)
  console.log(`board entries collected: ${round(entries / opt.events, 1)} per event (before the gate)`)
  console.log(`this client:  ${round(client / opt.events, 1)} µs of CPU per event for the board writes (collecting, commands, ioredis)`)
  console.log(`redis-server: ${round(server_ / opt.events, 1)} µs of CPU per event for the board writes`)
  console.log(`redis used_memory: ${((await redis.info('memory')).match(/used_memory:(\d+)/)?.[1] ?? 0) as string} B`)
  // Where Redis' time goes (commandstats; a script's calls are counted inside it and on their own).
  const stats = (await redis.info('commandstats')).split('\n').filter((l) => l.startsWith('cmdstat_'))
  for (const l of stats) {
    const m = /cmdstat_(\w+):calls=(\d+),usec=(\d+)/.exec(l)
    if (m && Number(m[3]) / opt.events >= 1) console.log(`  ${m[1].padEnd(16)} ${round(Number(m[2]) / opt.events, 2)} calls, ${round(Number(m[3]) / opt.events, 1)} µs per event`)
  }
} finally {
  redis.disconnect()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
}
