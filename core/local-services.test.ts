import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Redis } from 'ioredis'
import { createRedis } from './clients/redis.ts'
import { startRedis, type LocalService } from './local-services.ts'
import { freePort } from '../test/stack.ts'

// The memory figures in the README rest on these encodings: a county board of the national shape
// (hundreds of members) and a heavy sharer's dedupe generation stay compact listpacks.
describe('the local Redis', () => {
  let dir: string
  let server: LocalService
  let redis: Redis
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kepu-local-redis-'))
    server = await startRedis(dir, await freePort())
    redis = createRedis(server.url)
  })
  afterAll(async () => {
    await redis?.quit().catch(() => {})
    await server?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('keeps a board of 1,000 members as a listpack, and one past 1,024 as a skiplist', async () => {
    const args = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => [-(from + i), `b${String(from + i).padStart(7, '0')}`]).flat()
    await redis.zadd('g:test', ...args(0, 1000))
    expect(await redis.object('ENCODING', 'g:test')).toBe('listpack')
    await redis.zadd('g:test', ...args(1000, 1100))
    expect(await redis.object('ENCODING', 'g:test')).toBe('skiplist')
  })

  it('keeps a dedupe hash of 500 fields as a listpack', async () => {
    const fields = Array.from({ length: 500 }, (_, i) => [`fp${i}xxxx`, `s${i}:c`]).flat()
    await redis.hset('d:test', ...fields)
    expect(await redis.object('ENCODING', 'd:test')).toBe('listpack')
  })
})
