import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createOfficial } from '../test/accounts.ts'
import { startStack, type Stack } from '../test/stack.ts'

let s: Stack
let county: string
beforeAll(async () => {
  s = await startStack()
  county = await createOfficial(s, { phone: '15100000001', name: '华容县科协', scope: { region_code: '430623' } })
})
afterAll(async () => s?.stop())

describe('populations', () => {
  it('defaults provinces to the 2020 census', async () => {
    expect((await s.call('GET', '/v1/regions/43/population?year=2021')).json).toEqual({ region_code: '43', year: 2020, population: 66444864, source: 'census-2020' })
    expect((await s.call('GET', '/v1/regions/43/population?year=2019')).status).toBe(404)
  })
  it('sets a population by year within scope, and a KPI year uses the latest year at or before it', async () => {
    expect((await s.call('PUT', '/v1/regions/430623/population', { token: county, body: { population: 720000, year: 2020 } })).status).toBe(200)
    expect((await s.call('PUT', '/v1/regions/430623/population', { token: county, body: { population: 700000, year: 2023 } })).status).toBe(200)
    const at = async (y: number) => (await s.call('GET', `/v1/regions/430623/population?year=${y}`, { token: county })).json
    expect(await at(2021)).toMatchObject({ year: 2020, population: 720000 })
    expect(await at(2025)).toMatchObject({ year: 2023, population: 700000 })
    expect((await s.call('PUT', '/v1/regions/430624/population', { token: county, body: { population: 1, year: 2020 } })).status).toBe(403)
    expect((await s.call('PUT', '/v1/regions/430623/population', { token: county, body: { population: -1, year: 2020 } })).status).toBe(400)
    expect((await s.call('PUT', '/v1/regions/999999/population', { body: { population: 1, year: 2020 } })).status).toBe(404)
  })
  it('imports CSV, reporting bad rows by line and keeping the good ones', async () => {
    const r = await s.call('POST', '/v1/populations:import', {
      token: county,
      type: 'text/csv',
      body: 'region_code,population,year\n430623110,45000,2020\n430623101,abc,2020\n430624101,1000,2020\n999999999,5,2020\n430623102,38000,2022\n',
    })
    expect(r.status).toBe(200)
    expect(r.json.imported).toBe(2)
    expect(r.json.errors.map((e: any) => [e.row, e.code])).toEqual([[3, 'invalid_row'], [4, 'outside_scope'], [5, 'unknown_region']])
    expect((await s.call('GET', '/v1/regions/430623110/population?year=2024', { token: county })).json.population).toBe(45000)
    // Without its header line the file is refused, not read as a header and zero rows.
    const headless = await s.call('POST', '/v1/populations:import', { token: county, type: 'text/csv', body: '430623110,46000,2021\n' })
    expect([headless.status, headless.json.error.code]).toEqual([400, 'invalid_csv'])
    expect((await s.call('GET', '/v1/regions/430623110/population?year=2024', { token: county })).json.population).toBe(45000)
  })
})
