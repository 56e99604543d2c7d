import { randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { createKvRecords } from './kv-records.ts'

/**
 * 科普员 certification applications, durable in NATS KV (bucket `certifications`, `c.<id>`). One
 * application per submission: a resubmission after a rejection is a new application, the rejected
 * one stays as it was (its reason too). Status changes are revision-checked, so of two reviewers
 * deciding at once exactly one wins. The review queue is read from the ClickHouse mirror
 * `certifications` (filters by status, region, kind, age), written after every change.
 */
export type CertStatus = 'pending' | 'approved' | 'rejected'

export interface Certification {
  id: string
  account_id: string
  user_id: string
  phone: string
  real_name: string
  region_code: string
  unit_name: string
  kind: string
  institution_id: string
  status: CertStatus
  reason: string
  submitted_at: number
  reviewed_at: number | null
  reviewer: string
  updated_at: number
}

export class CertConflict extends Error {}

export interface CertificationStore {
  create(c: Omit<Certification, 'id' | 'status' | 'reason' | 'reviewed_at' | 'reviewer' | 'updated_at' | 'submitted_at'>): Promise<Certification>
  get(id: string): Promise<Certification | null>
  /** Revision-checked change; `change` may throw to refuse. */
  update(id: string, change: (c: Certification) => Certification | null): Promise<Certification>
}

export function createCertificationStore(kv: KV): CertificationStore {
  const records = createKvRecords<Certification>(kv, 'c', {
    missing: () => new CertConflict('no such certification'),
    conflict: () => new CertConflict('certification was changed concurrently; retry'),
  })
  return {
    async create(input) {
      const now = Date.now()
      const c: Certification = { ...input, id: 'cert_' + randomBytes(8).toString('hex'), status: 'pending', reason: '', submitted_at: now, reviewed_at: null, reviewer: '', updated_at: now }
      await records.create(c.id, c)
      return c
    },
    get: records.get,
    async update(id, change) {
      return (await records.update(id, change)).after
    },
  }
}
