import type { Server } from 'node:http'
import { serve } from '@hono/node-server'
import { createAggregator, type Aggregator } from '../aggregator/index.ts'
import { createApp } from '../api/app.ts'
import type { Config } from './config.ts'
import type { Deps } from './deps.ts'
import { FACTS_USER, serveFacts } from './facts-server.ts'

export interface Service {
  port: number
  aggregator: Aggregator | null
  app: ReturnType<typeof createApp>
  /** Graceful stop: stop taking requests, drain, flush facts, ack. Does not close deps. */
  stop(): Promise<void>
}

export async function startService(config: Config, deps: Deps & { adminToken: string }): Promise<Service> {
  // The store first: other processes of the layout wait for it before they start.
  const facts = config.roles.has('facts') ? await serveFacts(deps.chdb!, { ...config.clickhouse.serve, user: FACTS_USER, password: deps.adminToken, log: deps.log }) : null
  const aggregator = config.roles.has('aggregator') ? createAggregator(config, deps) : null
  const app = createApp(config, { ...deps, aggregator: () => aggregator })
  await aggregator?.start()
  const requests = trackRequests(app.fetch)
  const server = await new Promise<Server>((res) => {
    const s = serve({ fetch: requests.fetch, port: config.http.port, hostname: config.http.host }, () => res(s as Server))
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
      // A client that went away leaves its request running here with no connection to wait for:
      // finish those before the aggregator and the clients close under them.
      await requests.idle()
      await aggregator?.stop()
      // Last: the other processes' aggregators flush their facts here while they stop.
      await facts?.close()
    },
  }
}

/** Counts requests being handled; idle() resolves once none is (at once when none is). */
export function trackRequests<A extends unknown[]>(fetch: (req: Request, ...rest: A) => Response | Promise<Response>) {
  let active = 0
  const waiters: (() => void)[] = []
  return {
    async fetch(req: Request, ...rest: A): Promise<Response> {
      active++
      try {
        return await fetch(req, ...rest)
      } finally {
        if (--active === 0) for (const w of waiters.splice(0)) w()
      }
    },
    idle(): Promise<void> {
      return active === 0 ? Promise.resolve() : new Promise<void>((res) => waiters.push(res))
    },
    get active() {
      return active
    },
  }
}
