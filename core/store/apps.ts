import { createHash, randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'

/**
 * Apps that post events, durable in NATS KV (bucket `apps`): `a.<id>` the app, `k.<sha256 of key>`
 * its id. The key is shown once at creation; only its hash is stored. Keys are 32 random bytes, so
 * a plain SHA-256 is a sound verifier (no password stretching needed).
 */
export interface App {
  id: string
  name: string
  key_hash: string
  created_at: number
}

export interface AppStore {
  create(name: string): Promise<{ app: App; key: string }>
  /** The app a bearer key belongs to, or null. Cached in-process for a minute. */
  byKey(key: string): Promise<App | null>
}

const enc = new TextEncoder()
const dec = new TextDecoder()
export const hashKey = (key: string) => createHash('sha256').update(key).digest('hex')

export function createAppStore(kv: KV, opts: { cacheMs?: number } = {}): AppStore {
  const cacheMs = opts.cacheMs ?? 60_000
  const cache = new Map<string, { app: App | null; until: number }>()
  return {
    async create(name) {
      const id = 'app_' + randomBytes(8).toString('hex')
      const key = 'kpk_' + randomBytes(32).toString('base64url')
      const app: App = { id, name, key_hash: hashKey(key), created_at: Date.now() }
      await kv.create(`a.${id}`, enc.encode(JSON.stringify(app)))
      await kv.create(`k.${app.key_hash}`, enc.encode(id))
      return { app, key }
    },
    async byKey(key) {
      const h = hashKey(key)
      const hit = cache.get(h)
      if (hit && hit.until > Date.now()) return hit.app
      const idEntry = await kv.get(`k.${h}`)
      let app: App | null = null
      if (idEntry && idEntry.operation === 'PUT' && idEntry.value.length) {
        const e = await kv.get(`a.${dec.decode(idEntry.value)}`)
        if (e && e.operation === 'PUT' && e.value.length) app = JSON.parse(dec.decode(e.value)) as App
      }
      if (cache.size > 10_000) cache.clear()
      cache.set(h, { app, until: Date.now() + (app ? cacheMs : 2000) })
      return app
    },
  }
}
