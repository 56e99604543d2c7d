import { randomUUID } from 'node:crypto'
import { share, type Stack } from '../test/stack.ts'

/**
 * A small 华容县 (430623, 岳阳市) for the dashboard test and the screenshots: communicators in its
 * towns, populations, a county official, an official of the neighbouring 岳阳县 (430621), an
 * official of the city 岳阳市 (4306), a task breakdown for this year, and share-backs; campaigns on
 * request. Phone numbers and passwords are made up.
 */
export const CITY = '4306'
export const COUNTY = '430623' // 华容县
export const TOWN_A = '430623110' // 插旗镇
export const TOWN_B = '430623101' // 三封寺镇
export const TOWN_C = '430623120' // 章华镇
export const NEIGHBOUR = '430621' // 岳阳县
export const PASSWORD = 'Kepu-demo-2024'
export const COUNTY_OFFICIAL = { phone: '13912340001', name: '华容县科协 李娟' }
export const NEIGHBOUR_OFFICIAL = { phone: '13912340002', name: '岳阳县科协 王强' }
export const CITY_OFFICIAL = { phone: '13912340003', name: '岳阳市科协 陈静' }

const SURNAMES = '张王李赵刘陈杨黄周吴徐孙胡朱高林何郭马罗'
const GIVEN = ['伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '洋', '艳', '勇', '军', '杰', '娟', '涛', '明', '超', '秀英', '霞', '平']

export interface Seeded {
  key: string
  users: { id: string; town: string; name: string }[]
}

/**
 * `perTown` communicators in each of TOWN_A, TOWN_B, TOWN_C (ids hr1, hr2, …) and one in the
 * neighbouring county (yy1); `days` > 1 spreads share-backs over that many past days (the stack
 * must accept events that old: EVENT_MAX_AGE_HOURS) and certifications over the past year.
 */
export async function seed(s: Stack, opts: { perTown?: number; days?: number; shares?: (i: number) => number } = {}): Promise<Seeded> {
  const perTown = opts.perTown ?? 2
  const days = opts.days ?? 1
  const key = await s.createAppKey('科普中国 App')
  const users: Seeded['users'] = []
  const now = Date.now()
  let n = 0
  for (const town of [TOWN_A, TOWN_B, TOWN_C])
    for (let i = 0; i < perTown; i++) {
      n++
      users.push({ id: `hr${n}`, town, name: SURNAMES[n % SURNAMES.length] + GIVEN[(n * 7) % GIVEN.length] })
    }
  const rows = users.map((u, i) => ({
    id: u.id,
    phone: `1380000${String(i + 1).padStart(4, '0')}`,
    real_name: u.name,
    region_code: u.town,
    // Spread over the past year when seeding history, so the certified trend grows.
    certified_at: days > 1 ? new Date(now - Math.floor(((i * 37) % 330) + 2) * 86400_000).toISOString() : '2020-01-01',
  }))
  rows.push({ id: 'yy1', phone: '13800009999', real_name: '邻县科普员', region_code: `${NEIGHBOUR}100`, certified_at: '2020-01-01' })
  await s.importUsers(rows)
  for (const [code, population] of Object.entries({ [CITY]: 5_051_922, [COUNTY]: 553_000, [TOWN_A]: 45_000, [TOWN_B]: 38_000, [TOWN_C]: 96_000, [NEIGHBOUR]: 621_000 })) {
    const r = await s.call('PUT', `/v1/regions/${code}/population`, { body: { population, year: 2020 } })
    if (r.status !== 200) throw new Error(`population ${code}: ${r.status}`)
  }
  for (const [o, region] of [[COUNTY_OFFICIAL, COUNTY], [NEIGHBOUR_OFFICIAL, NEIGHBOUR], [CITY_OFFICIAL, CITY]] as const) {
    const r = await s.call('POST', '/v1/officials', { body: { phone: o.phone, password: PASSWORD, name: o.name, scope: { region_code: region } } })
    if (r.status !== 201) throw new Error(`official: ${r.status} ${r.text}`)
  }
  const year = new Date(now + 8 * 3600_000).getUTCFullYear()
  const tasks = await s.call('PUT', `/v1/tasks/${year}`, {
    body: {
      units: [
        { region_code: TOWN_A, name: '插旗镇', core_members: 30, registration_target: 900, share_target: 500_000 },
        // On schedule: tiny targets for the test's few events, life-sized ones for the 60-day demo.
        { region_code: TOWN_B, name: '三封寺镇', core_members: 12, registration_target: days > 1 ? 5 : 0, share_target: days > 1 ? 3_000 : 1 },
        { region_code: TOWN_C, name: '章华镇', core_members: 40, registration_target: days > 1 ? 6 : 0, share_target: days > 1 ? 4_500 : 2 },
      ],
    },
  })
  if (tasks.status !== 200 || tasks.json.errors.length) throw new Error(`tasks: ${tasks.status} ${tasks.text}`)

  // Share-backs: user i shares `shares(i)` times a day (at most 300 count) on each of the last `days` days.
  const count = opts.shares ?? ((i: number) => 1 + ((i * 5) % 9))
  const events: unknown[] = []
  for (let d = 0; d < days; d++) {
    const dayTs = now - d * 86400_000 - 60_000
    users.forEach((u, i) => {
      const k = d === 0 ? count(i) : Math.max(0, count(i + d) - (d % 3))
      for (let j = 0; j < k; j++) events.push(share(u.id, dayTs - j * 1000))
      if (d < 3 && (i + d) % 2 === 0) events.push({ id: randomUUID(), type: 'read', user_id: u.id, ts: dayTs - 5000, content_id: `a${d}` })
    })
  }
  events.push(share('yy1', now - 60_000))
  const before = await s.factCount()
  for (let i = 0; i < events.length; i += 1000) {
    const r = await s.postEvents(key, events.slice(i, i + 1000))
    if (r.status !== 202 || r.json.rejected.length) throw new Error(`events: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`)
  }
  await s.waitForFacts(before + events.length)
  return { key, users }
}

/**
 * Creates a campaign through the API (as the operator) and resolves once its backfill (what
 * happened in the window before it was created) is done, so its standings are complete.
 */
export async function createCampaign(s: Stack, body: Record<string, unknown>): Promise<any> {
  const jobs = s.service.aggregator!.jobs
  const backfilled = new Set<string>()
  let wake = () => {}
  const on = (id: string) => (backfilled.add(id), wake())
  jobs.events.on('backfilled', on)
  try {
    const r = await s.call('POST', '/v1/campaigns', { body })
    if (r.status !== 201) throw new Error(`campaign: ${r.status} ${r.text}`)
    if (r.json.status === 'scheduled' || r.json.status === 'cancelled') return r.json
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`campaign ${r.json.id}: no backfill in 60 s`)), 60_000)
      wake = () => {
        if (backfilled.has(r.json.id)) (clearTimeout(timer), res())
      }
      wake()
      // Done already (a window with nothing before it)?
      void s.call('GET', `/v1/campaigns/${r.json.id}`).then((g) => g.json?.backfill === 'done' && on(r.json.id))
    })
    return (await s.call('GET', `/v1/campaigns/${r.json.id}`)).json
  } finally {
    jobs.events.off('backfilled', on)
  }
}

/**
 * The demo campaigns of 华容县 for the screenshots: a county campaign running over the last 20 days
 * and the next 10 (prize tiers, a basic task some do not reach), a town campaign that ended and was
 * settled, one not started yet and one cancelled.
 */
export async function seedCampaigns(s: Stack): Promise<{ running: any; final: any; scheduled: any; cancelled: any }> {
  const DAY = 86400_000
  const now = Date.now()
  const day = (offset: number) => new Date(now + offset * DAY + 8 * 3600_000).toISOString().slice(0, 10)
  const tiers = [
    { from_rank: 1, to_rank: 1, prize: '一等奖' },
    { from_rank: 2, to_rank: 3, prize: '二等奖' },
    { from_rank: 4, to_rank: 8, prize: '三等奖' },
  ]
  // Past its cutoff when created: settled from the facts (by the aggregator or by this request).
  const past = await s.call('POST', '/v1/campaigns', {
    body: {
      name: '插旗镇“科学防疫”转发赛', region_code: TOWN_A, starts_at: day(-45), ends_at: day(-31), metric: 'shares', min_score: 60, top_n: 3, grace_seconds: 3600,
      tiers: [{ from_rank: 1, to_rank: 1, prize: '优秀传播员' }, { from_rank: 2, to_rank: 3, prize: '积极传播员' }],
    },
  })
  if (past.status !== 201) throw new Error(`campaign: ${past.status} ${past.text}`)
  let settled = await s.call('POST', `/v1/campaigns/${past.json.id}/settle`)
  for (let i = 0; settled.status === 409 && settled.json?.error?.code === 'settling' && i < 50; i++) {
    await new Promise((res) => setTimeout(res, 200))
    settled = await s.call('POST', `/v1/campaigns/${past.json.id}/settle`)
  }
  if (settled.status !== 200 || settled.json.status !== 'final') throw new Error(`settle: ${settled.status} ${settled.text}`)
  const cancelled = (await s.call('POST', '/v1/campaigns', { body: { name: '章华镇读书月活动', region_code: TOWN_C, starts_at: day(3), ends_at: day(30), metric: 'points', top_n: 5 } })).json
  await s.call('POST', `/v1/campaigns/${cancelled.id}/cancel`)
  const scheduled = await createCampaign(s, { name: '三封寺镇暑期科普积分赛', region_code: TOWN_B, starts_at: day(5), ends_at: day(35), metric: 'points', min_score: 100, top_n: 10, tiers })
  const running = await createCampaign(s, { name: '华容县全民科学素质月转发竞赛', region_code: COUNTY, starts_at: day(-19), ends_at: day(10), metric: 'shares', min_score: 250, top_n: 8, tiers })
  return { running, final: settled.json, scheduled, cancelled: (await s.call('GET', `/v1/campaigns/${cancelled.id}`)).json }
}
