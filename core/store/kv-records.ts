import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream'
import type { KV } from '@nats-io/kv'
import { listKeys } from './kv-keys.ts'

/** A record kept as JSON under `<prefix>.<id>` in a KV bucket; `updated_at` is set on every change. */
export interface KvRecords<T extends { updated_at: number }> {
  /** The record and the revision it was read at; null for a malformed id, a missing or deleted key. */
  read(id: string): Promise<{ value: T; rev: number } | null>
  get(id: string): Promise<T | null>
  /** Every record, in no particular order (deleted ones skipped). */
  list(): Promise<T[]>
  /** Writes a new record; fails when the key exists. */
  create(id: string, value: T): Promise<void>
  /**
   * Read, change, write with the revision read. `change` gets a copy to edit (or throws to refuse)
   * and returns the new record, or null for no change. On a concurrent write the change is applied
   * again to the newer record, a few times; any other failure (NATS unavailable) is thrown as is.
   * `after` is `before` when nothing changed.
   */
  update(id: string, change: (value: T) => T | null): Promise<{ before: T; after: T }>
}

export interface KvRecordErrors {
  /** No record under that id. */
  missing: () => Error
  /** Still changed concurrently after every attempt. */
  conflict: () => Error
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const ID = /^[A-Za-z0-9_-]{1,64}$/
const ATTEMPTS = 5

/** A write refused because the key moved on from the revision read (or was created meanwhile). */
export function isRevisionConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  )
}

export function createKvRecords<T extends { updated_at: number }>(kv: KV, prefix: string, errors: KvRecordErrors, idPattern = ID): KvRecords<T> {
  const key = (id: string) => `${prefix}.${id}`
  async function read(id: string) {
    if (!idPattern.test(id)) return null
    const e = await kv.get(key(id))
    return e && e.operation === 'PUT' && e.value.length ? { value: JSON.parse(dec.decode(e.value)) as T, rev: e.revision } : null
  }
  return {
    read,
    async get(id) {
      return (await read(id))?.value ?? null
    },
    async list() {
      const ids = (await listKeys(kv, `${prefix}.*`)).map((k) => k.slice(prefix.length + 1))
      const out: T[] = []
      for (let i = 0; i < ids.length; i += 500) {
        for (const r of await Promise.all(ids.slice(i, i + 500).map(read))) if (r) out.push(r.value)
      }
      return out
    },
    async create(id, value) {
      await kv.create(key(id), enc.encode(JSON.stringify(value)))
    },
    async update(id, change) {
      for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
        const cur = await read(id)
        if (!cur) throw errors.missing()
        const next = change(structuredClone(cur.value))
        if (!next) return { before: cur.value, after: cur.value }
        next.updated_at = Date.now()
        try {
          await kv.update(key(id), enc.encode(JSON.stringify(next)), cur.rev)
          return { before: cur.value, after: next }
        } catch (err) {
          if (!isRevisionConflict(err)) throw err
          // Changed in between: apply the change again to the newer record.
        }
      }
      throw errors.conflict()
    },
  }
}

/**
 * Gives a phone claim (`p.<phone>` → id) back, only while it still names `id` (revision-checked: a
 * claim taken over in between is left alone).
 */
export async function releasePhone(kv: KV, phone: string, id: string): Promise<void> {
  const e = await kv.get(`p.${phone}`)
  if (!e || e.operation !== 'PUT' || new TextDecoder().decode(e.value) !== id) return
  try {
    await kv.delete(`p.${phone}`, { previousSeq: e.revision })
  } catch (err) {
    if (!isRevisionConflict(err)) throw err
  }
}
