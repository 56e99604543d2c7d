import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isoDay } from '../core/time.ts'
import { createOfficial, registerAccount } from '../test/accounts.ts'
import { share, startStack, type Stack } from '../test/stack.ts'

/** Seed 003: 插旗镇 (430623110) sets 2021-style targets for its units (villages as institutions). */
let s: Stack
const tok: Record<string, string> = {}
const YEAR = Number(isoDay(Date.now()).slice(0, 4))

beforeAll(async () => {
  s = await startStack({ SMS_SENDER: 'memory' })
  for (const [name, phone, scope] of [['town', '15600000001', '430623110'], ['county', '15600000002', '430623'], ['neighbour', '15600000003', '430624']] as const) {
    tok[name] = await createOfficial(s, { phone, name, scope: { region_code: scope } })
  }
  const key = await s.createAppKey()
  await s.importUsers([1, 2, 3].map((i) => ({ id: `tf${i}`, phone: `1370000100${i}`, real_name: `同福${i}`, region_code: '430623110', institution_id: 'tongfu', certified_at: Date.now() - 60_000 })))
  const facts = await s.factCount()
  const events = Array.from({ length: 50 }, (_, i) => share(`tf${(i % 3) + 1}`, Date.now() - 1000 - i))
  expect((await s.postEvents(key, events)).status).toBe(202)
  await s.waitForFacts(facts + 50)
})
afterAll(async () => s?.stop())

const csv = `序号,单位,单位代码,“科普中国”APP建议辖区骨干科普信息员人数/人,“科普中国”APP注册任务数（2021年新增人数）,全年传播量工作任务（新增分享文章次数）/次
1,机关、站所,jiguan,2,10,4400
2,同福村,tongfu,2,3,50
3,注北村,zhubei,2,45,4400
4,,bad,2,45,4400
5,插旗镇,430623110,2,45,4400
`

describe('task breakdown', () => {
  it('takes the attachment-1 CSV, reporting bad rows by line', async () => {
    const r = await s.call('POST', `/v1/tasks/${YEAR}:import`, { token: tok.town, type: 'text/csv', body: csv })
    expect(r.status).toBe(200)
    expect(r.json.saved).toBe(3)
    // Line 5: no name; line 6: her own town is not a unit below her.
    expect(r.json.errors.map((e: any) => [e.row, e.code])).toEqual([[5, 'invalid_row'], [6, 'outside_scope']])
  })

  it('serves progress per unit against the share of the year elapsed, and the units behind', async () => {
    const r = (await s.call('GET', `/v1/tasks/${YEAR}/progress`, { token: tok.town })).json
    expect(r.elapsed).toBeGreaterThan(0)
    const byName = Object.fromEntries(r.units.map((u: any) => [u.name, u]))
    expect(Object.keys(byName).sort()).toEqual(['同福村', '机关、站所', '注北村'].sort())
    expect(byName['同福村']).toMatchObject({ unit: { institution_id: 'tongfu' }, core_members: 2, registrations: { target: 3, done: 3, percent: 1, on_schedule: true }, shares: { target: 50, done: 50, percent: 1, on_schedule: true }, behind: false })
    expect(byName['注北村']).toMatchObject({ registrations: { target: 45, done: 0, percent: 0 }, shares: { target: 4400, done: 0 }, behind: true })
    const behind = (await s.call('GET', `/v1/tasks/${YEAR}/progress?behind=true`, { token: tok.town })).json.units.map((u: any) => u.name)
    expect(behind.sort()).toEqual(['机关、站所', '注北村'].sort())
  })

  it('keeps units within scope: the county sees its town’s units, the county next door does not', async () => {
    expect((await s.call('GET', `/v1/tasks/${YEAR}/progress`, { token: tok.county })).json.units).toHaveLength(3)
    expect((await s.call('GET', `/v1/tasks/${YEAR}/progress`, { token: tok.neighbour })).json.units).toHaveLength(0)
    const r = await s.call('PUT', `/v1/tasks/${YEAR}`, {
      token: tok.county,
      body: { units: [{ region_code: '430623110', name: '插旗镇', registration_target: 200, share_target: 30000 }, { region_code: '430624101', name: '东塘镇', registration_target: 1, share_target: 1 }] },
    })
    expect(r.json).toMatchObject({ saved: 1, errors: [{ row: 2, code: 'outside_scope' }] })
    const town = (await s.call('GET', `/v1/tasks/${YEAR}/progress`, { token: tok.county })).json.units.find((u: any) => u.unit.region_code === '430623110')
    expect(town).toMatchObject({ registrations: { target: 200, done: 3 }, shares: { target: 30000, done: 50 } })
    expect((await s.call('GET', `/v1/tasks/${YEAR}/progress`, { token: tok.town })).json.units).toHaveLength(4)
    expect((await s.call('PUT', `/v1/tasks/${YEAR}`, { token: await s.createAppKey(), body: { units: [] } })).status).toBe(403)
  })

  it('lets nobody outside the owning region replace a unit’s targets, and keeps the owner when the county edits them', async () => {
    const put = async (token: string, unit: Record<string, unknown>) => (await s.call('PUT', `/v1/tasks/${YEAR}`, { token, body: { units: [unit] } })).json
    const units = async (token: string) => (await s.call('GET', `/v1/tasks/${YEAR}/progress`, { token })).json.units as any[]
    const find = async (token: string, id: string) => (await units(token)).find((u) => u.unit.institution_id === id)
    // The county next door names 插旗镇's local unit code: refused; the town's targets stay, unseen by her.
    expect(await put(tok.neighbour, { institution_id: 'tongfu', name: '劫持', registration_target: 0, share_target: 0 })).toEqual({ saved: 0, errors: [{ row: 1, code: 'outside_scope', message: expect.any(String) }] })
    expect(await units(tok.neighbour)).toEqual([])
    expect(await find(tok.town, 'tongfu')).toMatchObject({ name: '同福村', registrations: { target: 3, done: 3 } })
    // The county edits the town's unit: the town still sees it, with the new targets.
    expect((await put(tok.county, { institution_id: 'tongfu', name: '同福村', registration_target: 4, share_target: 60 })).saved).toBe(1)
    expect(await find(tok.town, 'tongfu')).toMatchObject({ registrations: { target: 4, done: 3 }, shares: { target: 60, done: 50 } })

    // A registered institution in 插旗镇: the neighbour may not set its targets; the county may, and
    // the institution's town sees them.
    const admin = await registerAccount(s, '13700001001')
    const inst = await s.call('POST', '/v1/institutions', { token: admin.token, body: { name: '插旗镇中学', region_code: '430623110', kind: '学校', licence_image: 'licences/school.jpg' } })
    expect(inst.status, inst.text).toBe(201)
    expect((await s.call('POST', `/v1/institutions/${inst.json.id}/approve`, { body: {} })).status).toBe(200)
    expect((await put(tok.neighbour, { institution_id: inst.json.id, name: '邻县设', registration_target: 1, share_target: 1 })).errors).toEqual([{ row: 1, code: 'outside_scope', message: expect.any(String) }])
    expect((await put(tok.county, { institution_id: inst.json.id, name: '插旗镇中学', registration_target: 10, share_target: 100 })).saved).toBe(1)
    expect(await find(tok.town, inst.json.id)).toMatchObject({ name: '插旗镇中学', registrations: { target: 10 } })
    expect(await units(tok.neighbour)).toEqual([])
  })
})
