import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from '@nats-io/nats-core'
import type { Logger } from 'pino'
import { ApiError, unavailable } from '../../../core/errors.ts'

/**
 * The dependency a failure says is down, or null: a NATS connection or request failure, or Redis
 * commands that gave up (retries exhausted, connection closed, a Cluster failing over). Looks
 * through `cause` chains.
 */
export function downDependency(err: unknown): 'nats' | 'redis' | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (
      e instanceof ConnectionError ||
      e instanceof ClosedConnectionError ||
      e instanceof DrainingConnectionError ||
      e instanceof TimeoutError ||
      e instanceof NoRespondersError ||
      e instanceof RequestError
    ) return 'nats'
    // ioredis: MaxRetriesPerRequestError (not exported by name), and its CONNECTION_CLOSED_ERROR_MSG.
    if (e.name === 'MaxRetriesPerRequestError' || e.message === 'Connection is closed.') return 'redis'
    // A Redis Cluster while a master fails over: no node answers for the slot yet, or redirections
    // ran out (ClusterAllFailedError, CLUSTERDOWN, TRYAGAIN, MOVED / ASK past ioredis's retries).
    if (e.name === 'ClusterAllFailedError' || /^(CLUSTERDOWN|TRYAGAIN|MOVED|ASK) |^Too many Cluster redirections/.test(e.message)) return 'redis'
  }
  return null
}

/**
 * Hono's own exceptions. Its validator answers an unreadable body with a 400: the same codes as the
 * routes that parse their bodies themselves (`invalid_json`, `invalid_body`).
 */
function fromHttpException(err: HTTPException): ApiError {
  const status = err.status as ApiError['status']
  if (status === 413) return new ApiError(413, 'payload_too_large', err.message || 'body too large')
  if (status === 415) return new ApiError(415, 'unsupported_media_type', 'send the body as application/json (or the content type the route documents)')
  if (status === 400) return /json/i.test(err.message) ? new ApiError(400, 'invalid_json', 'body is not valid JSON') : new ApiError(400, 'invalid_body', err.message || 'body is unreadable')
  return new ApiError(status, 'http_error', err.message || 'request failed')
}

/**
 * Maps every failure to the documented envelope {error: {code, message, request_id}}: API errors as
 * they are, a dependency that is down as 503 with Retry-After (the client should retry), anything
 * else as 500 with the stack in the log.
 */
export function errorHandler(log: Logger) {
  return (err: Error, c: Context) => {
    const request_id = (c.get('requestId') as string | undefined) ?? ''
    let e: ApiError
    let dependency: ReturnType<typeof downDependency>
    if (err instanceof ApiError) e = err
    else if (err instanceof HTTPException) e = fromHttpException(err)
    else if ((dependency = downDependency(err))) {
      log.warn({ err: String(err), dependency, request_id }, 'dependency unavailable; answering 503')
      e = unavailable(dependency)
    } else {
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
