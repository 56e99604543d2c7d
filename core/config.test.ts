import { describe, expect, it } from 'vitest'
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
})
