import { randomUUID } from 'node:crypto'
import { share, type Stack } from '../test/stack.ts'

/**
 * A small 华容县 (430623, 岳阳市) for the dashboard test and the screenshots: communicators in its
 * towns, populations, a county official, an official of the neighbouring 岳阳县 (430621), a task
 * breakdown for this year, and share-backs. Phone numbers and passwords are made up.
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
  for (const [o, region] of [[COUNTY_OFFICIAL, COUNTY], [NEIGHBOUR_OFFICIAL, NEIGHBOUR]] as const) {
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
