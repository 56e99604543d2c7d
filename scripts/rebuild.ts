/**
 * `npm run rebuild`: rebuild Redis's derived state from the ClickHouse facts while the service is
 * stopped (embedded ClickHouse belongs to one process at a time). On a running service use
 * `POST /v1/admin/rebuild` instead: it pauses counting, rebuilds and resumes.
 */
import { parseConfig } from '../core/config.ts'
import { connectDeps } from '../core/deps.ts'
import { startNats, startRedis, type LocalService } from '../core/local-services.ts'
import { createLogger } from '../core/logger.ts'
import { rebuildRedis } from '../aggregator/rebuild.ts'
import { dedupeWindow } from '../aggregator/user-step.ts'

const config = parseConfig()
const log = createLogger(config.logLevel === 'silent' ? 'silent' : 'info', 'rebuild')
const local: LocalService[] = []
try {
  const redisUrl = config.redis.url ?? (local.push(await startRedis(config.dataDir, config.redis.localPort, log)), local.at(-1)!.url)
  const natsUrl = config.nats.url ?? (local.push(await startNats(config.dataDir, config.nats.localPort, log)), local.at(-1)!.url)
  const deps = await connectDeps(config, { redis: redisUrl, nats: natsUrl }, log)
  await rebuildRedis({ ...deps, win: dedupeWindow(config.events.maxAgeMs, config.events.maxFutureMs), topK: config.boards.topK })
  await deps.close()
} catch (err) {
  log.fatal({ err: String(err) }, 'rebuild failed (is the service still running on this DATA_DIR?)')
  process.exitCode = 1
} finally {
  await Promise.allSettled(local.map((s) => s.stop()))
}
