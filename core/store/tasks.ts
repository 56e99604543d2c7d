import type { KV } from '@nats-io/kv'
import { listKeys } from './kv-keys.ts'
import { isRevisionConflict } from './kv-records.ts'

/**
 * The task breakdown (任务分解表): per year and unit, targets for new registrations and share
 * volume. A unit is a region below the official's own or an institution (a village committee, a
 * school…); an institution unit belongs to the region of the official who set it. Durable in NATS
 * KV (bucket `tasks`, key `<year>.r<code>` or `<year>.i<institution id>`).
 */
export type Unit = { region_code: string } | { institution_id: string }

export interface Task {
  year: number
  unit: Unit
  name: string
  /** For institution units: the region of whoever set the target (who may see and change it). */
  owner_region: string | null
  core_members: number | null
  registration_target: number
  share_target: number
  updated_at: number
}

export interface TaskStore {
  /**
   * Stores a unit's targets. With `replace`, a stored task for the same unit is first handed to it (in
   * the same revision-checked write): it returns the record to store instead, or null to refuse
   * (TaskRefused, nothing changed).
   */
  put(t: Omit<Task, 'updated_at'>, replace?: (existing: Task) => Omit<Task, 'updated_at'> | null): Promise<Task>
  list(year: number): Promise<Task[]>
}

export class TaskRefused extends Error {}

export const unitKey = (u: Unit) => ('region_code' in u ? `r${u.region_code}` : `i${u.institution_id}`)

const enc = new TextEncoder()
const dec = new TextDecoder()

export function createTaskStore(kv: KV): TaskStore {
  return {
    async put(t, replace) {
      const key = `${t.year}.${unitKey(t.unit)}`
      for (let attempt = 0; attempt < 5; attempt++) {
        const e = await kv.get(key)
        const existing = e && e.operation === 'PUT' && e.value.length ? (JSON.parse(dec.decode(e.value)) as Task) : null
        const next = existing && replace ? replace(existing) : t
        if (!next) throw new TaskRefused('the unit’s targets belong to another region')
        const rec: Task = { ...next, updated_at: Date.now() }
        try {
          if (e) await kv.update(key, enc.encode(JSON.stringify(rec)), e.revision)
          else await kv.create(key, enc.encode(JSON.stringify(rec)))
          return rec
        } catch (err) {
          if (!isRevisionConflict(err)) throw err // changed in between: read again
        }
      }
      throw new Error(`task ${key} kept changing; retry`)
    },
    async list(year) {
      const keys = await listKeys(kv, `${year}.*`)
      const out: Task[] = []
      for (let i = 0; i < keys.length; i += 200) {
        const got = await Promise.all(keys.slice(i, i + 200).map((k) => kv.get(k)))
        for (const e of got) if (e && e.operation === 'PUT' && e.value.length) out.push(JSON.parse(dec.decode(e.value)) as Task)
      }
      return out.sort((a, b) => unitKey(a.unit).localeCompare(unitKey(b.unit)))
    },
  }
}
