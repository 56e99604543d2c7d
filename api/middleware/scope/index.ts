import { forbidden } from '../../../core/errors.ts'
import type { Principal } from '../auth/index.ts'

/**
 * The one scope check every route uses. A target is what a request shows or changes: a region
 * (any level), an institution, or the whole country. Operators cover everything; an official
 * covers her region subtree or her one institution; apps only read (see `canRead`).
 */
export type Target = { region_code: string } | { institution_id: string } | { national: true }

/**
 * An institution as a target: with its region when it is a registered institution, so that an
 * official of a region covering it covers it too (her county's school); an unknown id has none.
 */
export async function institutionTarget(id: string, lookup: { get(id: string): Promise<{ region_code: string } | null> }): Promise<Target> {
  const inst = await lookup.get(id)
  return inst ? { institution_id: id, region_code: inst.region_code } : { institution_id: id }
}

export function covers(p: Principal, t: Target): boolean {
  if (p.kind === 'operator') return true
  if (p.kind !== 'official') return false
  const s = p.scope
  if ('region_code' in s) return 'region_code' in t && t.region_code.startsWith(s.region_code)
  if ('institution_id' in s) return 'institution_id' in t && t.institution_id === s.institution_id
  return false
}

/** Throws 403 (naming nothing of the target) unless the principal covers it. */
export function mustCover(p: Principal, t: Target): void {
  if (!covers(p, t)) throw forbidden('outside your scope')
}

/** Reads of public boards: apps and communicators (the app's own boards) may read any board; officials only boards inside their scope. */
export function mustRead(p: Principal, t: Target): void {
  if (p.kind === 'app' || p.kind === 'communicator') return
  mustCover(p, t)
}

/** Whether the principal covers a communicator: by her region, or by her institution. */
export function coversUser(p: Principal, u: { region_code: string; institution_id: string | null }): boolean {
  return covers(p, { region_code: u.region_code }) || (!!u.institution_id && covers(p, { institution_id: u.institution_id }))
}
