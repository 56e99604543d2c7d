import type { Context, MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { ApiError } from '../../../core/errors.ts'

/**
 * Hono's bodyLimit, answering 413 in our error envelope. Before answering it reads and discards
 * the rest of an oversize body (up to 16 MiB), so that an HTTP client still writing its body gets
 * the 413 instead of a reset connection; anything larger is cut off.
 */
const DRAIN_MAX = 16 * 1024 * 1024

async function drain(c: Context) {
  const body = c.req.raw.body
  if (!body || c.req.raw.bodyUsed) return
  const reader = body.getReader()
  let n = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      n += value.byteLength
      if (n > DRAIN_MAX) {
        c.header('Connection', 'close')
        await reader.cancel()
        return
      }
    }
  } catch {
    /* client went away */
  }
}

/**
 * The limit every request body gets unless its route sets its own (`ownLimit` says which do: bulk
 * uploads, larger). Applied before authentication, so an anonymous flood is cut at the limit too.
 */
export function defaultBodyLimit(maxSize: number, label: string, ownLimit: (method: string, path: string) => boolean): MiddlewareHandler {
  const limit = limitBody(maxSize, label)
  return (c, next) => (ownLimit(c.req.method, c.req.path) ? next() : limit(c, next))
}

export function limitBody(maxSize: number, label: string): MiddlewareHandler {
  const limit = bodyLimit({
    maxSize,
    onError: async (c) => {
      await drain(c)
      throw new ApiError(413, 'payload_too_large', `body exceeds ${label}`)
    },
  })
  // A GET or HEAD request has no body to limit, and asking for it (c.req.raw.body) makes the Node
  // adapter build the whole web Request with its AbortController: ≈ 10 % of a board read's CPU.
  return (c, next) => (c.req.method === 'GET' || c.req.method === 'HEAD' ? next() : limit(c, next))
}
