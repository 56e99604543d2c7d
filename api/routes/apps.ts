import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import type { AppStore } from '../../core/store/apps.ts'
import { shanghaiIso } from '../../core/time.ts'
import { requireOperator, type AuthEnv } from '../middleware/auth/index.ts'
import { errorResponses } from '../schemas.ts'

const route = createRoute({
  method: 'post',
  path: '/v1/apps',
  summary: 'Register an app that posts events (operator). The key is shown only in this response.',
  security: [{ bearer: [] }],
  middleware: [requireOperator()] as const,
  request: { body: { required: true, content: { 'application/json': { schema: z.object({ name: z.string().trim().min(1).max(100) }) } } } },
  responses: {
    201: {
      description: 'Created',
      content: { 'application/json': { schema: z.object({ id: z.string(), name: z.string(), key: z.string(), created_at: z.string() }) } },
    },
    ...errorResponses(400, 401, 403, 503),
  },
})

export function mountApps(app: OpenAPIHono<AuthEnv>, deps: { apps: AppStore }) {
  app.openapi(route, async (c) => {
    const { name } = c.req.valid('json')
    const { app: created, key } = await deps.apps.create(name)
    return c.json({ id: created.id, name: created.name, key, created_at: shanghaiIso(created.created_at) }, 201)
  })
}
