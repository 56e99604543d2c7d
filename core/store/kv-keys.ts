import type { KV } from '@nats-io/kv'

/**
 * The keys of a KV bucket matching `filter`, each once. `kv.keys()` ends after the current keys (a
 * watch would wait forever on an empty bucket), but a key written while it runs is delivered again.
 */
export async function listKeys(kv: KV, filter: string): Promise<string[]> {
  const seen = new Set<string>()
  for await (const k of await kv.keys(filter)) seen.add(k)
  return [...seen]
}
