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
