import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { boardKey, packScore } from '../core/scoring.ts'
import { periodRange } from '../core/time.ts'
import { createOfficial } from '../test/accounts.ts'
import { share, startStack, type Stack } from '../test/stack.ts'

// The page cache on a real stack (its age bound is proved with a hand-moved clock in
// core/page-cache.test.ts). The longest allowed reuse, so two reads a few ms apart share a page.
let s: Stack
let key: string
let outsider: string
beforeAll(async () => {
  s = await startStack({ BOARD_PAGE_CACHE_MS: '1000' })
  key = await s.createAppKey()
  outsider = await createOfficial(s, { phone: '13600000991', name: '外县', scope: { region_code: '430624' } })
  await s.importUsers([
    { id: 'pc1', phone: '13500000991', real_name: '王安石', region_code: '430623110', certified_at: '2020-01-01' },
    { id: 'pc2', phone: '13500000992', real_name: '苏轼', region_code: '430623110', certified_at: '2020-01-01' },
  ])
  const facts = await s.factCount()
  await s.postEvents(key, [share('pc1', Date.now())])
  await s.waitForFacts(facts + 1)
})
afterAll(async () => s?.stop())

const PAGE = '/v1/leaderboards?metric=shares&period=all&region=430623'

describe('GET /v1/leaderboards with the page cache', () => {
  it('reuses a page for the same query and audience, renders others afresh, and shows the change once the page is due', async () => {
    const first = await s.call('GET', PAGE, { token: key })
    expect(first.status).toBe(200)
    expect(first.headers.get('content-type')).toMatch(/^application\/json/)
    expect(first.json.entries.map((e: any) => [e.user_id, e.name, e.score])).toEqual([['pc1', '王**', 1]])

    // pc2 overtakes pc1 in Redis, without the aggregator (so nothing else delays the next read).
    const range = periodRange('all', Date.now())
    await s.deps.redis.zadd(boardKey('shares', { kind: 'region', code: '430623' }, range.key), packScore('all', range.startMs, 5, Date.now()), 'pc2')

    const again = await s.call('GET', PAGE, { token: key })
    expect(again.text).toBe(first.text)
    // Another audience (real names) and another page size are other pages: rendered from Redis now.
    const operator = (await s.call('GET', PAGE)).json
    expect(operator.entries.map((e: any) => [e.user_id, e.name, e.score])).toEqual([['pc2', '苏轼', 5], ['pc1', '王安石', 1]])
    const small = (await s.call('GET', `${PAGE}&limit=1`, { token: key })).json
    expect(small.entries.map((e: any) => e.user_id)).toEqual(['pc2'])
    expect(small.next).not.toBeNull()

    // The app's page catches up by itself once it is due (at most BOARD_PAGE_CACHE_MS after its read).
    let latest = again
    while (latest.text === first.text) latest = await s.call('GET', PAGE, { token: key })
    expect(latest.json.total).toBe(2)
    expect(latest.json.entries.map((e: any) => e.user_id)).toEqual(['pc2', 'pc1'])
  })

  it('checks credentials and scope on every request, cached page or not', async () => {
    expect((await s.call('GET', PAGE, { token: key })).status).toBe(200)
    expect((await s.call('GET', PAGE, { token: null })).status).toBe(401)
    expect((await s.call('GET', PAGE, { token: outsider })).status).toBe(403)
  })

  it('keeps no error: a bad cursor is refused each time', async () => {
    expect((await s.call('GET', `${PAGE}&after=garbage`, { token: key })).status).toBe(400)
    expect((await s.call('GET', `${PAGE}&after=garbage`, { token: key })).status).toBe(400)
  })
})
