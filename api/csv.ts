import type { RegionTree } from '../core/regions.ts'

/**
 * CSV downloads for spreadsheets: UTF-8 with a BOM (so Excel reads Chinese), CRLF lines, cells
 * quoted when needed, and a leading = + - @ defused (it would be a formula in a spreadsheet).
 */
export function csvCell(v: unknown): string {
  const t = v === null || v === undefined ? '' : String(v)
  const safe = /^[=+\-@]/.test(t) ? `'${t}` : t
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe
}

export function toCsv(rows: unknown[][]): string {
  return '\uFEFF' + rows.map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n'
}

/** 430623110 → 湖南省岳阳市华容县插旗镇 */
export function regionPath(tree: RegionTree, code: string): string {
  return [...tree.lineage(code)].reverse().map((r) => r.name).join('')
}

/**
 * The 单位 column of an export: a registered institution's name; an id no institution holds (a unit
 * code carried over on a roster) as it is.
 */
export async function unitNames(institutions: { get(id: string): Promise<{ name: string } | null> }, ids: Iterable<string | null>): Promise<(id: string | null) => string> {
  const names = new Map<string, string>()
  await Promise.all([...new Set([...ids].filter((x): x is string => !!x))].map(async (id) => names.set(id, (await institutions.get(id))?.name ?? id)))
  return (id) => (id ? (names.get(id) ?? id) : '')
}
