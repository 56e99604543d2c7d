import { Writable } from 'node:stream'
import { ClosedConnectionError, RequestError, TimeoutError } from '@nats-io/nats-core'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { validator } from 'hono/validator'
import { Redis } from 'ioredis'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../../../core/errors.ts'
import { freePort } from '../../../test/stack.ts'
import { downDependency, errorHandler } from './index.ts'

function appThrowing(err: () => unknown | Promise<unknown>) {
  const lines: any[] = []
  const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) }))
  const app = new Hono<{ Variables: { requestId: string } }>()
  app.use(async (c, next) => {
    c.set('requestId', 'req-1')
    await next()
  })
  app.get('/', async () => {
    throw await err()
  })
  app.onError(errorHandler(log))
  return { app, lines }
}

/** A real ioredis failure: a client on a closed port that may not retry a command. */
async function redisGaveUp(): Promise<Error> {
  const redis = new Redis({ port: await freePort(), maxRetriesPerRequest: 0, retryStrategy: () => 50 })
  redis.on('error', () => {}) // connection refused, as intended
  try {
    return await redis.get('k').then(() => new Error('unexpected reply'), (e: Error) => e)
  } finally {
    redis.disconnect()
  }
}

describe('errorHandler', () => {
  it('answers an ApiError with its status, code and the request id', async () => {
    const { app } = appThrowing(() => new ApiError(409, 'already_decided', 'the application was approved'))
    const r = await app.request('/')
    expect(r.status).toBe(409)
    expect(await r.json()).toEqual({ error: { code: 'already_decided', message: 'the application was approved', request_id: 'req-1' } })
  })

  it('answers an oversize body as payload_too_large', async () => {
    const { app } = appThrowing(() => new HTTPException(413, { message: 'body over 1 MiB' }))
    const r = await app.request('/')
    expect(r.status).toBe(413)
    expect((await r.json()).error.code).toBe('payload_too_large')
  })

  it('answers a malformed JSON body (Hono’s validator) as invalid_json, like the routes that parse their own bodies', async () => {
    const app = new Hono()
    app.post('/', validator('json', (v) => v), (c) => c.json(c.req.valid('json')))
    app.onError(errorHandler(pino({ level: 'silent' })))
    const r = await app.request('/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' })
    expect(r.status).toBe(400)
    expect((await r.json()).error).toMatchObject({ code: 'invalid_json', message: 'body is not valid JSON' })
  })

  it('answers 503 with Retry-After when NATS or Redis is down, naming it, without a stack in the log', async () => {
    const cases: [() => unknown | Promise<unknown>, string][] = [
      [() => new ClosedConnectionError(), 'nats'],
      [() => new RequestError('request failed', { cause: new TimeoutError() }), 'nats'],
      [() => new Error('kv read failed', { cause: new ClosedConnectionError() }), 'nats'],
      [redisGaveUp, 'redis'],
    ]
    for (const [err, dependency] of cases) {
      const { app, lines } = appThrowing(err)
      const r = await app.request('/')
      expect(r.status, dependency).toBe(503)
      expect(r.headers.get('retry-after')).toMatch(/^\d+$/)
      expect(await r.json()).toEqual({ error: { code: 'unavailable', message: `${dependency} is unavailable; retry later`, request_id: 'req-1' } })
      expect(lines).toEqual([expect.objectContaining({ level: 40, dependency, request_id: 'req-1' })])
      expect(lines[0].stack).toBeUndefined()
    }
  })

  it('answers anything else 500 without details, logging the stack', async () => {
    const { app, lines } = appThrowing(() => new TypeError("Cannot read properties of undefined (reading 'secret')"))
    const r = await app.request('/')
    expect(r.status).toBe(500)
    const body = await r.text()
    expect(JSON.parse(body)).toEqual({ error: { code: 'internal', message: 'internal error', request_id: 'req-1' } })
    expect(body).not.toContain('secret')
    expect(lines).toEqual([expect.objectContaining({ level: 50, request_id: 'req-1', stack: expect.stringContaining('TypeError') })])
  })
})

describe('downDependency', () => {
  it('does not take an application error for an outage', () => {
    expect(downDependency(new Error('no such campaign'))).toBeNull()
    expect(downDependency(new ApiError(404, 'not_found', 'x'))).toBeNull()
    expect(downDependency('a string')).toBeNull()
    expect(downDependency(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBeNull()
  })

  it('takes a Redis Cluster failing over for Redis being down (503, not 500)', () => {
    expect(downDependency(new Error('CLUSTERDOWN The cluster is down'))).toBe('redis')
    expect(downDependency(new Error('MOVED 2863 127.0.0.1:16384'))).toBe('redis')
    expect(downDependency(new Error('Too many Cluster redirections. Last error: Error: Connection is closed.'))).toBe('redis')
    expect(downDependency(Object.assign(new Error('Failed to refresh slots cache.'), { name: 'ClusterAllFailedError' }))).toBe('redis')
  })
})
