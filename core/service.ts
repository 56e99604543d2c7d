import type { Server } from 'node:http'
import { serve } from '@hono/node-server'
import { createAggregator, type Aggregator } from '../aggregator/index.ts'
import { createApp } from '../api/app.ts'
import type { Config } from './config.ts'
import type { Deps } from './deps.ts'

export interface Service {
  port: number
  aggregator: Aggregator | null
  app: ReturnType<typeof createApp>
  /** Graceful stop: stop taking requests, drain, flush facts, ack. Does not close deps. */
  stop(): Promise<void>
}

export async function startService(config: Config, deps: Deps & { adminToken: string }): Promise<Service> {
  const aggregator = config.roles.has('aggregator') ? createAggregator(config, deps) : null
  const app = createApp(config, { ...deps, aggregator: () => aggregator })
  await aggregator?.start()
  const server = await new Promise<Server>((res) => {
    const s = serve({ fetch: app.fetch, port: config.http.port, hostname: config.http.host }, () => res(s as Server))
  })
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : config.http.port
  deps.log.info({ port, roles: [...config.roles] }, 'listening')
  return {
    port,
    aggregator,
    app,
    async stop() {
      const closed = new Promise<void>((res) => server.close(() => res()))
      server.closeIdleConnections()
      const t = setTimeout(() => server.closeAllConnections(), 3000)
      await closed
      clearTimeout(t)
      await aggregator?.stop()
    },
  }
}
