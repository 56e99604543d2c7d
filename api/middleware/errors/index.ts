import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { Logger } from 'pino'
import { ApiError } from '../../../core/errors.ts'

/** Maps every failure to the documented envelope {error: {code, message, request_id}}. */
export function errorHandler(log: Logger) {
  return (err: Error, c: Context) => {
    const request_id = (c.get('requestId') as string | undefined) ?? ''
    let e: ApiError
    if (err instanceof ApiError) e = err
    else if (err instanceof HTTPException) e = new ApiError(err.status as ApiError['status'], err.status === 413 ? 'payload_too_large' : 'http_error', err.message || 'request failed')
    else {
      log.error({ err: String(err), stack: err.stack, request_id }, 'unhandled error')
      e = new ApiError(500, 'internal', 'internal error')
    }
    for (const [k, v] of Object.entries(e.headers)) c.header(k, v)
    return c.json({ error: { code: e.code, message: e.message, request_id } }, e.status)
  }
}

export function notFoundHandler(c: Context) {
  const request_id = (c.get('requestId') as string | undefined) ?? ''
  return c.json({ error: { code: 'not_found', message: `no route for ${c.req.method} ${c.req.path}`, request_id } }, 404)
}
