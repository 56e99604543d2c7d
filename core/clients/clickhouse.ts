import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createClient, type ClickHouseClient } from '@clickhouse/client'

/**
 * A ClickHouse client: a real server when `url` is set, otherwise ClickHouse embedded in this process
 * through chDB, which plugs into the same client so the same SQL serves both. chDB binds one data
 * directory per process: only one tier per process may open it (the embedded default runs all tiers
 * in one process, which is exactly that).
 */
export async function createClickHouse(opts: { url?: string; dataDir: string }): Promise<ClickHouseClient> {
  const settings = { date_time_input_format: 'best_effort' as const }
  if (opts.url) {
    const u = new URL(opts.url)
    const database = u.pathname.replace(/^\//, '') || 'default'
    return createClient({
      url: `${u.protocol}//${u.host}`,
      username: decodeURIComponent(u.username) || 'default',
      password: decodeURIComponent(u.password),
      database,
      clickhouse_settings: settings,
      request_timeout: 30_000,
    })
  }
  const path = join(opts.dataDir, 'clickhouse')
  mkdirSync(path, { recursive: true })
  const { createChdbConnection } = await import('chdb/connection')
  const connection = createChdbConnection({ path })
  // createClient's `connection` hook is how chDB plugs into @clickhouse/client (see chdb's README).
  return createClient({ connection, clickhouse_settings: settings } as Parameters<typeof createClient>[0])
}
