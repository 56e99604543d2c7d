import { connect, type NatsConnection } from '@nats-io/transport-node'

export async function createNats(servers: string, name: string): Promise<NatsConnection> {
  return connect({
    servers: servers.split(','),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
  })
}
