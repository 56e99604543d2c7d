import { ConnectionError, type NatsConnection } from '@nats-io/nats-core'
import { connect } from '@nats-io/transport-node'
import type { Logger } from 'pino'

export async function createNats(servers: string, name: string): Promise<NatsConnection> {
  return connect({
    servers: servers.split(','),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    // No stack capture per request: every JetStream publish is a request, and building an Error
    // (with its stack) for each was ≈ 14 % of the busy JavaScript time in a profile under load.
    // Errors still carry their message.
    noAsyncTraces: true,
  })
}

/**
 * Follows the connection's state, and makes requests fail at once while it is down. nats.js keeps a
 * request made while it reconnects until the request's timeout (5 s for JetStream calls and KV
 * reads), so an API call would hang that long before answering 503; now it fails with a
 * ConnectionError (503 + Retry-After at the API) as soon as the client knows the server is gone.
 * Publishes and subscriptions (consumer pulls, acks) are untouched: nats.js sends them on reconnect.
 * JetStream, KV and the stores are built on the returned connection.
 */
export function failFastWhileDown(nc: NatsConnection, log: Logger): { nc: NatsConnection; up: () => boolean } {
  let connected = true
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        connected = false
        log.warn('nats disconnected')
      } else if (s.type === 'reconnect') {
        connected = true
        log.info('nats reconnected')
      }
    }
  })()
  const up = () => connected && !nc.isClosed()
  const request: NatsConnection['request'] = (subject, payload, opts) =>
    up() ? nc.request(subject, payload, opts) : Promise.reject(new ConnectionError('nats is disconnected'))
  const guarded = new Proxy(nc, { get: (target, prop, receiver) => (prop === 'request' ? request : Reflect.get(target, prop, receiver)) })
  return { nc: guarded, up }
}
