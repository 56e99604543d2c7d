import { describe, expect, it } from 'vitest'
import { parseRedisUrl } from './clients/redis.ts'
import { ConfigError, parseConfig } from './config.ts'

describe('configuration', () => {
  it('has working defaults for one box', () => {
    const c = parseConfig({})
    expect(c.roles).toEqual(new Set(['ingest', 'aggregator', 'api']))
    expect(c.aggregator).toEqual({ batchSize: 500, inFlight: 4 })
    expect(c.facts).toEqual({ batchSize: 5000, flushMs: 250 })
    expect(c.events.maxAgeMs).toBe(72 * 3600_000)
  })

  it('reads the aggregator batching from the environment', () => {
    expect(parseConfig({ AGGREGATOR_BATCH_SIZE: '250', AGGREGATOR_BATCHES_IN_FLIGHT: '8' }).aggregator).toEqual({ batchSize: 250, inFlight: 8 })
  })

  it('refuses a bad value, naming the variable', () => {
    for (const [name, value] of [
      ['AGGREGATOR_BATCHES_IN_FLIGHT', '0'],
      ['AGGREGATOR_BATCH_SIZE', '100000'],
      ['PORT', 'eighty'],
      ['ROLE', 'ingest,counter'],
    ]) {
      expect(() => parseConfig({ [name]: value }), name).toThrow(ConfigError)
      expect(() => parseConfig({ [name]: value }), name).toThrow(name)
    }
    expect(() => parseConfig({ SMS_SENDER: 'http' })).toThrow('SMS_GATEWAY_URL')
  })

  it('takes a Redis Cluster as several nodes, and waits for a replica there by default', () => {
    const one = parseConfig({ REDIS_URL: 'redis://127.0.0.1:6379' })
    expect(one.redis).toMatchObject({ url: 'redis://127.0.0.1:6379', waitReplicas: 0, waitMs: 2000 })
    const many = parseConfig({ REDIS_URL: 'redis://:s3cret@r1:7000,r2:7001,[::1]:7002', NATS_URL: 'nats://n1:4222,nats://n2:4222', NATS_REPLICAS: '3' })
    expect(many.redis.waitReplicas).toBe(1)
    expect(many.nats.replicas).toBe(3)
    expect(parseRedisUrl('redis://:s3cret@r1:7000,r2:7001,[::1]:7002')).toEqual({
      cluster: true,
      nodes: [{ host: 'r1', port: 7000 }, { host: 'r2', port: 7001 }, { host: '::1', port: 7002 }],
      username: undefined,
      password: 's3cret',
      tls: false,
    })
    expect(parseConfig({ REDIS_URL: 'redis://r1:7000,r2:7001', REDIS_WAIT_REPLICAS: '0' }).redis.waitReplicas).toBe(0)
  })

  it('refuses a Redis URL it cannot use, and the facts role with a ClickHouse server, naming the variable', () => {
    for (const bad of ['http://r1:6379', 'redis://r1:7000,r2', 'redis://r1:7000,r2:99999', 'redis://r1:7000,r2:7001/3']) {
      expect(() => parseConfig({ REDIS_URL: bad }), bad).toThrow('REDIS_URL')
    }
    expect(() => parseConfig({ ROLE: 'api,facts', CLICKHOUSE_URL: 'http://ch:8123/db' })).toThrow('facts')
    expect(parseConfig({ ROLE: 'api,facts' }).roles).toEqual(new Set(['api', 'facts']))
  })
})
