import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import type { Hono } from 'hono'

/**
 * The dashboard's static files (`dashboards/ui/*`: plain ES modules and CSS, no build step), read
 * once at start into memory, gzipped once, served at `/ui/<file>` with an ETag (`no-cache`: the
 * browser revalidates and gets 304 while nothing changed). Only the files present at start are
 * served; nothing else of the disk is reachable.
 */
const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json; charset=utf-8',
}

interface Asset {
  type: string
  body: Buffer
  gzip: Buffer
  etag: string
}

export const UI_DIR = fileURLToPath(new URL('./ui/', import.meta.url))

export function loadAssets(dir = UI_DIR): Map<string, Asset> {
  const assets = new Map<string, Asset>()
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)]
    if (!type) continue
    const body = readFileSync(join(dir, name))
    assets.set(name, { type, body, gzip: gzipSync(body, { level: 9 }), etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` })
  }
  return assets
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function mountDashboardAssets(app: Hono<any>, dir = UI_DIR) {
  const assets = loadAssets(dir)
  app.get('/ui/:file', (c) => {
    const a = assets.get(c.req.param('file'))
    if (!a) return c.notFound()
    c.header('ETag', a.etag)
    c.header('Cache-Control', 'no-cache')
    c.header('Vary', 'Accept-Encoding')
    c.header('X-Content-Type-Options', 'nosniff')
    if (c.req.header('if-none-match') === a.etag) return c.body(null, 304)
    c.header('Content-Type', a.type)
    if (/\bgzip\b/.test(c.req.header('accept-encoding') ?? '')) {
      c.header('Content-Encoding', 'gzip')
      return c.body(new Uint8Array(a.gzip), 200)
    }
    return c.body(new Uint8Array(a.body), 200)
  })
}
