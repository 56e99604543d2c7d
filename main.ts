import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { configOrExit } from './core/config.ts'
import { createLogger } from './core/logger.ts'
import { startNats, startRedis, type LocalService } from './core/local-services.ts'
import { connectDeps } from './core/deps.ts'
import { resolveAdminToken } from './core/admin-token.ts'
import { startService } from './core/service.ts'

/**
 * The one entry point. With REDIS_URL / NATS_URL unset it runs its own redis-server and
 * nats-server on loopback (data under DATA_DIR); with CLICKHOUSE_URL unset ClickHouse is embedded
 * (chDB). ROLE picks the tiers this process runs: all (default), ingest, aggregator, api, facts.
 */
const config = configOrExit()
const log = createLogger(config.logLevel)
const local: LocalService[] = []
// One service per data directory: embedded ClickHouse and the local servers belong to it.
const pidFile = join(config.dataDir, 'service.pid')
if (existsSync(pidFile)) {
  const pid = Number(readFileSync(pidFile, 'utf8'))
  let alive = false
  try {
    alive = pid > 0 && pid !== process.pid && process.kill(pid, 0)
  } catch {
    alive = false
  }
  if (alive) {
    log.fatal({ pid, pidFile }, 'another service is running on this DATA_DIR; stop it first')
    process.exit(1)
  }
}
mkdirSync(config.dataDir, { recursive: true })
writeFileSync(pidFile, String(process.pid))
process.on('unhandledRejection', (err) => log.error({ err: String(err) }, 'unhandled rejection'))

try {
  const redisUrl = config.redis.url ?? (local.push(await startRedis(config.dataDir, config.redis.localPort, log)), local.at(-1)!.url)
  const natsUrl = config.nats.url ?? (local.push(await startNats(config.dataDir, config.nats.localPort, log)), local.at(-1)!.url)
  const deps = await connectDeps(config, { redis: redisUrl, nats: natsUrl }, log)
  const adminToken = resolveAdminToken(config.adminToken, config.dataDir, log)
  const service = await startService(config, { ...deps, adminToken })

  let stopping = false
  const shutdown = async (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down')
    const force = setTimeout(() => {
      log.error('shutdown took too long; exiting')
      for (const s of local) s.child.kill('SIGTERM') // never orphan the local redis-server / nats-server
      process.exit(1)
    }, config.shutdownTimeoutMs)
    try {
      await service.stop()
      await deps.close()
      await Promise.all(local.map((s) => s.stop()))
      rmSync(pidFile, { force: true })
    } finally {
      clearTimeout(force)
      log.info('stopped')
      process.exit(0)
    }
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'))
  process.on('SIGINT', () => void shutdown('SIGINT'))
} catch (err) {
  log.fatal({ err: String(err) }, 'start failed')
  await Promise.allSettled(local.map((s) => s.stop()))
  process.exit(1)
}
