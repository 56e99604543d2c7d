import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startStepRedis, type StepRedis } from '../test/redis.ts'
import { createInfoReader, keys } from './keys.ts'

describe('createInfoReader (real Redis)', () => {
  let r: StepRedis
  beforeAll(async () => {
    r = await startStepRedis('infos', [{ id: 'a1' }, { id: 'a2', institution_id: 'inst-1' }, { id: 'a3' }])
  })
  afterAll(() => r.stop())

  it('reads name, region and institution; unknown ids are absent', async () => {
    const read = createInfoReader({ redis: r.redis })
    const got = await read(['a1', 'a2', 'nobody'])
    expect(got.get('a1')).toEqual({ name: 'a1', region_code: '430623110', institution_id: null })
    expect(got.get('a2')?.institution_id).toBe('inst-1')
    expect(got.has('nobody')).toBe(false)
  })

  it('reuses an info only within its ttl, then shows the change', async () => {
    let now = 1_000_000
    const read = createInfoReader({ redis: r.redis, ttlMs: 1000, now: () => now })
    expect((await read(['a3'])).get('a3')?.name).toBe('a3')
    await r.redis.hset(keys.user('a3'), 'n', '改名')
    now += 999
    expect((await read(['a3'])).get('a3')?.name).toBe('a3')
    now += 1
    expect((await read(['a3'])).get('a3')?.name).toBe('改名')
  })

  it('keeps at most max infos, dropping the oldest', async () => {
    let now = 0
    const read = createInfoReader({ redis: r.redis, ttlMs: 60_000, max: 2, now: () => now })
    await read(['a1', 'a2', 'a3']) // a1 dropped
    await r.redis.hset(keys.user('a1'), 'n', 'new-a1')
    await r.redis.hset(keys.user('a2'), 'n', 'new-a2')
    now = 1
    const got = await read(['a1', 'a2'])
    expect(got.get('a1')?.name).toBe('new-a1') // read again: it had been dropped
    expect(got.get('a2')?.name).toBe('a2') // still cached
  })
})
