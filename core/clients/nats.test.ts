import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kvm } from '@nats-io/kv'
import { ConnectionError, type NatsConnection } from '@nats-io/nats-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startNats, type LocalService } from '../local-services.ts'
import { createLogger } from '../logger.ts'
import { freePort } from '../../test/stack.ts'
import { createNats, failFastWhileDown } from './nats.ts'

let dir: string
let port: number
let server: LocalService
let raw: NatsConnection

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nats-client-'))
  port = await freePort()
  server = await startNats(dir, port)
  raw = await createNats(server.url, 'fail-fast-test')
})
afterAll(async () => {
  await raw?.close().catch(() => {})
  await server?.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** Resolves at the connection's next status of this type. */
async function next(nc: NatsConnection, type: 'disconnect' | 'reconnect') {
  for await (const s of nc.status()) if (s.type === type) return
}

describe('failFastWhileDown', () => {
  it('fails KV reads and writes with a ConnectionError while NATS is down (not after the request timeout), and serves them again after the reconnect', async () => {
    const { nc, up } = failFastWhileDown(raw, createLogger('silent'))
    const kv = await new Kvm(nc).create('guarded', { history: 1 })
    await kv.put('k', 'v1')
    expect(up()).toBe(true)

    const down = next(raw, 'disconnect')
    await server.stop()
    await down
    expect(up()).toBe(false)
    // Without the guard nats.js keeps these until their timeout and then throws a TimeoutError.
    await expect(kv.get('k')).rejects.toBeInstanceOf(ConnectionError)
    await expect(kv.put('k', 'v2')).rejects.toBeInstanceOf(ConnectionError)

    const back = next(raw, 'reconnect')
    server = await startNats(dir, port)
    await back
    expect(up()).toBe(true)
    expect((await kv.get('k'))?.string()).toBe('v1')
    await kv.put('k', 'v3')
    expect((await kv.get('k'))?.string()).toBe('v3')
  })
})

describe('the nats-core patch (patches/README.md)', () => {
  it('is applied: a request that got its answer no longer builds a "cancelled" RequestError', () => {
    const file = createRequire(import.meta.url).resolve('@nats-io/nats-core').replace(/mod\.js$/, 'request.js')
    const requestOne = readFileSync(file, 'utf8').split('class RequestOne')[1] ?? ''
    const resolver = /resolver\(err, msg\) \{([\s\S]*?)\n {4}\}/.exec(requestOne)?.[1] ?? ''
    expect(resolver).toContain('this.deferred.resolve(msg)')
    expect(resolver).toContain('this.mux.cancel(this);')
    expect(resolver).not.toContain('this.cancel();')
  })
})
