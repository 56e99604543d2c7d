import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isoDay } from '../core/time.ts'
import { createOfficial, registerAccount } from '../test/accounts.ts'
import { bodyWithoutRequestId, share, startStack, type Stack } from '../test/stack.ts'

/**
 * Institutions (机构入驻, issue 5 part 3) end to end: a certified communicator registers one; review
 * with a reason, resubmission, approval (she becomes its admin); one per name and region; search and
 * join; members with their share volume, the institution's KPIs and its place in the county's
 * institution ranking; nobody else sees its members.
 */
let s: Stack
const tok: Record<string, string> = {}
const acct: Record<string, { id: string; user_id: string; token: string }> = {}
const TOWN = '430623110'
const today = isoDay(Date.now())

beforeAll(async () => {
  s = await startStack({ SMS_SENDER: 'memory' })
  tok.app = await s.createAppKey()
  for (const [name, phone, region] of [['county', '15200000001', '430623'], ['town', '15200000002', TOWN], ['neighbour', '15200000003', '430624']]) {
    tok[name] = await createOfficial(s, { phone, name, scope: { region_code: region } })
  }
  // Certified communicators (on a roster) with app accounts, and one account not certified.
  await s.importUsers([
    { id: 'boss', phone: '13400000001', real_name: '张校长', region_code: TOWN, certified_at: '2020-01-01' },
    { id: 'm1', phone: '13400000002', real_name: '李老师', region_code: TOWN, certified_at: '2020-01-01' },
    { id: 'm2', phone: '13400000003', real_name: '王老师', region_code: TOWN, certified_at: '2020-01-01' },
    { id: 'far', phone: '13400000004', real_name: '赵六', region_code: '430624101', certified_at: '2020-01-01' },
  ])
  for (const [name, phone] of [['boss', '13400000001'], ['m1', '13400000002'], ['m2', '13400000003'], ['far', '13400000004'], ['newbie', '13400000009']]) {
    acct[name] = await registerAccount(s, phone)
  }
  expect(acct.boss.user_id).toBe('boss')
})
afterAll(async () => s?.stop())

const SCHOOL = { name: '插旗镇中心学校', region_code: TOWN, kind: '学校', licence_image: 'licences/2026/boss-1.jpg' }
const kpi = async (region: string) => {
  const r = await s.call('GET', `/v1/kpis?region=${region}&from=${today}&to=${today}`)
  expect(r.status, r.text).toBe(200)
  return r.json as { certified: number; shares: number }
}
let instId = ''

describe('registration and review', () => {
  it('register → reject with a reason → resubmit → approve; the applicant sees each status', async () => {
    const boss = acct.boss.token
    expect((await s.call('POST', '/v1/institutions', { token: acct.newbie.token, body: SCHOOL })).status).toBe(403) // not certified
    expect((await s.call('POST', '/v1/institutions', { body: SCHOOL })).status).toBe(403) // the admin token has no account
    expect((await s.call('POST', '/v1/institutions', { token: tok.app, body: SCHOOL })).status).toBe(403)
    for (const bad of [{ region_code: '430623999' }, { kind: '村级' }, { licence_image: '../etc/passwd' }, { licence_image: 'javascript:alert(1)' }, { name: '' }, { name: '校'.repeat(65) }]) {
      const r = await s.call('POST', '/v1/institutions', { token: boss, body: { ...SCHOOL, ...bad } })
      expect(r.status, JSON.stringify(bad)).toBe(400)
    }
    const reg = await s.call('POST', '/v1/institutions', { token: boss, body: SCHOOL })
    expect(reg.status, reg.text).toBe(201)
    expect(reg.json).toMatchObject({ status: 'pending', name: '插旗镇中心学校', region_name: expect.any(String), kind: '学校', licence_image: SCHOOL.licence_image, admins: [] })
    instId = reg.json.id
    // The same name in the same region (spacing and width aside) is taken; next door it is not.
    expect((await s.call('POST', '/v1/institutions', { token: acct.m1.token, body: { ...SCHOOL, name: ' 插旗镇 中心学校 ' } })).status).toBe(409)
    const elsewhere = await s.call('POST', '/v1/institutions', { token: acct.far.token, body: { ...SCHOOL, region_code: '430624101', licence_image: 'https://oss.example.cn/l/far.png' } })
    expect(elsewhere.status, elsewhere.text).toBe(201)

    expect((await s.call('GET', `/v1/institutions/${instId}`, { token: boss })).json.status).toBe('pending')
    expect((await s.call('GET', '/v1/me/institutions', { token: boss })).json.entries.map((e: any) => e.id)).toEqual([instId])

    // The queue: the county and the town see it; the neighbour sees only hers, and cannot review this one.
    expect((await s.call('GET', '/v1/institutions', { token: tok.county })).json.entries.map((e: any) => e.id)).toEqual([instId])
    expect((await s.call('GET', '/v1/institutions?kind=学校&q=中心', { token: tok.town })).json.entries.map((e: any) => e.id)).toEqual([instId])
    expect((await s.call('GET', '/v1/institutions?kind=医院', { token: tok.town })).json.entries).toEqual([])
    expect((await s.call('GET', '/v1/institutions', { token: tok.neighbour })).json.entries.map((e: any) => e.id)).toEqual([elsewhere.json.id])
    expect((await s.call('GET', '/v1/institutions', {})).json.entries).toHaveLength(2)
    const paged = await s.call('GET', '/v1/institutions?limit=1', {})
    expect(paged.json.entries).toHaveLength(1)
    const rest = await s.call('GET', `/v1/institutions?limit=1&after=${paged.json.next}`, {})
    expect(rest.json.entries).toHaveLength(1)
    expect(rest.json.entries[0].id).not.toBe(paged.json.entries[0].id)
    expect(rest.json.next).toBeNull()
    for (const [m, path, body] of [
      ['GET', '/v1/institutions?region=430623', undefined],
      ['GET', `/v1/institutions/${instId}`, undefined],
      ['POST', `/v1/institutions/${instId}/approve`, {}],
      ['POST', `/v1/institutions/${instId}/reject`, { reason: 'x' }],
    ] as const) {
      const r = await s.call(m, path, { token: tok.neighbour, body })
      expect(r.status, path).toBe(403)
      expect(bodyWithoutRequestId(r)).not.toMatch(/插旗|430623|inst_/)
    }
    expect((await s.call('POST', `/v1/institutions/${instId}/approve`, { token: boss, body: {} })).status).toBe(403)
    // A communicator who is not the applicant does not see a pending registration.
    expect((await s.call('GET', `/v1/institutions/${instId}`, { token: acct.m1.token })).status).toBe(403)

    expect((await s.call('POST', `/v1/institutions/${instId}/reject`, { token: tok.county, body: {} })).status).toBe(400)
    const rej = await s.call('POST', `/v1/institutions/${instId}/reject`, { token: tok.county, body: { reason: '营业执照照片不清晰' } })
    expect(rej.status, rej.text).toBe(200)
    expect((await s.call('POST', `/v1/institutions/${instId}/approve`, { token: tok.county, body: {} })).status).toBe(409)
    expect((await s.call('GET', `/v1/institutions/${instId}`, { token: boss })).json).toMatchObject({ status: 'rejected', reason: '营业执照照片不清晰' })
    expect((await s.call('GET', '/v1/me/institutions', { token: boss })).json.entries[0]).toMatchObject({ status: 'rejected', reason: '营业执照照片不清晰' })
    expect((await s.call('GET', '/v1/institutions', { token: tok.county })).json.entries).toEqual([])

    // Only the applicant resubmits.
    expect((await s.call('PATCH', `/v1/institutions/${instId}`, { token: acct.m1.token, body: { licence_image: 'licences/x.jpg' } })).status).toBe(403)
    const again = await s.call('PATCH', `/v1/institutions/${instId}`, { token: boss, body: { licence_image: 'licences/2026/boss-2.jpg' } })
    expect(again.status, again.text).toBe(200)
    expect(again.json).toMatchObject({ status: 'pending', reason: '', licence_image: 'licences/2026/boss-2.jpg' })
    expect((await s.call('GET', '/v1/institutions', { token: tok.county })).json.entries.map((e: any) => e.id)).toEqual([instId])
    // Held again: a second registration of the name is refused.
    expect((await s.call('POST', '/v1/institutions', { token: acct.m1.token, body: SCHOOL })).status).toBe(409)

    // A certification may name it only once it is approved.
    const apply = { real_name: '新人', region_code: TOWN, unit_name: '插旗镇中心学校', kind: '个人用户', institution_id: instId }
    expect((await s.call('POST', '/v1/me/certification', { token: acct.newbie.token, body: apply })).json.error.code).toBe('unknown_institution')

    const ok = await s.call('POST', `/v1/institutions/${instId}/approve`, { token: tok.town, body: {} })
    expect(ok.status, ok.text).toBe(200)
    const applied = await s.call('POST', '/v1/me/certification', { token: acct.newbie.token, body: apply })
    expect([applied.status, applied.json.institution_id]).toEqual([201, instId])
    expect(ok.json).toMatchObject({ status: 'approved', admins: ['boss'] })
    expect((await s.call('POST', `/v1/institutions/${instId}/approve`, { token: tok.county, body: {} })).status).toBe(200)
    expect((await s.call('GET', `/v1/institutions/${instId}`, { token: boss })).json).toMatchObject({ status: 'approved', admins: ['boss'] })
    expect((await s.call('PATCH', `/v1/institutions/${instId}`, { token: boss, body: { name: '新名字' } })).status).toBe(409)
    expect((await s.call('POST', '/v1/institutions', { token: acct.m1.token, body: { ...SCHOOL, name: '插旗镇中心学校' } })).status).toBe(409)
    // Approved, it is public to communicators (no licence, no admins).
    const card = await s.call('GET', `/v1/institutions/${instId}`, { token: acct.m1.token })
    expect(card.status).toBe(200)
    expect(card.json.licence_image).toBeUndefined()
  })

  it('a rejected registration gives its name back; renaming moves the claim', async () => {
    const a = await s.call('POST', '/v1/institutions', { token: acct.m2.token, body: { ...SCHOOL, name: '插旗镇卫生院', kind: '医院' } })
    expect(a.status).toBe(201)
    expect((await s.call('POST', `/v1/institutions/${a.json.id}/reject`, { token: tok.county, body: { reason: '重复' } })).status).toBe(200)
    const b = await s.call('POST', '/v1/institutions', { token: acct.m1.token, body: { ...SCHOOL, name: '插旗镇卫生院', kind: '医院' } })
    expect(b.status).toBe(201)
    // m2 cannot resubmit under the name b now holds, but can under another.
    expect((await s.call('PATCH', `/v1/institutions/${a.json.id}`, { token: acct.m2.token, body: {} })).status).toBe(409)
    expect((await s.call('GET', `/v1/institutions/${a.json.id}`, { token: acct.m2.token })).json.status).toBe('rejected')
    const renamed = await s.call('PATCH', `/v1/institutions/${a.json.id}`, { token: acct.m2.token, body: { name: '插旗镇卫生院分院' } })
    expect(renamed.status, renamed.text).toBe(200)
    // b renames and frees its first name.
    expect((await s.call('PATCH', `/v1/institutions/${b.json.id}`, { token: acct.m1.token, body: { name: '插旗镇中心卫生院' } })).status).toBe(200)
    expect((await s.call('PATCH', `/v1/institutions/${a.json.id}`, { token: acct.m2.token, body: { name: '插旗镇卫生院' } })).status).toBe(200)
    for (const id of [a.json.id, b.json.id]) expect((await s.call('POST', `/v1/institutions/${id}/reject`, { body: { reason: '测试' } })).status).toBe(200)
  })

  it('unknown institutions: 403 to officials and communicators, 404 to operators', async () => {
    expect((await s.call('POST', '/v1/institutions/inst_nope/approve', { token: tok.county, body: {} })).status).toBe(403)
    expect((await s.call('POST', '/v1/institutions/inst_nope/approve', { body: {} })).status).toBe(404)
    expect((await s.call('GET', '/v1/institutions/inst_nope/members', { token: acct.m1.token })).status).toBe(403)
    expect((await s.call('GET', '/v1/institutions/inst_nope/members', {})).status).toBe(404)
  })
})

describe('search, join, members', () => {
  it('communicators find it and join; the admin sees both with the shares they sent', async () => {
    expect(instId).not.toBe('')
    const found = await s.call('GET', `/v1/institutions/search?q=${encodeURIComponent('中心学校')}`, { token: acct.m1.token })
    expect(found.status, found.text).toBe(200)
    expect(found.json.entries.map((e: any) => e.id)).toEqual([instId])
    expect(found.json.entries[0]).toMatchObject({ name: '插旗镇中心学校', status: 'approved' })
    expect((await s.call('GET', `/v1/institutions/search?q=${encodeURIComponent('学校')}&region=430624`, { token: acct.m1.token })).json.entries).toEqual([]) // next door's is pending
    expect((await s.call('GET', `/v1/institutions/search?q=${encodeURIComponent('学校')}`, { token: tok.county })).json.entries).toHaveLength(1)
    expect((await s.call('GET', '/v1/institutions/search?q=x', { token: tok.app })).status).toBe(403)
    expect((await s.call('GET', '/v1/institutions/search', { token: acct.m1.token })).status).toBe(400)

    const before = { town: await kpi(TOWN), county: await kpi('430623') }
    expect((await s.call('POST', '/v1/me/institution', { token: acct.newbie.token, body: { institution_id: instId } })).status).toBe(403)
    expect((await s.call('POST', '/v1/me/institution', { token: acct.m1.token, body: { institution_id: 'inst_nope' } })).status).toBe(404)
    for (const m of ['m1', 'm2']) {
      const j = await s.call('POST', '/v1/me/institution', { token: acct[m].token, body: { institution_id: instId } })
      expect(j.status, j.text).toBe(200)
      expect(j.json).toMatchObject({ institution_id: instId, institution: { name: '插旗镇中心学校' } })
    }
    expect((await s.call('GET', '/v1/me/institution', { token: acct.m1.token })).json.institution_id).toBe(instId)
    expect((await s.call('GET', '/v1/users/m1', { token: acct.m1.token })).json.institution_id).toBe(instId)
    // Joining moves registrations between institutions, never in or out of the town.
    expect((await kpi(TOWN)).certified).toBe(before.town.certified)
    expect((await kpi('430623')).certified).toBe(before.county.certified)

    const sent = { m1: 3, m2: 2 }
    const facts = await s.factCount()
    const now = Date.now()
    await s.postEvents(tok.app, [...Array.from({ length: sent.m1 }, (_, k) => share('m1', now + k)), ...Array.from({ length: sent.m2 }, (_, k) => share('m2', now + k))])
    await s.waitForFacts(facts + 5)

    const members = await s.call('GET', `/v1/institutions/${instId}/members?period=day`, { token: acct.boss.token })
    expect(members.status, members.text).toBe(200)
    expect(members.json).toMatchObject({ institution_id: instId, period: 'day', from: today, total: 2, next: null })
    expect(members.json.entries).toEqual([
      { user_id: 'm1', name: '李老师', phone: '134****0002', region_code: TOWN, shares: sent.m1, points: sent.m1 },
      { user_id: 'm2', name: '王老师', phone: '134****0003', region_code: TOWN, shares: sent.m2, points: sent.m2 },
    ])
    // Exports name the unit by the institution's name, not its id.
    const csv = (await s.call('GET', `/v1/recognitions/communicators?region=${TOWN}&from=${today}&to=${today}&min_shares=1&format=csv`, { token: tok.county })).text
    const lines = csv.trim().split('\r\n')
    expect(lines.filter((l) => l.includes('李老师') || l.includes('王老师')).map((l) => l.split(',')[2])).toEqual(['插旗镇中心学校', '插旗镇中心学校'])
    expect(csv).not.toContain(instId)
    const p1 = await s.call('GET', `/v1/institutions/${instId}/members?limit=1`, { token: tok.county })
    expect(p1.json.entries.map((e: any) => e.user_id)).toEqual(['m1'])
    const p2 = await s.call('GET', `/v1/institutions/${instId}/members?limit=1&after=${p1.json.next}`, { token: tok.county })
    expect(p2.json.entries.map((e: any) => e.user_id)).toEqual(['m2'])
    expect((await s.call('GET', `/v1/institutions/${instId}/members`)).json.entries[0].phone).toBe('13400000002')

    const k = await s.call('GET', `/v1/institutions/${instId}/kpis?from=${today}&to=${today}`, { token: acct.boss.token })
    expect(k.status, k.text).toBe(200)
    expect(k.json).toMatchObject({ institution_id: instId, certified: 2, new_registrations: 0, shares: 5, active: 2, points: 5 })
    expect((await kpi(TOWN)).shares).toBe(before.town.shares + 5)
    const ranked = await s.call('GET', '/v1/rankings/institutions?region=430623&period=day', { token: tok.county })
    expect(ranked.status, ranked.text).toBe(200)
    expect(ranked.json.entries).toContainEqual(expect.objectContaining({ institution_id: instId, shares: 5, certified: 2 }))

    // Nobody else: a member who is not an admin, the neighbour, an app.
    for (const t of [acct.m1.token, acct.far.token, tok.neighbour, tok.app]) {
      for (const path of [`/v1/institutions/${instId}/members`, `/v1/institutions/${instId}/kpis`]) {
        const r = await s.call('GET', path, { token: t })
        expect(r.status, path).toBe(403)
        expect(bodyWithoutRequestId(r)).not.toMatch(/李老师|134|插旗/)
      }
    }
    expect((await s.call('POST', `/v1/institutions/${instId}/admins`, { token: acct.m1.token, body: { user_id: 'm1' } })).status).toBe(403)

    // The admin adds m2 as an admin; m2 now sees the members.
    expect((await s.call('POST', `/v1/institutions/${instId}/admins`, { token: acct.boss.token, body: { user_id: 'nobody' } })).status).toBe(404)
    const added = await s.call('POST', `/v1/institutions/${instId}/admins`, { token: acct.boss.token, body: { user_id: 'm2' } })
    expect(added.status, added.text).toBe(200)
    expect(added.json.admins).toEqual(['boss', 'm2'])
    expect((await s.call('GET', `/v1/institutions/${instId}/members?period=day`, { token: acct.m2.token })).status).toBe(200)
    expect((await s.call('GET', '/v1/me/institutions', { token: acct.m2.token })).json.entries.map((e: any) => e.id)).toContain(instId)

    // Admins step down; the last one cannot, and only managers may remove one.
    const admins = (u: string, t: string) => s.call('DELETE', `/v1/institutions/${instId}/admins/${u}`, { token: t })
    expect((await admins('boss', acct.m1.token)).status).toBe(403)
    expect((await admins('boss', tok.neighbour)).status).toBe(403)
    expect((await admins('bad id', acct.boss.token)).status).toBe(400)
    const down = await admins('m2', acct.m2.token)
    expect(down.status, down.text).toBe(200)
    expect(down.json.admins).toBeUndefined() // no longer an admin: the public card
    expect((await s.call('GET', `/v1/institutions/${instId}/members?period=day`, { token: acct.m2.token })).status).toBe(403)
    expect((await admins('m2', acct.boss.token)).json.admins).toEqual(['boss']) // again: no change
    const last = await admins('boss', acct.boss.token)
    expect(last.status).toBe(409)
    expect(last.json.error.code).toBe('last_admin')
    expect((await s.call('POST', `/v1/institutions/${instId}/admins`, { token: tok.town, body: { user_id: 'm2' } })).json.admins).toEqual(['boss', 'm2'])

    // Leaving: the institution counts one fewer, the town the same.
    const left = await s.call('DELETE', '/v1/me/institution', { token: acct.m1.token })
    expect(left.json).toEqual({ institution_id: null, institution: null })
    expect((await s.call('GET', `/v1/institutions/${instId}/kpis`, { token: tok.town })).json.certified).toBe(1)
    expect((await kpi(TOWN)).certified).toBe(before.town.certified)
    expect((await s.call('GET', `/v1/institutions/${instId}/members?period=day`, { token: acct.boss.token })).json.entries.map((e: any) => e.user_id)).toEqual(['m2'])
  })
})
