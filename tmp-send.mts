import { readFileSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
const L = JSON.parse(readFileSync('/tmp/cd2/cluster/cluster.json', 'utf8'))
const token = readFileSync(L.admin_token_file, 'utf8').trim()
const call = async (base: string, method: string, path: string, body?: unknown, auth = token) => { const r = await fetch(base + path, { method, headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) }); const t = await r.text(); return { status: r.status, json: t ? JSON.parse(t) : null } }
const app = (await call(L.api, 'POST', '/v1/apps', { name: 'x' })).json.key
const users = Array.from({ length: 200 }, (_, i) => ({ id: `k${i}`, phone: `1390000${String(i).padStart(4, '0')}`, real_name: `集${i}`, region_code: ['430623110', '110101001', '440103001', '510104017', '330102001'][i % 5], certified_at: '2020-01-01' }))
console.log((await call(L.api, 'POST', '/v1/users:import', { users })).status)
const now = Date.now()
const events = Array.from({ length: 20000 }, (_, i) => ({ id: randomUUID(), type: 'share_back', user_id: `k${i % 200}`, ts: now - 60000 + (i % 50000), content_id: 'c', channel: 'wechat' }))
const t0 = Date.now()
const sender = async (lane: number) => { for (let i = lane * 500; i < events.length; i += 1000) { const r = await call(L.ingest[(i / 500) % 2], 'POST', '/v1/events', { events: events.slice(i, i + 500) }, app); if (r.status !== 202) console.log(r.status, r.json) } }
await Promise.all([sender(0), sender(1)])
console.log('sent', Date.now() - t0, 'ms')
for (let k = 0; k < 30; k++) {
  const b = await call(L.api, 'GET', '/v1/leaderboards?metric=shares&period=all&limit=1')
  const r = await call(L.api, 'GET', '/v1/kpis?period=day')
  console.log(Date.now() - t0, 'kpi shares', r.json.shares, 'board total', b.json.total, b.json.entries[0]?.score)
  if (r.json.shares >= 20001) break
  await new Promise((r) => setTimeout(r, 2000))
}
