import { z } from '@hono/zod-openapi'

export const ErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), request_id: z.string() }),
})

export const errorResponses = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((s) => [s, { description: DESCRIPTIONS[s] ?? 'Error', content: { 'application/json': { schema: ErrorSchema } } }]),
  )

const DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request',
  401: 'No or bad credentials',
  403: 'Outside your scope',
  404: 'Not found',
  409: 'Conflict',
  413: 'Too large',
  503: 'A dependency is unavailable; retry after Retry-After',
}
