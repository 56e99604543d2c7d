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
