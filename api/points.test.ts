import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { registerAccount } from '../test/accounts.ts'
import { share, startStack, type Stack } from '../test/stack.ts'

/**
 * Check-in and points (issue 5, part 3): the API's sign-in goes through the event pipeline with a
 * deterministic id per day (a second call is the same event; an app's own sign-in that day is capped);
 * today's earnings per action with the caps left; streak; the ledger pages sum to the balance.
 */
let s: Stack
let key: string
const now = Date.now()
const acct: Record<string, { token: string; user_id: string }> = {}

beforeAll(async () => {
  s = await startStack({ SMS_SENDER: 'memory' })
  key = await s.createAppKey()
  await s.importUsers([
    { id: 'p1', phone: '13400000001', real_name: '甲', region_code: '430623110', certified_at: '2020-01-01' },
    { id: 'p2', phone: '13400000002', real_name: '乙', region_code: '430623110', certified_at: '2020-01-01' },
  ])
  acct.p1 = await registerAccount(s, '13400000001')
  acct.p2 = await registerAccount(s, '13400000002')
  acct.none = await registerAccount(s, '13400000003')
})
afterAll(async () => s?.stop())

async function until(cond: () => Promise<boolean>, ms = 10_000) {
  for (const end = Date.now() + ms; !(await cond()); ) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Posts events and waits until each has its fact. */
async function send(events: { id: string; [k: string]: unknown }[]) {
  expect((await s.postEvents(key, events)).status).toBe(202)
  const ids = events.map((e) => `'${e.id}'`).join(',')
  await until(async () => (await s.factCount(`event_id IN (${ids})`)) === events.length)
}

describe('sign-in through the API', () => {
  it('counts once a day: a second call is the same event, an app sign-in that day is capped', async () => {
    const t = acct.p1.token
    const first = await s.call('POST', '/v1/me/signin', { token: t })
    expect(first.status, first.text).toBe(200)
    expect(first.json).toMatchObject({ event_id: expect.stringMatching(/^signin:p1:\d{8}$/), decision: 'counted', points: 2, streak: 1 })
    const again = await s.call('POST', '/v1/me/signin', { token: t })
    expect(again.json).toEqual(first.json)
    await until(async () => (await s.factCount(`event_id = '${first.json.event_id}'`)) === 1)
    await send([{ id: randomUUID(), type: 'signin', user_id: 'p1', ts: Date.now() }])
    expect(await s.factCount(`user_id = 'p1' AND type = 'signin' AND decision = 'capped'`)).toBe(1)
    expect(await s.factCount(`user_id = 'p1' AND type = 'signin' AND decision = 'counted'`)).toBe(1)
    const pts = await s.call('GET', '/v1/me/points', { token: t })
    expect(pts.json).toMatchObject({ balance: 2, earned: 2, streak: 1, signed_in_today: true })
  })

  it('continues the streak from yesterday’s app sign-in', async () => {
    await send([{ id: randomUUID(), type: 'signin', user_id: 'p2', ts: now - 86_400_000 }])
    const pre = await s.call('GET', '/v1/me/points', { token: acct.p2.token })
    expect(pre.json).toMatchObject({ streak: 1, signed_in_today: false })
    expect(pre.json.today.actions.find((a: any) => a.type === 'signin')).toMatchObject({ count: 0, points_each: 3, counts_left: 1 })
    const r = await s.call('POST', '/v1/me/signin', { token: acct.p2.token })
    expect(r.json).toMatchObject({ decision: 'counted', points: 3, streak: 2 })
  })

  it('needs a certified communicator', async () => {
    expect((await s.call('POST', '/v1/me/signin', { token: acct.none.token })).status).toBe(409)
    expect((await s.call('GET', '/v1/me/points', { token: acct.none.token })).status).toBe(409)
    expect((await s.call('POST', '/v1/me/signin', { token: key })).status).toBe(403)
  })
})

describe('points and ledger', () => {
  it('shows today per action with the caps left, and the ledger pages sum to the balance', async () => {
    const t = acct.p2.token
    const events: { id: string; [k: string]: unknown }[] = []
    for (let i = 0; i < 25; i++) events.push(share('p2', now - 1000 - i))
    for (let i = 0; i < 12; i++) events.push({ id: randomUUID(), type: 'read', user_id: 'p2', ts: now - 2000 - i, content_id: `c${i}` })
    events.push({ id: randomUUID(), type: 'comment', user_id: 'p2', ts: now - 3000 })
    events.push({ id: randomUUID(), type: 'post', user_id: 'p2', ts: now - 3000, content_id: 'post-1' })
    await send(events)
    const r = await s.call('GET', '/v1/me/points', { token: t })
    const by = Object.fromEntries(r.json.today.actions.map((a: any) => [a.type, a]))
    expect(by.share_back).toEqual({ type: 'share_back', count: 25, points: 20, points_each: 1, points_left: 0, counts_left: 275 })
    expect(by.read).toMatchObject({ count: 10, points: 10, points_left: 0, counts_left: 0 })
    expect(by.comment).toMatchObject({ count: 1, points: 1, points_left: 9, counts_left: 9 })
    // points_left counts points, not actions: two more posts at 3 points each.
    expect(by.post).toMatchObject({ count: 1, points: 3, points_each: 3, points_left: 6, counts_left: 2 })
    expect(by.signin).toMatchObject({ count: 1, points: 3, points_left: 0, counts_left: 0 })
    expect(by.login).toMatchObject({ count: 0, points_left: 1 })
    // Yesterday's sign-in (2) + today's sign-in (3) + 20 + 10 + 1 + 3.
    expect(r.json).toMatchObject({ earned: 39, balance: 39, redeemed: 0, streak: 2 })
    expect(r.json.today.points).toBe(37)

    const entries: any[] = []
    let after: string | null = null
    do {
      const page: any = await s.call('GET', `/v1/me/ledger?limit=7${after ? `&after=${after}` : ''}`, { token: t })
      expect(page.status, page.text).toBe(200)
      entries.push(...page.json.entries)
      after = page.json.next
    } while (after)
    expect(entries.reduce((a, e) => a + e.delta, 0)).toBe(39)
    expect(entries).toHaveLength(1 + 1 + 20 + 10 + 1 + 1)
    expect(new Set(entries.map((e) => e.id)).size).toBe(entries.length)
    expect(entries.every((e) => e.kind === 'earn' && e.source === e.id)).toBe(true)
    const times = entries.map((e) => Date.parse(e.at))
    expect([...times].sort((a, b) => b - a)).toEqual(times)
    expect((await s.call('GET', '/v1/me/ledger?after=garbage', { token: t })).status).toBe(400)
  })
})
