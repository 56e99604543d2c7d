import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { CONSUMER } from '../../core/stream.ts'

/**
 * A read-only look at the service's JetStream work queue. The stream keeps a message until the
 * aggregator acks it, and the aggregator acks only after the event's fact is stored in ClickHouse,
 * so "stream empty" means every accepted event is counted in Redis and stored as a fact.
 */
export interface StreamState {
  /** Messages still in the stream (not yet acked). */
  messages: number
  /** Delivered to the aggregator, not yet acked. */
  ackPending: number
  /** Not yet delivered. */
  undelivered: number
  /** Messages delivered more than once so far (JetStream's own count). */
  redelivered: number
}

export class StreamWatch {
  private constructor(
    private nc: NatsConnection,
    private jsm: JetStreamManager,
    private stream: string,
  ) {}

  static async open(url: string, stream: string): Promise<StreamWatch> {
    const nc = await connect({ servers: url, name: 'kepu-bench' })
    return new StreamWatch(nc, await jetstreamManager(nc), stream)
  }

  async state(): Promise<StreamState> {
    const [si, ci] = await Promise.all([this.jsm.streams.info(this.stream), this.jsm.consumers.info(this.stream, CONSUMER)])
    return { messages: si.state.messages, ackPending: ci.num_ack_pending, undelivered: ci.num_pending, redelivered: ci.num_redelivered }
  }

  /** Drops every message still in the stream (the bench's own instance only); returns how many. */
  async purge(): Promise<number> {
    const r = await this.jsm.streams.purge(this.stream)
    return r.purged
  }

  async close(): Promise<void> {
    await this.nc.close()
  }
}
