import { readFileSync } from 'node:fs'
import type { KV } from '@nats-io/kv'
import { listKeys } from './kv-keys.ts'

/**
 * Resident population by region and year, durable in NATS KV (bucket `populations`, key
 * `<region code>.<year>`). Provinces default to the 2020 census (core/data/census-2020-provinces.csv,
 * copied from the census communiqué with its source line). A KPI for a period uses the latest
 * year ≤ the period's year.
 */
export interface Population {
  region_code: string
  year: number
  population: number
  source: 'census-2020' | 'official'
  updated_at: number
}

export interface PopulationStore {
  put(p: Omit<Population, 'updated_at' | 'source'>): Promise<Population>
  /** The population of a region for a year: the latest year ≤ `year` on record, or null. */
  of(regionCode: string, year: number): Promise<Population | null>
}

export function loadCensus(): Map<string, number> {
  const text = readFileSync(new URL('../data/census-2020-provinces.csv', import.meta.url), 'utf8')
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = /^(\d{2}),[^,]*,(\d+)\s*$/.exec(line)
    if (m) out.set(m[1], Number(m[2]))
  }
  return out
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export function createPopulationStore(kv: KV): PopulationStore {
  const census = loadCensus()
  return {
    async put(p) {
      const rec: Population = { ...p, source: 'official', updated_at: Date.now() }
      await kv.put(`${p.region_code}.${p.year}`, enc.encode(JSON.stringify(rec)))
      return rec
    },
    async of(code, year) {
      let best: Population | null = null
      for (const k of await listKeys(kv, `${code}.*`)) {
        const y = Number(k.split('.')[1])
        if (y > year || (best && best.year >= y)) continue
        const e = await kv.get(k)
        if (e && e.operation === 'PUT' && e.value.length) best = JSON.parse(dec.decode(e.value)) as Population
      }
      if (best) return best
      const c = census.get(code)
      return c !== undefined && year >= 2020 ? { region_code: code, year: 2020, population: c, source: 'census-2020', updated_at: 0 } : null
    },
  }
}
