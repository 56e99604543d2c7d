import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createClient, type ClickHouseClient } from '@clickhouse/client'
import type { ChdbLike } from '../facts-server.ts'

const SETTINGS = { date_time_input_format: 'best_effort' as const }

/**
 * A ClickHouse client: a real server when `url` is set, otherwise ClickHouse embedded in this process
 * through chDB, which plugs into the same client so the same SQL serves both. chDB binds one data
 * directory per process: only one process may open it: the embedded default runs all tiers in one
 * process, and a distributed layout serves it from one process to the others (core/facts-server.ts).
 */
export async function createClickHouse(opts: { url?: string; dataDir: string }): Promise<ClickHouseClient> {
  if (opts.url) {
    const u = new URL(opts.url)
    const database = u.pathname.replace(/^\//, '') || 'default'
    return createClient({
      url: `${u.protocol}//${u.host}`,
      username: decodeURIComponent(u.username) || 'default',
      password: decodeURIComponent(u.password),
      database,
      clickhouse_settings: SETTINGS,
      request_timeout: 30_000,
    })
  }
  return (await createEmbeddedClickHouse(opts.dataDir)).client
}

/**
 * ClickHouse embedded through chDB in DATA_DIR/clickhouse: the client, and chDB's connection itself
 * (what core/facts-server.ts serves to other processes).
 */
export async function createEmbeddedClickHouse(dataDir: string): Promise<{ client: ClickHouseClient; connection: ChdbLike }> {
  const path = join(dataDir, 'clickhouse')
  mkdirSync(path, { recursive: true })
  const { createChdbConnection } = await import('chdb/connection')
  const connection = createChdbConnection({ path })
  // createClient's `connection` hook is how chDB plugs into @clickhouse/client (see chdb's README).
  const client = createClient({ connection, clickhouse_settings: SETTINGS } as Parameters<typeof createClient>[0])
  return { client, connection: connection as unknown as ChdbLike }
}
