import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import { connect } from 'node:net'
import { redisNodes } from '../../core/clients/redis.ts'
import type { Deps } from '../../core/deps.ts'
import type { AuthEnv } from '../middleware/auth/index.ts'

/** Whether host:port of a NATS server URL accepts a TCP connection (the client itself talks to one server only). */
function reachable(url: string, ms: number): Promise<void> {
  const u = new URL(url.includes('://') ? url : `nats://${url}`)
  return new Promise((res, rej) => {
    const s = connect({ host: u.hostname, port: Number(u.port || 4222) })
    const done = (err?: Error) => {
      s.destroy()
      err ? rej(err) : res()
    }
    s.setTimeout(ms, () => done(new Error('timeout')))
    s.once('connect', () => done())
    s.once('error', done)
  })
}

const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timeout')), ms).unref())])

/** Liveness, readiness (naming the dependency that is down) and Prometheus metrics. Public. */
export function mountHealth(app: OpenAPIHono<AuthEnv>, deps: Pick<Deps, 'nc' | 'redis' | 'ch' | 'metrics'> & { natsServers?: string[] }) {
  app.openapi(
    createRoute({ method: 'get', path: '/healthz', summary: 'The process lives', responses: { 200: { description: 'OK', content: { 'application/json': { schema: z.object({ status: z.literal('ok') }) } } } } }),
    (c) => c.json({ status: 'ok' as const }, 200),
  )
  const Ready = z.object({ status: z.enum(['ready', 'unavailable']), down: z.array(z.string()) })
  app.openapi(
    createRoute({
      method: 'get',
      path: '/readyz',
      summary: 'Ready when NATS, Redis and ClickHouse all answer',
      responses: {
        200: { description: 'Ready', content: { 'application/json': { schema: Ready } } },
        503: { description: 'A dependency is down (named)', content: { 'application/json': { schema: Ready } } },
      },
    }),
    async (c) => {
      const checks: [string, () => Promise<unknown>][] = [
        ['nats', () => deps.nc.flush()],
        // On a NATS cluster, each server by its address too ('nats 10.0.0.7:4222').
        ...(deps.natsServers ?? []).map((u): [string, () => Promise<unknown>] => [`nats ${u.replace(/^nats:\/\//, '')}`, () => reachable(u, 1000)]),
        // One server, or each node of a Redis Cluster by its address (a failed master is named until
        // its replica has taken over and the client's view of the slots moved on).
        ...redisNodes(deps.redis).map(({ name, client }): [string, () => Promise<unknown>] => [name, () => client.ping()]),
        ['clickhouse', async () => (await deps.ch.query({ query: 'SELECT 1', format: 'JSONEachRow' })).json()],
      ]
      const results = await Promise.allSettled(checks.map(([, f]) => within(f(), 1500)))
      const down = checks.filter((_, i) => results[i].status === 'rejected').map(([n]) => n)
      if (down.length) {
        c.header('Retry-After', '2')
        return c.json({ status: 'unavailable' as const, down }, 503)
      }
      return c.json({ status: 'ready' as const, down }, 200)
    },
  )
  app.get('/metrics', async (c) => {
    c.header('content-type', deps.metrics.registry.contentType)
    return c.body(await deps.metrics.registry.metrics())
  })
}
