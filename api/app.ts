import { readFileSync } from 'node:fs'
import { OpenAPIHono } from '@hono/zod-openapi'
import { requestId } from 'hono/request-id'
import type { Config } from '../core/config.ts'
import type { Deps } from '../core/deps.ts'
import { badRequest } from '../core/errors.ts'
import { mountIngest } from '../ingest/index.ts'
import { authenticate, type AuthEnv } from './middleware/auth/index.ts'
import { errorHandler, notFoundHandler } from './middleware/errors/index.ts'
import type { Aggregator } from '../aggregator/index.ts'
import { mountAdmin } from './routes/admin.ts'
import { mountApps } from './routes/apps.ts'
import { mountOfficials } from './routes/officials.ts'
import { mountAccounts } from './routes/accounts.ts'
import { mountCertifications } from './routes/certifications.ts'
import { mountInstitutions } from './routes/institutions.ts'
import { mountPoints } from './routes/points.ts'
import { mountStore } from './routes/store.ts'
import { mountPopulations } from './routes/populations.ts'
import { mountKpis } from './routes/kpis.ts'
import { mountInstitutionRankings, mountRankings } from './routes/rankings.ts'
import { mountTasks } from './routes/tasks.ts'
import { mountCampaigns } from './routes/campaigns.ts'
import { mountRecognitions } from './routes/recognitions.ts'
import { createCampaignJobs } from '../aggregator/campaign-jobs.ts'
import { createSessions } from './middleware/auth/sessions.ts'
import { mountHealth } from './routes/health.ts'
import { mountLeaderboards } from './routes/leaderboards.ts'
import { mountUsers } from './routes/users.ts'
import { mountTrend } from './routes/trend.ts'
import { mountLive } from './routes/live.ts'
import { SUBJECT_EVENTS, SUBJECT_LIVE } from '../core/stream.ts'
import { dedupeWindow } from '../aggregator/user-step.ts'
import { mountDashboardAssets } from '../dashboards/assets.ts'
import { defaultBodyLimit } from './middleware/body-limit/index.ts'

/** The HTTP surface of one process: ingest and/or API routes by role, health and docs always. */
export function createApp(config: Config, deps: Deps & { adminToken: string; aggregator?: () => Aggregator | null }) {
  const { log, metrics } = deps
  const app = new OpenAPIHono<AuthEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const i = result.error.issues[0]
        throw badRequest(`${i.path.join('.') || 'request'}: ${i.message}`)
      }
    },
  })
  app.use(requestId())
  app.use(async (c, next) => {
    const t0 = performance.now()
    await next()
    const ms = performance.now() - t0
    const route = c.req.routePath || 'unmatched'
    metrics.httpSeconds.observe({ method: c.req.method, route, status: String(c.res.status) }, ms / 1000)
    // No headers, query strings or bodies: they may carry tokens or phone numbers.
    log.info({ request_id: c.get('requestId'), method: c.req.method, route, status: c.res.status, ms: Math.round(ms * 10) / 10 }, 'request')
  })
  app.onError(errorHandler(log))
  app.notFound(notFoundHandler)
  // Every body is at most 1 MiB (413), before authentication; bulk uploads and events set their own.
  const ownLimit = /^\/v1\/(events|users:import|populations:import|tasks\/\d{4}(:import)?)$/
  app.use('*', defaultBodyLimit(1024 * 1024, '1 MiB', (_method, path) => ownLimit.test(path)))

  // Several NATS servers (a cluster): /readyz names each one it cannot reach.
  const natsServers = config.nats.url?.split(',').map((u) => u.trim()).filter(Boolean) ?? []
  mountHealth(app, { ...deps, natsServers: natsServers.length > 1 ? natsServers : [] })
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' })
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: '科普中国 live analytics', version: '1.0.0', description: 'Public HTTP contract v1 (see API.md).' },
  })
  const page = readFileSync(new URL('../dashboards/index.html', import.meta.url), 'utf8')
  app.get('/', (c) => c.html(page))
  mountDashboardAssets(app)

  const sessions = createSessions(deps.adminToken, { redis: deps.redis })
  app.use('/v1/*', authenticate({ adminToken: deps.adminToken, apps: deps.apps, sessions, open: ['/v1/auth/login', '/v1/auth/sms', '/v1/auth/reset', '/v1/accounts'] }))
  if (config.roles.has('ingest')) mountIngest(app, config, deps)
  if (config.roles.has('api')) {
    mountApps(app, deps)
    mountUsers(app, deps)
    mountOfficials(app, { ...deps, sessions })
    mountAccounts(app, { ...deps, sessions })
    mountCertifications(app, deps)
    mountInstitutions(app, deps)
    mountPoints(app, deps, { subject: SUBJECT_EVENTS(config.nats.stream), win: dedupeWindow(config.events.maxAgeMs, config.events.maxFutureMs) })
    mountStore(app, deps)
    mountPopulations(app, deps)
    mountKpis(app, deps)
    mountRankings(app, deps)
    mountInstitutionRankings(app, deps)
    mountTasks(app, deps)
    mountCampaigns(app, { ...deps, jobs: createCampaignJobs({ redis: deps.redis, ch: deps.ch, jsm: deps.jsm, campaigns: deps.campaigns, log, stream: config.nats.stream }) })
    mountLeaderboards(app, deps, { topK: config.boards.topK, pageCacheMs: config.boards.pageCacheMs })
    mountRecognitions(app, deps)
    mountTrend(app, deps)
    mountLive(app, { ...deps, sessions }, { subject: SUBJECT_LIVE(config.nats.stream) })
  }
  mountAdmin(app, { aggregator: deps.aggregator ?? (() => null) })
  return app
}
