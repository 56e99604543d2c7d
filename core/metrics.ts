import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Prometheus metrics of one service instance (no global registry: tests build several). */
export function createMetrics() {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const reg = { registers: [registry] }
  return {
    registry,
    eventsReceived: new Counter({ name: 'events_received_total', help: 'Events received by ingest', labelNames: ['type'], ...reg }),
    eventsAccepted: new Counter({ name: 'events_accepted_total', help: 'Events durably accepted into the stream', labelNames: ['type'], ...reg }),
    eventsRejected: new Counter({ name: 'events_rejected_total', help: 'Events refused by ingest', labelNames: ['code'], ...reg }),
    eventsDuplicate: new Counter({ name: 'events_duplicate_total', help: 'Events recognised as duplicates', labelNames: ['stage'], ...reg }),
    decisions: new Counter({ name: 'events_decided_total', help: 'Aggregator decisions', labelNames: ['type', 'decision'], ...reg }),
    consumerLag: new Gauge({ name: 'consumer_lag_messages', help: 'Messages in the stream not yet acknowledged by the aggregator', ...reg }),
    batchSize: new Histogram({ name: 'aggregator_batch_size', help: 'Messages per processing batch', buckets: [1, 10, 50, 100, 250, 500, 1000, 2000], ...reg }),
    insertSeconds: new Histogram({ name: 'facts_insert_seconds', help: 'ClickHouse fact insert latency', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], ...reg }),
    insertRows: new Counter({ name: 'facts_inserted_total', help: 'Fact rows inserted', ...reg }),
    httpSeconds: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['method', 'route', 'status'],
      // Fine below 10 ms: the read guarantees (5 / 10 / 50 / 100 ms p99) are read from these buckets.
      buckets: [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      ...reg,
    }),
  }
}
export type Metrics = ReturnType<typeof createMetrics>
