import { Redis } from 'ioredis'

/** One Redis client per process, passed to every tier that needs it. */
export function createRedis(url: string): Redis {
  return new Redis(url, {
    enableAutoPipelining: true,
    maxRetriesPerRequest: 2,
    connectTimeout: 5000,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  })
}
