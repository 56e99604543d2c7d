import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Redis } from 'ioredis'
import { createRedis } from '../core/clients/redis.ts'
import { cacheUsers } from '../core/keys.ts'
import { startRedis, type LocalService } from '../core/local-services.ts'
import { freePort } from './stack.ts'

/**
 * A real redis-server of its own, with the per-user step loaded and these communicators cached as
 * an import caches them (town 430623110, certified since the epoch), for aggregator tests that need
 * no whole stack.
 */
export interface StepRedis {
  server: LocalService
  redis: Redis
  stop(): Promise<void>
}

export async function startStepRedis(name: string, users: { id: string; institution_id?: string }[]): Promise<StepRedis> {
  const dir = mkdtempSync(join(tmpdir(), `kepu-${name}-`))
  const server = await startRedis(dir, await freePort())
  const redis = createRedis(server.url)
  await cacheUsers(
    redis,
    users.map((u) => ({ id: u.id, phone: '', real_name: u.id, region_code: '430623110', kind: '个人用户', institution_id: u.institution_id ?? '', certified_at: 0, ix: 1, created_at: 0, updated_at: 0 })),
  )
  return {
    server,
    redis,
    async stop() {
      await redis.quit().catch(() => {})
      await server.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
