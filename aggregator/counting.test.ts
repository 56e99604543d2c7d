import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { share, startStack, type Stack } from '../test/stack.ts'

// The same counting on one Redis and one NATS server, and on a Redis Cluster and a NATS cluster
// (issue 12): every script and multi-key read in one slot, the stream and buckets at 3 replicas.
for (const cluster of [false, true])
describe(cluster ? 'on a Redis Cluster (3 masters, 3 replicas) and a NATS cluster of 3' : 'on one Redis and one NATS server', () => {
  let s: Stack
  let key: string
  const TOWN = '430623110' // 插旗镇, 华容县, 岳阳市, 湖南省

  beforeAll(async () => {
    s = await startStack({}, { cluster })
    key = await s.createAppKey()
  })
  afterAll(async () => s?.stop())

  const board = async (q: string) => (await s.call('GET', `/v1/leaderboards?${q}`)).json

  describe('daily caps', () => {
    it('counts 300 of 305 share-backs in one day and stores the 5 extra as capped facts', async () => {
      await s.importUsers([{ id: 'cap1', phone: '13800000001', real_name: '张三', region_code: TOWN, certified_at: '2020-01-01' }])
      const t = Date.now() - 60_000
      const events = Array.from({ length: 305 }, (_, i) => share('cap1', t + i))
      const r = await s.postEvents(key, events)
      expect(r.status).toBe(202)
      expect(r.json).toEqual({ accepted: 305, duplicates: 0, rejected: [] })
      await s.waitForFacts(305)
      expect(await s.factCount("user_id = 'cap1' AND decision = 'counted'")).toBe(300)
      expect(await s.factCount("user_id = 'cap1' AND decision = 'capped'")).toBe(5)
      // Share points only for the first 20.
      expect(await s.factCount("user_id = 'cap1' AND points = 1")).toBe(20)
      const me = (await s.call('GET', `/v1/leaderboards/users/cap1?metric=shares&region=${TOWN}&period=day`)).json
      expect(me).toMatchObject({ rank: 1, score: 300 })
      const pts = (await s.call('GET', `/v1/leaderboards/users/cap1?metric=points&period=all`)).json
      expect(pts.score).toBe(20)
    })
  })

  describe('every level at once', () => {
    it('shows a share counted today on town, county, city, province, national and institution boards for every period', async () => {
      await s.importUsers([{ id: 'lvl1', phone: '13800000002', real_name: '李四', region_code: TOWN, institution_id: 'inst-hr-1', certified_at: '2020-01-01' }])
      const r = await s.postEvents(key, [share('lvl1', Date.now() - 1000)])
      expect(r.status).toBe(202)
      await s.waitForFacts(306)
      for (const period of ['day', 'week', 'month', 'year', 'all']) {
        for (const scope of [`region=${TOWN}`, 'region=430623', 'region=4306', 'region=43', '', 'institution=inst-hr-1']) {
          const b = await board(`metric=shares&period=${period}&${scope}`)
          const e = b.entries.find((x: any) => x.user_id === 'lvl1')
          expect(e, `${period} ${scope}`).toMatchObject({ score: 1, name: '李四', region_code: TOWN, institution_id: 'inst-hr-1' })
        }
      }
      // Not on a neighbouring county's board.
      expect((await board('metric=shares&period=day&region=430624')).total).toBe(0)
    })
  })

  describe('live notice', () => {
    it('announces on NATS, after the facts are stored, which region, institution and user a batch touched', async () => {
      const { SUBJECT_LIVE } = await import('../core/stream.ts')
      await s.importUsers([{ id: 'live1', phone: '13800000003', real_name: '王五', region_code: TOWN, institution_id: 'inst-hr-2', certified_at: '2020-01-01' }])
      const sub = s.deps.nc.subscribe(SUBJECT_LIVE(s.config.nats.stream))
      const seen = (async () => {
        for await (const m of sub) {
          const n = m.json<{ regions: string[]; institutions: string[]; users: string[] }>()
          if (n.users.includes('live1')) return n
        }
      })()
      expect((await s.postEvents(key, [share('live1', Date.now() - 1000)])).status).toBe(202)
      const n = await seen
      sub.unsubscribe()
      expect(n).toMatchObject({ regions: [TOWN], institutions: ['inst-hr-2'] })
      // Stored before announced.
      expect(await s.factCount("user_id = 'live1'")).toBe(1)
    })
  })
})
