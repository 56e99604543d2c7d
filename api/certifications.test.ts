import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isoDay } from '../core/time.ts'
import { createOfficial, login, registerAccount } from '../test/accounts.ts'
import { share, startStack, type Stack } from '../test/stack.ts'

/**
 * 科普员 certification review end to end (issue 5, part 2): submit, reject with a reason, resubmit,
 * approve; the approval shows in /v1/kpis certified counts and the communicator counts on boards from
 * then on; the queue by scope; administrator kinds grant an official's scope.
 */
let s: Stack
const tok: Record<string, string> = {}
const TOWN = '430623110'
const today = isoDay(Date.now())

beforeAll(async () => {
  s = await startStack({ SMS_SENDER: 'memory' })
  tok.app = await s.createAppKey()
  for (const [name, phone, region] of [['county', '15100000001', '430623'], ['town', '15100000002', TOWN], ['neighbour', '15100000003', '430624']]) {
    tok[name] = await createOfficial(s, { phone, name, scope: { region_code: region } })
  }
  // Someone already certified in the town, so the count starts above zero.
  await s.importUsers([{ id: 'old', phone: '13300000001', real_name: '老员', region_code: TOWN, certified_at: '2020-01-01' }])
})
afterAll(async () => s?.stop())

const certified = async (region: string) => {
  const r = await s.call('GET', `/v1/kpis?region=${region}&from=${today}&to=${today}`)
  expect(r.status, r.text).toBe(200)
  return { certified: r.json.certified as number, fresh: r.json.new_registrations as number }
}
const APPLY = { real_name: '王五', region_code: TOWN, unit_name: '插旗镇科协', kind: '个人用户' }

describe('review flow', () => {
  it('submit, reject with a reason, resubmit, approve: certified counts and boards follow', async () => {
    const a = await registerAccount(s, '13300000010', '王五')
    const before = { town: await certified(TOWN), county: await certified('430623') }
    expect((await s.call('GET', '/v1/me/certification', { token: a.token })).status).toBe(404)
    expect((await s.call('POST', '/v1/me/certification', { token: a.token, body: { ...APPLY, region_code: '430623' } })).status).toBe(400) // not a town
    expect((await s.call('POST', '/v1/me/certification', { token: a.token, body: { ...APPLY, kind: '村级' } })).status).toBe(400)
    // Only an approved institution: a made-up one would show on boards, rankings and exports.
    const ghost = await s.call('POST', '/v1/me/certification', { token: a.token, body: { ...APPLY, institution_id: 'ghost_inst' } })
    expect([ghost.status, ghost.json.error.code]).toEqual([400, 'unknown_institution'])
    expect((await s.call('GET', '/v1/me/certification', { token: a.token })).status).toBe(404)
    const first = await s.call('POST', '/v1/me/certification', { token: a.token, body: APPLY })
    expect(first.status, first.text).toBe(201)
    expect(first.json).toMatchObject({ status: 'pending', phone: '13300000010', real_name: '王五' })
    expect((await s.call('POST', '/v1/me/certification', { token: a.token, body: APPLY })).status).toBe(409)

    // The queue: the county official and the town official see it, the neighbour does not.
    const q = await s.call('GET', '/v1/certifications', { token: tok.county })
    expect(q.json.entries.map((e: any) => e.id)).toEqual([first.json.id])
    expect(q.json.entries[0]).toMatchObject({ real_name: '王五', phone: '133****0010' })
    expect((await s.call('GET', '/v1/certifications', { token: tok.admin ?? undefined })).json.entries[0].phone).toBe('13300000010')
    expect((await s.call('GET', '/v1/certifications', { token: tok.neighbour })).json.entries).toEqual([])
    expect((await s.call('GET', '/v1/certifications?region=430623', { token: tok.neighbour })).status).toBe(403)
    expect((await s.call('GET', '/v1/certifications', { token: a.token })).status).toBe(403)
    expect((await s.call('GET', '/v1/certifications?older_than=1h', { token: tok.county })).json.entries).toEqual([])
    expect((await s.call('GET', `/v1/certifications?older_than=${Date.now() + 1000}&kind=个人用户`, { token: tok.town })).json.entries).toHaveLength(1)
    expect((await s.call('GET', `/v1/certifications?kind=区县级`, { token: tok.town })).json.entries).toHaveLength(0)
    expect((await s.call('GET', '/v1/certifications?after=junk', { token: tok.town })).json.error.code).toBe('invalid_cursor')

    // The neighbour may not decide; the county rejects with a reason.
    expect((await s.call('POST', `/v1/certifications/${first.json.id}/approve`, { token: tok.neighbour, body: {} })).status).toBe(403)
    expect((await s.call('POST', `/v1/certifications/${first.json.id}/reject`, { token: tok.county, body: {} })).status).toBe(400)
    const rej = await s.call('POST', `/v1/certifications/${first.json.id}/reject`, { token: tok.county, body: { reason: '单位名称与所属机构不符' } })
    expect(rej.status).toBe(200)
    expect((await s.call('POST', `/v1/certifications/${first.json.id}/approve`, { token: tok.county, body: {} })).status).toBe(409)
    const seen = await s.call('GET', '/v1/me/certification', { token: a.token })
    expect(seen.json).toMatchObject({ status: 'rejected', reason: '单位名称与所属机构不符' })
    expect((await s.call('GET', '/v1/me', { token: a.token })).json).toMatchObject({ certified: false, certification: { status: 'rejected' } })

    // An event before the approval does not count.
    const facts = await s.factCount()
    await s.postEvents(tok.app, [share(a.user_id, Date.now())])
    await s.waitForFacts(facts + 1)
    expect(await s.factCount(`user_id = '${a.user_id}' AND decision = 'unknown_user'`)).toBe(1)

    const second = await s.call('POST', '/v1/me/certification', { token: a.token, body: { ...APPLY, unit_name: '插旗镇中心学校' } })
    expect(second.status).toBe(201)
    expect(second.json.id).not.toBe(first.json.id)
    expect((await certified(TOWN)).certified).toBe(before.town.certified)
    const ok = await s.call('POST', `/v1/certifications/${second.json.id}/approve`, { token: tok.town, body: {} })
    expect(ok.status, ok.text).toBe(200)
    expect(ok.json.status).toBe('approved')
    // Approving again changes nothing.
    expect((await s.call('POST', `/v1/certifications/${second.json.id}/approve`, { token: tok.county, body: {} })).status).toBe(200)

    expect(await certified(TOWN)).toEqual({ certified: before.town.certified + 1, fresh: before.town.fresh + 1 })
    expect((await certified('430623')).certified).toBe(before.county.certified + 1)
    expect((await certified('430624')).certified).toBe(0)
    expect((await s.call('GET', '/v1/me', { token: a.token })).json).toMatchObject({ certified: true, certification: { id: second.json.id, status: 'approved' } })
    expect((await s.call('GET', '/v1/certifications?status=approved', { token: tok.county })).json.entries.map((e: any) => e.id)).toEqual([second.json.id])

    // From now on her shares count and she is on the town's board.
    await s.postEvents(tok.app, [share(a.user_id, Date.now() + 1000)])
    await s.waitForFacts(facts + 2)
    const board = await s.call('GET', `/v1/leaderboards?metric=shares&period=day&region=${TOWN}`, { token: tok.town })
    expect(board.json.entries).toEqual([expect.objectContaining({ user_id: a.user_id, score: 1, name: '王五' })])
    // A communicator reads the board with names masked.
    const pub = await s.call('GET', `/v1/leaderboards?metric=shares&period=day&region=${TOWN}`, { token: a.token })
    expect(pub.json.entries[0].name).toBe('王*')
  })

  it('an account whose phone is on an imported roster counts as that communicator', async () => {
    const a = await registerAccount(s, '13300000001')
    expect(a.user_id).toBe('old')
    expect((await s.call('GET', '/v1/me', { token: a.token })).json.certified).toBe(true)
  })
})

describe('administrator kinds', () => {
  it('a county administrator gets the county scope; only reviewers covering it may approve', async () => {
    const b = await registerAccount(s, '13300000020', '县管')
    const app = await s.call('POST', '/v1/me/certification', { token: b.token, body: { ...APPLY, real_name: '赵六', kind: '区县级' } })
    expect(app.status).toBe(201)
    // The town official covers her town, not the county the approval would grant.
    expect((await s.call('POST', `/v1/certifications/${app.json.id}/approve`, { token: tok.town, body: {} })).status).toBe(403)
    expect((await s.call('POST', `/v1/certifications/${app.json.id}/approve`, { token: tok.county, body: {} })).status).toBe(200)
    const l = await login(s, '13300000020')
    expect(l).toMatchObject({ role: 'administrator', scope: { region_code: '430623' } })
    expect((await s.call('GET', '/v1/kpis?region=430623', { token: l.token })).status).toBe(200)
    expect((await s.call('GET', '/v1/kpis?region=430624', { token: l.token })).status).toBe(403)
    expect((await s.call('GET', '/v1/me', { token: l.token })).json.scope).toEqual({ region_code: '430623' })
    // She reviews in her county now, but not her own application.
    expect((await s.call('GET', '/v1/certifications?status=approved', { token: l.token })).status).toBe(200)
    expect((await s.call('POST', `/v1/certifications/${app.json.id}/approve`, { token: l.token, body: {} })).status).toBe(403)
  })

  it('中国科协 is approved by operators only and grants the national scope', async () => {
    const c = await registerAccount(s, '13300000030', '国管')
    const app = await s.call('POST', '/v1/me/certification', { token: c.token, body: { ...APPLY, real_name: '钱七', kind: '中国科协' } })
    expect((await s.call('POST', `/v1/certifications/${app.json.id}/approve`, { token: tok.county, body: {} })).status).toBe(403)
    expect((await s.call('POST', `/v1/certifications/${app.json.id}/approve`, { body: {} })).status).toBe(200)
    const l = await login(s, '13300000030')
    expect(l.scope).toEqual({ national: true })
    expect((await s.call('GET', '/v1/kpis?region=430624', { token: l.token })).status).toBe(200)
  })

  it('an unknown application is 403 to officials and 404 to operators', async () => {
    expect((await s.call('POST', '/v1/certifications/cert_nope/approve', { token: tok.county, body: {} })).status).toBe(403)
    expect((await s.call('POST', '/v1/certifications/cert_nope/approve', { body: {} })).status).toBe(404)
  })
})
