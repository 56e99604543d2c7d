import { createHash, randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { createKvRecords, isRevisionConflict } from './kv-records.ts'

/**
 * Institutions (机构入驻, seeds 001/004: a certified 科普员 registers her unit — name, address, kind,
 * a photo of its business licence — and it is reviewed by hand), durable in NATS KV (bucket
 * `institutions`). `i.<id>` holds the record; `n.<region>.<hash of the normalised name>` the id of the
 * pending or approved institution holding that name in that region, taken with `create` so that two
 * concurrent registrations of one name in one region make one (the other gets 409). A rejection gives
 * the name back; a resubmission takes it again. A claim left behind by a crash (its holder missing,
 * rejected, or renamed) is taken over with a revision-checked update. Record changes are
 * revision-checked too, so of two reviewers deciding at once exactly one wins.
 *
 * `admins` are communicator (user) ids: the applicant from the approval on, and whoever an admin adds.
 */
export type InstStatus = 'pending' | 'approved' | 'rejected'

/** Kinds of unit the seeds name as 科普中国e站 / 机构 hosts (001 第六条, 004 "区科协、街道、社区、企业、学会"). */
export const INSTITUTION_KINDS = ['科协', '学会', '乡镇街道', '社区', '村委会', '学校', '医院', '企业', '农村专业技术协会', '科普教育基地', '新时代文明实践中心', '党群服务中心', '其他'] as const

export interface Institution {
  id: string
  name: string
  region_code: string
  kind: string
  licence_image: string
  status: InstStatus
  reason: string
  applicant_account: string
  applicant_user: string
  admins: string[]
  created_at: number
  /** When it was last (re)submitted for review. */
  submitted_at: number
  reviewed_at: number | null
  reviewer: string
  updated_at: number
}

export class InstConflict extends Error {
  constructor(public code: 'name_taken' | 'conflict' | 'missing', message: string) {
    super(message)
  }
}

export type InstInput = Pick<Institution, 'name' | 'region_code' | 'kind' | 'licence_image' | 'applicant_account' | 'applicant_user'>

export interface InstitutionStore {
  /** A new pending registration; InstConflict('name_taken') when the name is held in that region. */
  create(input: InstInput): Promise<Institution>
  get(id: string): Promise<Institution | null>
  /** Revision-checked change; `change` may throw to refuse or return null for no change. */
  update(id: string, change: (i: Institution) => Institution | null): Promise<Institution>
  /** Takes (name, region) for the institution; InstConflict('name_taken') when another holds it. */
  claimName(id: string, name: string, region: string): Promise<void>
  /** Gives (name, region) back if the institution holds it. */
  releaseName(id: string, name: string, region: string): Promise<void>
}

const enc = new TextEncoder()
const dec = new TextDecoder()
export const INST_ID = /^[A-Za-z0-9_-]{1,64}$/

/** Case, width and spacing do not make a different name: ＡＢＣ 学校 = abc学校. */
export function normaliseName(name: string): string {
  return name.normalize('NFKC').toLowerCase().replace(/[\s\u3000·・.。,，()（）\-_]+/g, '')
}

export const nameKey = (name: string, region: string) => `n.${region}.${createHash('sha256').update(normaliseName(name)).digest('hex').slice(0, 40)}`

export function createInstitutionStore(kv: KV): InstitutionStore {
  const records = createKvRecords<Institution>(
    kv,
    'i',
    { missing: () => new InstConflict('missing', 'no such institution'), conflict: () => new InstConflict('conflict', 'institution was changed concurrently; retry') },
    INST_ID,
  )
  async function claimName(id: string, name: string, region: string) {
    const key = nameKey(name, region)
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await kv.create(key, enc.encode(id))
        return
      } catch {
        /* held: by whom? */
      }
      const e = await kv.get(key)
      if (!e || e.operation !== 'PUT' || !e.value.length) {
        // Deleted in between (a tombstone): create again (create accepts a deleted key).
        continue
      }
      const owner = dec.decode(e.value)
      if (owner === id) return
      const holder = await records.get(owner)
      // A holder whose record names something else has been renamed (or is being renamed: a
      // resubmission claims the new name just before it writes the record, so give it a minute).
      const stale = !holder || holder.status === 'rejected' || (nameKey(holder.name, holder.region_code) !== key && Date.now() - holder.updated_at > 60_000)
      if (!stale) throw new InstConflict('name_taken', 'an institution of that name is already registered in that region')
      try {
        await kv.update(key, enc.encode(id), e.revision)
        return
      } catch (err) {
        if (!isRevisionConflict(err)) throw err
      }
    }
    throw new InstConflict('conflict', 'the name was claimed concurrently; retry')
  }
  async function releaseName(id: string, name: string, region: string) {
    const key = nameKey(name, region)
    const e = await kv.get(key)
    if (!e || e.operation !== 'PUT' || dec.decode(e.value) !== id) return
    try {
      await kv.delete(key, { previousSeq: e.revision })
    } catch {
      /* changed in between: no longer ours */
    }
  }
  return {
    async create(input) {
      const now = Date.now()
      const inst: Institution = {
        ...input, id: 'inst_' + randomBytes(8).toString('hex'), status: 'pending', reason: '', admins: [],
        created_at: now, submitted_at: now, reviewed_at: null, reviewer: '', updated_at: now,
      }
      // The record first, then the name: a crash in between leaves an unreachable record, never a
      // name held by nothing.
      await records.create(inst.id, inst)
      try {
        await claimName(inst.id, inst.name, inst.region_code)
      } catch (e) {
        await kv.delete(`i.${inst.id}`).catch(() => {})
        throw e
      }
      return inst
    },
    get: records.get,
    async update(id, change) {
      return (await records.update(id, change)).after
    },
    claimName,
    releaseName,
  }
}
