import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi'
import type { Aggregator } from '../../aggregator/index.ts'
import { ApiError } from '../../core/errors.ts'
import { requireOperator, type AuthEnv } from '../middleware/auth/index.ts'
import { errorResponses } from '../schemas.ts'

/** Operator actions on a running aggregator. */
export function mountAdmin(app: OpenAPIHono<AuthEnv>, deps: { aggregator: () => Aggregator | null }) {
  const route = createRoute({
    method: 'post',
    path: '/v1/admin/rebuild',
    summary: 'Rebuild Redis from ClickHouse facts now (operator): counting pauses, rebuilds, resumes',
    security: [{ bearer: [] }],
    middleware: [requireOperator()] as const,
    responses: {
      200: { description: 'Rebuilt', content: { 'application/json': { schema: z.object({ rebuilt: z.literal(true), ms: z.number() }) } } },
      ...errorResponses(401, 403, 409),
    },
  })
  app.openapi(route, async (c) => {
    const agg = deps.aggregator()
    if (!agg) throw new ApiError(409, 'not_an_aggregator', 'this process does not run the aggregator role')
    const t0 = Date.now()
    await agg.rebuild()
    return c.json({ rebuilt: true as const, ms: Date.now() - t0 }, 200)
  })
}
