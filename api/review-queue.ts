import { z } from '@hono/zod-openapi'
import { ApiError } from '../core/errors.ts'
import type { Principal } from './middleware/auth/index.ts'
import { mustCover } from './middleware/scope/index.ts'

/**
 * The filters every review queue (certifications, institution registrations) shares: the status,
 * the region subtree (by default the official's own, and never outside her scope), an institution
 * official's own institution (`institutionColumn` names it in the mirror table) and the kind.
 * Returns ClickHouse conditions and their parameters; each queue adds its own after them.
 */
export function reviewFilter(
  p: Principal,
  q: { status: string; region?: string; kind?: string; limit: number },
  institutionColumn: string,
): { where: string[]; params: Record<string, unknown> } {
  const where = ['status = {status:String}']
  const params: Record<string, unknown> = { status: q.status, limit: q.limit + 1 }
  let region = q.region
  if (p.kind === 'official' && 'region_code' in p.scope) region ??= p.scope.region_code
  if (region) {
    mustCover(p, { region_code: region })
    where.push('startsWith(region_code, {region:String})')
    params.region = region
  }
  if (p.kind === 'official' && 'institution_id' in p.scope) {
    where.push(`${institutionColumn} = {inst:String}`)
    params.inst = p.scope.institution_id
  }
  if (q.kind) {
    where.push('kind = {kind:String}')
    params.kind = q.kind
  }
  return { where, params }
}

export type ReviewAction = 'approve' | 'reject'

/** The body of a decision: a rejection needs a reason the applicant sees; an approval may carry a note. */
export const decisionBody = (action: ReviewAction) => ({
  required: action === 'reject',
  content: { 'application/json': { schema: z.object({ reason: action === 'reject' ? z.string().trim().min(1).max(200) : z.string().trim().max(200).default('') }) } },
})

/** Who decided, as stored on the record. */
export const reviewerOf = (p: Principal) => (p.kind === 'operator' ? (p.officialId ?? 'admin') : p.kind === 'official' ? p.officialId : 'unknown')

interface Reviewable {
  status: 'pending' | 'approved' | 'rejected'
  reason: string
  reviewed_at: number | null
  reviewer: string
}

/**
 * The decision as a revision-checked store update applies it: deciding again the same way changes
 * nothing (null), a record already decided the other way is a 409 with `decidedOtherwise` as its
 * message, a pending one takes the decision, its reason, time and reviewer.
 */
export function decide<T extends Reviewable>(x: T, action: ReviewAction, reason: string, p: Principal, decidedOtherwise: string): T | null {
  const status = action === 'approve' ? 'approved' : 'rejected'
  if (x.status === status) return null
  if (x.status !== 'pending') throw new ApiError(409, 'already_decided', decidedOtherwise)
  return { ...x, status, reason, reviewed_at: Date.now(), reviewer: reviewerOf(p) }
}
