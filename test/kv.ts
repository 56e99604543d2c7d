import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kvm, type KV } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/nats-core'
import { createNats } from '../core/clients/nats.ts'
import { startNats, type LocalService } from '../core/local-services.ts'
import { freePort } from './stack.ts'

/** A real nats-server of its own with one KV bucket, for store tests that need no whole stack. */
export interface KvBucket {
  server: LocalService
  nc: NatsConnection
  kv: KV
  stop(): Promise<void>
}

export async function startKvBucket(name: string): Promise<KvBucket> {
  const dir = mkdtempSync(join(tmpdir(), `kv-${name}-`))
  const server = await startNats(dir, await freePort())
  const nc = await createNats(server.url, `${name}-test`)
  const kv = await new Kvm(nc).create(name, { history: 1 })
  return {
    server,
    nc,
    kv,
    async stop() {
      await nc.close().catch(() => {})
      await server.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
