import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Redis } from 'ioredis'
import { startStepRedis, type StepRedis } from '../test/redis.ts'

// The memory figures in the README rest on these encodings: a county board of the national shape
// (hundreds of members) and a heavy sharer's dedupe generation stay compact listpacks.
describe('the local Redis', () => {
  let r: StepRedis
  let redis: Redis
  beforeAll(async () => {
    r = await startStepRedis('local-redis', [])
    redis = r.redis
  })
  afterAll(() => r?.stop())

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
