import { connect, type NatsConnection } from '@nats-io/transport-node'

export async function createNats(servers: string, name: string): Promise<NatsConnection> {
  return connect({
    servers: servers.split(','),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    // No stack capture per request: every JetStream publish and ack is a request, and building an
    // Error for each was a tenth of the service's CPU under load. Errors still carry their message.
    noAsyncTraces: true,
  })
}
