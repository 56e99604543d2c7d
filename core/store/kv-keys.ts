import { Bucket, type KV } from '@nats-io/kv'

/**
 * The keys of a KV bucket matching `filter` (NATS wildcards), each once: the subjects of the
 * bucket's stream, from one stream-info request (paged by the client when there are many). Keys
 * whose last operation is a delete or purge are included: callers read each key and skip those.
 *
 * Not `kv.keys()`: it follows an ordered consumer until a message says nothing is pending (or an
 * idle heartbeat comes, 30 s apart), and while one listed key was rewritten every 5 ms a listing did
 * not end within 60 s (kv-keys.test.ts); a campaign list took 30 s this way while the campaign jobs
 * wrote a lease. It also listed a key written meanwhile twice.
 */
export async function listKeys(kv: KV, filter: string): Promise<string[]> {
  if (!(kv instanceof Bucket)) throw new TypeError('listKeys needs a JetStream KV bucket')
  const info = await kv.jsm.streams.info(kv.stream, { subjects_filter: kv.fullKeyName(filter) })
  return Object.keys(info.state.subjects ?? {}).map((subject) => kv.decodeKey(subject.substring(kv.prefixLen)))
}
