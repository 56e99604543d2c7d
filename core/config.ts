import { z } from 'zod'
import { parseRedisUrl } from './clients/redis.ts'

/** Environment variables, validated once at start. A bad value stops the process naming the variable. */
const envSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default('0.0.0.0'),
  ROLE: z
    .string()
    .default('all')
    .transform((s) => s.split(',').map((r) => r.trim()).filter(Boolean))
    .pipe(z.array(z.enum(['all', 'ingest', 'aggregator', 'api', 'facts'])).min(1)),
  DATA_DIR: z.string().default('./data'),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  REDIS_URL: z
    .string()
    .superRefine((s, ctx) => {
      try {
        parseRedisUrl(s)
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message })
      }
    })
    .optional(),
  NATS_URL: z.string().optional(),
  CLICKHOUSE_URL: z.string().url().optional(),
  // ROLE=facts: this process holds the embedded ClickHouse and serves it to the others of a
  // distributed layout over ClickHouse's HTTP interface (core/facts-server.ts), here.
  FACTS_HTTP_HOST: z.string().default('127.0.0.1'),
  FACTS_HTTP_PORT: z.coerce.number().int().min(0).max(65535).default(18123),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // A batch's messages are acked only once its Redis writes are on this many replicas of every master
  // it wrote to (WAIT): a failover then loses nothing acked. Unset: 1 on a Redis Cluster, 0 on one server.
  REDIS_WAIT_REPLICAS: z.coerce.number().int().min(0).max(5).optional(),
  REDIS_WAIT_MS: z.coerce.number().int().min(10).max(60_000).default(2000),
  LOCAL_REDIS_PORT: z.coerce.number().int().min(1).max(65535).default(16379),
  LOCAL_NATS_PORT: z.coerce.number().int().min(1).max(65535).default(14222),
  EVENT_MAX_AGE_HOURS: z.coerce.number().positive().default(72),
  EVENT_MAX_FUTURE_MINUTES: z.coerce.number().nonnegative().default(10),
  NATS_STREAM: z.string().regex(/^[A-Za-z0-9_-]+$/).default('EVENTS'),
  // Copies JetStream keeps of the event stream and of every KV bucket: 3 on a NATS cluster of 3 (a
  // node may die and nothing is lost), 1 on one server.
  NATS_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  NATS_DUPLICATE_WINDOW_SECONDS: z.coerce.number().int().positive().default(120),
  INGEST_MAX_BACKLOG: z.coerce.number().int().nonnegative().default(100_000),
  AGGREGATOR_BATCH_SIZE: z.coerce.number().int().min(1).max(5000).default(500),
  AGGREGATOR_BATCHES_IN_FLIGHT: z.coerce.number().int().min(1).max(16).default(4),
  BOARD_TOP_K: z.coerce.number().int().min(1).max(10_000).default(1000),
  // At most the API's freshness promise (a second): a cached page is never older than this.
  BOARD_PAGE_CACHE_MS: z.coerce.number().int().min(0).max(1000).default(100),
  FACTS_BATCH_SIZE: z.coerce.number().int().positive().default(5000),
  FACTS_FLUSH_MS: z.coerce.number().int().positive().default(250),
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().positive().default(9000),
  SMS_SENDER: z.enum(['log', 'memory', 'http']).default('log'),
  SMS_GATEWAY_URL: z.string().url().optional(),
})

export type Role = 'ingest' | 'aggregator' | 'api' | 'facts'

export interface Config {
  http: { port: number; host: string }
  roles: Set<Role>
  dataDir: string
  adminToken?: string
  logLevel: string
  /** waitReplicas / waitMs: see REDIS_WAIT_REPLICAS. */
  redis: { url?: string; localPort: number; waitReplicas: number; waitMs: number }
  nats: { url?: string; localPort: number; stream: string; duplicateWindowMs: number; replicas: number }
  /** `serve`: where the facts role serves the embedded ClickHouse. */
  clickhouse: { url?: string; serve: { host: string; port: number } }
  events: { maxAgeMs: number; maxFutureMs: number; maxBatch: number; maxBytes: number; maxBacklog: number }
  /** Messages per aggregator batch, and batches processed at once (they overlap Redis and this process' work). */
  aggregator: { batchSize: number; inFlight: number }
  facts: { batchSize: number; flushMs: number }
  /**
   * Entries a gated (city, province, national) board keeps exact: its top K (docs/boards.md); and how
   * long a rendered board page is reused by the API (0: never), counted from its Redis read.
   */
  boards: { topK: number; pageCacheMs: number }
  shutdownTimeoutMs: number
  /** SMS codes: log (development: masked phone, code at debug level), memory (tests), http (a gateway). */
  sms: { sender: 'log' | 'memory' | 'http'; gatewayUrl?: string }
}

export class ConfigError extends Error {}

export function parseConfig(env: Record<string, string | undefined> = process.env): Config {
  const picked = Object.fromEntries(Object.keys(envSchema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]))
  const r = envSchema.safeParse(picked)
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')
    throw new ConfigError(`invalid configuration: ${msg}`)
  }
  const e = r.data
  if (e.SMS_SENDER === 'http' && !e.SMS_GATEWAY_URL) throw new ConfigError('invalid configuration: SMS_GATEWAY_URL: required when SMS_SENDER=http')
  const roles = new Set<Role>(e.ROLE.includes('all') ? ['ingest', 'aggregator', 'api', ...(e.ROLE.includes('facts') ? (['facts'] as const) : [])] : (e.ROLE as Role[]))
  if (roles.has('facts') && e.CLICKHOUSE_URL) throw new ConfigError('invalid configuration: ROLE: facts serves the embedded ClickHouse; unset CLICKHOUSE_URL for it')
  return {
    http: { port: e.PORT, host: e.HOST },
    roles,
    dataDir: e.DATA_DIR,
    adminToken: e.ADMIN_TOKEN,
    logLevel: e.LOG_LEVEL,
    redis: {
      url: e.REDIS_URL,
      localPort: e.LOCAL_REDIS_PORT,
      waitReplicas: e.REDIS_WAIT_REPLICAS ?? (e.REDIS_URL && parseRedisUrl(e.REDIS_URL).cluster ? 1 : 0),
      waitMs: e.REDIS_WAIT_MS,
    },
    nats: { url: e.NATS_URL, localPort: e.LOCAL_NATS_PORT, stream: e.NATS_STREAM, duplicateWindowMs: e.NATS_DUPLICATE_WINDOW_SECONDS * 1000, replicas: e.NATS_REPLICAS },
    clickhouse: { url: e.CLICKHOUSE_URL, serve: { host: e.FACTS_HTTP_HOST, port: e.FACTS_HTTP_PORT } },
    events: {
      maxAgeMs: e.EVENT_MAX_AGE_HOURS * 3600_000,
      maxFutureMs: e.EVENT_MAX_FUTURE_MINUTES * 60_000,
      maxBatch: 1000,
      maxBytes: 1024 * 1024,
      maxBacklog: e.INGEST_MAX_BACKLOG,
    },
    aggregator: { batchSize: e.AGGREGATOR_BATCH_SIZE, inFlight: e.AGGREGATOR_BATCHES_IN_FLIGHT },
    facts: { batchSize: e.FACTS_BATCH_SIZE, flushMs: e.FACTS_FLUSH_MS },
    boards: { topK: e.BOARD_TOP_K, pageCacheMs: e.BOARD_PAGE_CACHE_MS },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    sms: { sender: e.SMS_SENDER, gatewayUrl: e.SMS_GATEWAY_URL },
  }
}

/** The configuration of an entry point: a bad value prints its message and exits 1 (no stack trace). */
export function configOrExit(env: Record<string, string | undefined> = process.env): Config {
  try {
    return parseConfig(env)
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message)
      process.exit(1)
    }
    throw e
  }
}
