// 科普中国 live dashboard for officials: overview (live KPI cards, trends, child regions with
// drill-down), leaderboards, task breakdown, campaigns. Plain ES modules, no build step. Routes live
// in the hash: #/overview/<region>, #/leaders/<region>?period=&metric=, #/tasks/<year>?behind=1,
// #/campaigns?status=, #/campaigns/<id>?limit=, #/campaigns/new.
import { api, ApiError, authEvents, download, live, login, session } from './api.js'
import { drawChart } from './chart.js'

const $ = (sel, root = document) => root.querySelector(sel)
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
const num = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('zh-CN'))
function pct(r) {
  if (r === null || r === undefined) return '—'
  const p = r * 100
  return `${p.toFixed(p >= 1 ? 2 : p >= 0.1 ? 3 : 4)}%`
}
/** Today in Asia/Shanghai, whatever the browser's zone. */
const shanghaiDay = (ms = Date.now()) => new Date(ms + 8 * 3600_000).toISOString().slice(0, 10)
const LEVEL = { 0: '全国', 2: '省', 4: '市', 6: '县（区）', 9: '乡镇（街道）' }
const PERIODS = [
  ['day', '今日'],
  ['week', '本周'],
  ['month', '本月'],
  ['year', '本年'],
  ['all', '累计'],
]

// Region names learned from API answers (names are public GB/T 2260 data; numbers never cached).
const names = new Map([['', '全国']])
const paths = new Map()
const kids = new Map()

/* ---------- shell ---------- */

const root = $('#app')
let current = null // { dispose(), alive }

function scopeRegion(s) {
  if (!s) return null
  if (s.scope?.region_code) return s.scope.region_code
  if (s.scope?.national || s.role === 'operator') return ''
  return null
}

function parseHash() {
  const h = location.hash.replace(/^#\/?/, '')
  const [path, query = ''] = h.split('?')
  const [view = 'overview', arg] = path.split('/')
  return { view, arg: arg ?? null, q: new URLSearchParams(query) }
}

function go(hash) {
  if (location.hash === hash) render()
  else location.hash = hash
}

function shell(active) {
  const s = session.get()
  const scope = s.scope?.region_code ? names.get(s.scope.region_code) ?? s.scope.region_code : s.scope?.institution_id ? `机构 ${s.scope.institution_id}` : '全国'
  root.innerHTML = `
    <header class="top">
      <div class="brand">科普中国 <b>实时数据</b></div>
      <nav>
        <a href="#/overview" data-nav="overview">概览</a>
        <a href="#/leaders" data-nav="leaders">排行榜</a>
        <a href="#/tasks" data-nav="tasks">任务分解</a>
        <a href="#/campaigns" data-nav="campaigns">竞赛</a>
      </nav>
      <div class="who"><span id="live" class="live" data-state="off" title="实时推送状态"><i></i><em>未连接</em></span>
        <span class="name">${esc(s.name ?? '')} · ${esc(scope)}</span>
        <button type="button" id="logout" class="link">退出</button></div>
    </header>
    <main id="view" aria-live="polite"></main>`
  root.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', a.dataset.nav === active))
  $('#logout').addEventListener('click', () => {
    session.clear()
    location.hash = ''
    render()
  })
  return $('#view')
}

function setLive(state) {
  const el = $('#live')
  if (!el) return
  el.dataset.state = state
  el.querySelector('em').textContent = { live: '实时', connecting: '连接中', retry: '重连中', forbidden: '无推送', off: '未连接' }[state] ?? state
}

function context() {
  current?.dispose()
  const ctx = {
    alive: true,
    stops: [],
    dispose() {
      this.alive = false
      for (const f of this.stops.splice(0)) f()
    },
  }
  current = ctx
  return ctx
}

/** One run at a time: a call during a run asks for one more run after it, while the view is alive. */
function coalesced(ctx, run) {
  let busy = false
  let again = false
  const load = async () => {
    if (busy) return void (again = true)
    busy = true
    try {
      await run()
    } finally {
      busy = false
      if (again && ctx.alive) {
        again = false
        void load()
      }
    }
  }
  return load
}

function errorBox(e) {
  if (e instanceof ApiError && e.status === 403)
    return `<div class="error forbidden" role="alert" data-error="403"><b>无权查看（403）</b><p>该地区或单位不在您的管辖范围内，无法显示其数据。</p><a href="#/overview">返回我的辖区</a></div>`
  if (e instanceof ApiError && e.status === 404) return `<div class="error" role="alert" data-error="404"><b>未找到（404）</b><p>${esc(e.message)}</p></div>`
  if (e instanceof ApiError && e.status === 401) return `<div class="error" role="alert">登录已过期，请重新登录。</div>`
  return `<div class="error" role="alert"><b>加载失败</b><p>${esc(e?.message ?? e)}</p></div>`
}

/** Runs `load`, showing its error in `el` (and nothing else) when it fails; undefined then. */
async function guarded(ctx, el, load) {
  try {
    return await load()
  } catch (e) {
    if (ctx.alive && !(e instanceof ApiError && e.status === 401)) el.innerHTML = errorBox(e)
    return undefined
  }
}

/** Breadcrumb from the official's own region down to `region`; ancestors above her scope are not links. */
function breadcrumb(region, view) {
  const own = scopeRegion(session.get()) ?? ''
  const path = paths.get(region) ?? [{ code: region || null, name: names.get(region) ?? region }]
  const items = path
    .filter((p) => (p.code ?? '').startsWith(own) || own === '')
    .map((p, i, all) =>
      i === all.length - 1
        ? `<span aria-current="page">${esc(p.name)}</span>`
        : `<a href="#/${view}/${p.code ?? ''}" data-crumb="${p.code ?? ''}">${esc(p.name)}</a>`,
    )
  return `<nav class="crumbs" aria-label="位置">${items.join('<i>›</i>')}</nav>`
}

async function learnRegion(region) {
  if (paths.has(region) && kids.has(region)) return
  const month = shanghaiDay().slice(0, 8) + '01'
  const [t, k] = await Promise.all([
    paths.has(region) ? null : api(`/v1/kpis/trend?by=month&from=${month}${region ? `&region=${region}` : ''}`),
    kids.has(region) ? null : api(`/v1/kpis${region ? `?region=${region}` : ''}`),
  ])
  if (t) learnPath(region, t.path)
  if (k) learnKids(region, k)
}
function learnPath(region, path) {
  paths.set(region, path)
  for (const p of path) names.set(p.code ?? '', p.name)
  refreshWho()
}
/** The header names her scope as soon as its name is known. */
function refreshWho() {
  const s = session.get()
  const code = s?.scope?.region_code
  const el = $('.who .name')
  if (el && code && names.has(code)) el.textContent = `${s.name ?? ''} · ${names.get(code)}`
}
function learnKids(region, k) {
  names.set(region, k.name)
  queueMicrotask(refreshWho)
  kids.set(region, k.children.map((c) => ({ code: c.region, name: c.name })))
  for (const c of k.children) {
    names.set(c.region, c.name)
    // A child's breadcrumb is its parent's plus itself: drill-downs need no extra call for it.
    if (paths.has(region) && !paths.has(c.region)) paths.set(c.region, [...paths.get(region), { code: c.region, name: c.name }])
  }
}

/* ---------- login ---------- */

function renderLogin(message = '') {
  current?.dispose()
  root.innerHTML = `
    <main class="login">
      <form id="login-form" class="card" autocomplete="on">
        <h1>科普中国 <b>实时数据</b></h1>
        <p class="muted">科协工作人员登录</p>
        <label>手机号<input name="phone" type="tel" inputmode="numeric" autocomplete="username" required maxlength="20"></label>
        <label>密码<input name="password" type="password" autocomplete="current-password" required maxlength="128"></label>
        <button type="submit">登录</button>
        <p class="error-text" role="alert">${esc(message)}</p>
      </form>
    </main>`
  const form = $('#login-form')
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const fd = new FormData(form)
    const btn = form.querySelector('button')
    btn.disabled = true
    try {
      await login(String(fd.get('phone')).trim(), String(fd.get('password')))
      if (!location.hash || location.hash === '#' || location.hash.startsWith('#/login')) location.hash = '#/overview'
      else render()
    } catch (e) {
      btn.disabled = false
      form.querySelector('.error-text').textContent =
        e instanceof ApiError && e.status === 401 ? '手机号或密码错误' : e instanceof ApiError && e.status === 429 ? '尝试次数过多，请一分钟后再试' : '登录失败，请稍后再试'
    }
  })
}

/* ---------- overview ---------- */

function cards(k) {
  const d = k.day
  const ratio = d.registration_ratio
  const need = (target) => (d.population ? Math.max(0, Math.ceil(d.population * target - d.certified)) : null)
  let status = '人口数据未导入，无法计算注册比例'
  if (ratio !== null) {
    if (ratio >= 0.02) status = '已达 2% 目标'
    else if (ratio >= 0.01) status = `已达 1%，距 2% 还差 ${num(need(0.02))} 人`
    else status = `距 1% 目标还差 ${num(need(0.01))} 人`
  }
  const scale = 0.025
  const fill = ratio === null ? 0 : Math.min(100, (ratio / scale) * 100)
  const card = (key, label, value, sub = '') => `<div class="kpi" data-kpi="${key}"><div class="label">${label}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`
  return [
    card('certified', '认证科普员', num(d.certified), `今日新增 ${num(d.new_registrations)} 人`),
    `<div class="kpi ratio" data-kpi="ratio"><div class="label">注册比例</div><div class="value">${pct(ratio)}</div>
      <div class="bar" title="目标：示范县 1%，2025 年全省 2%"><span style="width:${fill}%"></span><b style="left:${(0.01 / scale) * 100}%">1%</b><b style="left:${(0.02 / scale) * 100}%">2%</b></div>
      <div class="sub">${esc(status)}${d.population ? ` · 人口 ${num(d.population)}` : ''}</div></div>`,
    card('shares-day', '今日传播量', num(d.shares), `积分 ${num(d.points)}`),
    card('shares-month', '本月传播量', num(k.month.shares), `${esc(k.month.from.slice(0, 7))}`),
    card('shares-year', '本年传播量', num(k.year.shares), `${esc(k.year.from.slice(0, 4))} 年`),
    card('activity', '今日活跃率', pct(d.activity_rate), `今日活跃 ${num(d.active)} 人 · 本月 ${pct(k.month.activity_rate)}`),
  ].join('')
}

const SORTS = { shares: '传播量', registration_ratio: '注册比例', activity_rate: '活跃率' }
function childTable(k, period, sort) {
  const list = [...k[period].children].sort((a, b) => {
    const va = a[sort]
    const vb = b[sort]
    if (va === null || vb === null) return va === vb ? a.region.localeCompare(b.region) : va === null ? 1 : -1
    return vb - va || a.region.localeCompare(b.region)
  })
  const rows = list
    .map(
      (c, i) => `<tr data-region="${esc(c.region)}">
        <td class="n">${i + 1}</td>
        <td><a href="#/overview/${esc(c.region)}" class="drill">${esc(c.name)}</a></td>
        <td class="n">${num(c.certified)}</td><td class="n">${pct(c.registration_ratio)}</td>
        <td class="n">${num(c.shares)}</td><td class="n">${num(c.active)}</td><td class="n">${pct(c.activity_rate)}</td></tr>`,
    )
    .join('')
  return `<div class="table-wrap"><table class="children"><thead><tr><th class="n">排名</th><th>地区</th><th class="n">认证科普员</th><th class="n">注册比例</th><th class="n">传播量</th><th class="n">活跃人数</th><th class="n">活跃率</th></tr></thead><tbody>${rows}</tbody></table></div>`
}

async function renderOverview(ctx, view, region) {
  view.innerHTML = `<div class="loading">加载中…</div>`
  const q = region ? `region=${region}&` : ''
  const today = shanghaiDay()
  const first = await guarded(ctx, view, () => api(`/v1/kpis?${q}from=${today}&to=${today}`))
  if (!first || !ctx.alive) return
  learnKids(region, first)
  const [month, year] = await guarded(ctx, view, () =>
    Promise.all([api(`/v1/kpis?${q}from=${today.slice(0, 8)}01&to=${today}`), api(`/v1/kpis?${q}from=${today.slice(0, 5)}01-01&to=${today}`)]),
  ) ?? []
  if (!month || !ctx.alive) return
  let k = { region, name: first.name, at: 0, day: first, month, year }
  const isTown = region.length === 9
  let period = 'day'
  let sort = 'shares'
  view.innerHTML = `
    <div class="head">
      <div id="crumbs">${breadcrumb(region, 'overview')}</div>
      <div class="title"><h1 id="region-name">${esc(first.name)}</h1><span class="muted">${LEVEL[region.length] ?? ''} · 截至 <time id="updated"></time></span>
      <a class="button" href="#/leaders/${region}">查看排行榜</a></div>
    </div>
    <section class="kpis" id="cards"></section>
    <section class="charts">
      <div class="panel"><h2>近 30 天传播量与活跃人数</h2><div class="chart" id="chart-days"></div></div>
      <div class="panel"><h2>近 12 个月传播量</h2><div class="chart" id="chart-months"></div></div>
      <div class="panel"><h2>认证科普员累计（月末）</h2><div class="chart" id="chart-certified"></div></div>
    </section>
    <section class="panel" id="children-panel">
      ${
        isTown
          ? `<h2>下级单位</h2><p class="muted">乡镇（街道）是最小的统计地区；村、社区等单位的进度见“任务分解”。</p>`
          : `<div class="panel-head"><h2>下级地区排名</h2>
              <div class="seg" id="child-period">${[['day', '今日'], ['month', '本月'], ['year', '本年']].map(([p, l]) => `<button type="button" data-p="${p}">${l}</button>`).join('')}</div>
              <label class="inline">排序 <select id="child-sort">${Object.entries(SORTS).map(([v, l]) => `<option value="${v}">${l}</option>`).join('')}</select></label></div>
            <div id="children"></div><p class="muted small">点击地区名称查看下级详情。</p>`
      }
    </section>`
  const paint = () => {
    $('#cards', view).innerHTML = cards(k)
    $('#updated', view).textContent = new Date(k.at || Date.now()).toLocaleTimeString('zh-CN', { hour12: false })
    if (!isTown) {
      $('#children', view).innerHTML = childTable(k, period, sort)
      view.querySelectorAll('#child-period button').forEach((b) => b.classList.toggle('active', b.dataset.p === period))
    }
  }
  paint()
  performance.mark('kpis-rendered')
  if (!isTown) {
    $('#child-period', view).addEventListener('click', (ev) => {
      const p = ev.target.closest('button')?.dataset.p
      if (p) ((period = p), paint())
    })
    $('#child-sort', view).addEventListener('change', (ev) => ((sort = ev.target.value), paint()))
  }

  // Trends: after the cards, so they never hold up the first render.
  let trend = null
  const drawTrends = () => {
    if (!trend || !ctx.alive) return
    const [days, months] = trend
    drawChart($('#chart-days', view), {
      kind: 'line',
      labels: days.points.map((p) => p.period.slice(5)),
      series: [
        { name: '传播量', color: '#d9480f', values: days.points.map((p) => p.shares) },
        { name: '活跃人数', color: '#1971c2', values: days.points.map((p) => p.active) },
      ],
    })
    drawChart($('#chart-months', view), { kind: 'bar', labels: months.points.map((p) => p.period.slice(2)), series: [{ name: '传播量', color: '#e8590c', values: months.points.map((p) => p.shares) }] })
    drawChart($('#chart-certified', view), { kind: 'line', labels: months.points.map((p) => p.period.slice(2)), series: [{ name: '认证科普员', color: '#2f9e44', values: months.points.map((p) => p.certified) }] })
  }
  let trendAt = 0
  let trendBusy = false
  const loadTrends = async () => {
    if (trendBusy) return
    trendBusy = true
    trendAt = Date.now()
    try {
      const t = await Promise.all([api(`/v1/kpis/trend?${q}by=day`), api(`/v1/kpis/trend?${q}by=month`)])
      if (!ctx.alive) return
      trend = t
      learnPath(region, t[0].path)
      $('#crumbs', view).innerHTML = breadcrumb(region, 'overview')
      drawTrends()
    } catch (e) {
      if (ctx.alive && !(e instanceof ApiError && e.status === 401)) $('#chart-days', view).innerHTML = errorBox(e)
    } finally {
      trendBusy = false
    }
  }
  void loadTrends()
  let raf = 0
  const onResize = () => {
    cancelAnimationFrame(raf)
    raf = requestAnimationFrame(drawTrends)
  }
  addEventListener('resize', onResize)
  ctx.stops.push(() => removeEventListener('resize', onResize))

  // Live: every push carries today's, this month's and this year's KPIs with children.
  ctx.stops.push(
    live(region, {
      onState: (s) => ctx.alive && setLive(s),
      onKpis: (next) => {
        if (!ctx.alive || next.at < k.at) return
        k = next
        paint()
        if (Date.now() - trendAt > 5000) void loadTrends()
      },
    }),
  )
}

/* ---------- leaderboards ---------- */

async function renderLeaders(ctx, view, region, q) {
  const s = session.get()
  const inst = s.scope?.institution_id ?? null
  const period = PERIODS.some(([p]) => p === q.get('period')) ? q.get('period') : 'day'
  const metric = q.get('metric') === 'points' ? 'points' : 'shares'
  const date = /^\d{4}-\d{2}-\d{2}$/.test(q.get('date') ?? '') ? q.get('date') : shanghaiDay()
  const board = (extra) => {
    const p = new URLSearchParams({ metric, period, date, ...extra })
    if (inst) p.set('institution', inst)
    else if (region) p.set('region', region)
    return p.toString()
  }
  const link = (over) => {
    const p = new URLSearchParams({ period, metric, ...(q.get('date') ? { date } : {}), ...over })
    return `#/leaders/${region}?${p}`
  }
  view.innerHTML = `<div class="loading">加载中…</div>`
  if (!inst) {
    const ok = await guarded(ctx, view, () => learnRegion(region).then(() => true))
    if (!ok || !ctx.alive) return
  }
  const children = inst ? [] : kids.get(region) ?? []
  view.innerHTML = `
    <div class="head">
      <div id="crumbs">${inst ? '' : breadcrumb(region, 'leaders')}</div>
      <div class="title"><h1>${esc(inst ? `机构 ${inst}` : names.get(region) ?? region)} · 科普员排行榜</h1></div>
    </div>
    <section class="panel">
      <div class="panel-head wrap">
        <div class="seg" id="periods">${PERIODS.map(([p, l]) => `<a href="${link({ period: p })}" class="${p === period ? 'active' : ''}" data-period="${p}">${l}</a>`).join('')}</div>
        <div class="seg">${[['shares', '传播量'], ['points', '积分']].map(([m, l]) => `<a href="${link({ metric: m })}" class="${m === metric ? 'active' : ''}">${l}</a>`).join('')}</div>
        ${children.length ? `<label class="inline">下级地区 <select id="child"><option value="">（本级）</option>${children.map((c) => `<option value="${esc(c.code)}">${esc(c.name)}</option>`).join('')}</select></label>` : ''}
        <form id="find" class="inline"><input name="user" placeholder="科普员编号" aria-label="按科普员编号查找" maxlength="64" required><button type="submit">查找</button></form>
      </div>
      <p class="muted small" id="board-meta"></p>
      <div id="board"></div>
      <div class="pager"><button type="button" id="prev" disabled>上一页</button><button type="button" id="next" disabled>下一页</button></div>
    </section>`
  $('#child', view)?.addEventListener('change', (ev) => {
    if (ev.target.value) go(`#/leaders/${ev.target.value}?${new URLSearchParams({ period, metric })}`)
  })

  const PAGE = Math.min(100, Math.max(1, Number(q.get('limit')) || 20))
  let cursors = [null] // keyset cursors of the pages seen; the last is the current page
  let mode = { kind: 'top' } // or { kind: 'user', id }
  const rows = (entries, me) =>
    entries.length
      ? `<div class="table-wrap"><table class="board"><thead><tr><th class="n">排名</th><th>姓名</th><th>编号</th><th>地区</th><th class="n">${metric === 'points' ? '积分' : '传播量'}</th><th>达到时间</th></tr></thead><tbody>${entries
          .map(
            (e) => `<tr data-user="${esc(e.user_id)}" class="${e.user_id === me ? 'me' : ''}"><td class="n rank">${e.rank}</td><td>${esc(e.name)}</td><td class="muted">${esc(e.user_id)}</td>
              <td>${esc(names.get(e.region_code ?? '') ?? e.region_code ?? '')}</td><td class="n score">${num(e.score)}</td><td class="muted">${esc(e.reached_at.slice(5, 16).replace('T', ' '))}</td></tr>`,
          )
          .join('')}</tbody></table></div>`
      : `<p class="empty">该时段暂无上榜科普员。</p>`
  const load = coalesced(ctx, async () => {
    try {
      if (mode.kind === 'top') {
        const after = cursors[cursors.length - 1]
        const b = await api(`/v1/leaderboards?${board({ limit: String(PAGE), ...(after ? { after } : {}) })}`)
        if (!ctx.alive) return
        $('#board-meta', view).textContent = `${b.from ? `${b.from} 至 ${b.to}` : '全部时间'} · 共 ${num(b.total)} 人上榜`
        $('#board', view).innerHTML = rows(b.entries)
        $('#prev', view).disabled = cursors.length < 2
        $('#next', view).disabled = !b.next
        $('#next', view).dataset.cursor = b.next ?? ''
      } else {
        const u = await api(`/v1/leaderboards/users/${encodeURIComponent(mode.id)}?${board({ around: '5' })}`)
        if (!ctx.alive) return
        $('#board-meta', view).innerHTML = u.rank
          ? `科普员 ${esc(mode.id)}：第 <b>${u.rank}</b> 名，共 ${num(u.total)} 人 · <a href="#" id="back-top">返回榜首</a>`
          : `科普员 ${esc(mode.id)} 在该时段暂无计数 · <a href="#" id="back-top">返回榜首</a>`
        $('#board', view).innerHTML = rows(u.entries, mode.id)
        $('#prev', view).disabled = true
        $('#next', view).disabled = true
        $('#back-top', view).addEventListener('click', (ev) => {
          ev.preventDefault()
          mode = { kind: 'top' }
          cursors = [null]
          void load()
        })
      }
    } catch (e) {
      if (!ctx.alive || (e instanceof ApiError && e.status === 401)) return
      if (e instanceof ApiError && e.code === 'invalid_cursor' && cursors.length > 1) {
        cursors = [null] // the board moved on under the pages (a new day began): back to its top
        return void load()
      }
      if (mode.kind === 'user' && e instanceof ApiError && (e.status === 404 || e.status === 403)) {
        $('#board-meta', view).innerHTML = `${e.status === 404 ? '未找到该科普员' : '该科普员不在您的管辖范围内'} · <a href="#" id="back-top">返回榜首</a>`
        $('#board', view).innerHTML = ''
        $('#back-top', view).addEventListener('click', (ev) => {
          ev.preventDefault()
          mode = { kind: 'top' }
          void load()
        })
      } else view.innerHTML = errorBox(e)
    }
  })
  $('#next', view).addEventListener('click', (ev) => {
    const c = ev.currentTarget.dataset.cursor
    if (!c) return
    cursors.push(c)
    void load()
  })
  $('#prev', view).addEventListener('click', () => {
    if (cursors.length > 1) cursors.pop()
    void load()
  })
  $('#find', view).addEventListener('submit', (ev) => {
    ev.preventDefault()
    const id = new FormData(ev.target).get('user').trim()
    if (!id) return
    mode = { kind: 'user', id }
    void load()
  })
  await load()
  if (!ctx.alive || !$('#board', view)) return
  performance.mark('board-rendered')
  // Live: refresh the page shown whenever the region's numbers change.
  if (!inst) {
    let first = true
    ctx.stops.push(
      live(region, {
        onState: (st) => ctx.alive && setLive(st),
        onKpis: () => {
          if (first) return void (first = false)
          if (ctx.alive) void load()
        },
      }),
    )
  }
}

/* ---------- task breakdown ---------- */

function progress(p, elapsed) {
  const w = p.percent === null ? 0 : Math.min(100, p.percent * 100)
  return `<div class="progress ${p.on_schedule ? '' : 'late'}" title="时间进度 ${pct(elapsed)}"><span style="width:${w}%"></span><i style="left:${elapsed * 100}%"></i></div>
    <div class="small">${num(p.done)} / ${num(p.target)}（${p.percent === null ? '—' : pct(p.percent)}）</div>`
}

async function renderTasks(ctx, view, yearArg, q) {
  const thisYear = Number(shanghaiDay().slice(0, 4))
  const year = /^\d{4}$/.test(yearArg ?? '') ? Number(yearArg) : thisYear
  const behind = q.get('behind') === '1'
  view.innerHTML = `<div class="loading">加载中…</div>`
  const load = () => api(`/v1/tasks/${year}/progress${behind ? '?behind=true' : ''}`)
  const data = await guarded(ctx, view, load)
  if (!data || !ctx.alive) return
  view.innerHTML = `
    <div class="head"><div class="title"><h1>${year} 年任务分解</h1>
      <span class="muted">时间进度 <b id="elapsed"></b> · 落后于时间进度的单位标红</span></div></div>
    <section class="panel">
      <div class="panel-head wrap">
        <div class="seg">${[thisYear - 2, thisYear - 1, thisYear].map((y) => `<a href="#/tasks/${y}${behind ? '?behind=1' : ''}" class="${y === year ? 'active' : ''}">${y}</a>`).join('')}</div>
        <label class="inline"><input type="checkbox" id="behind" ${behind ? 'checked' : ''}> 只看落后单位</label>
        <span class="muted small" id="task-summary"></span>
      </div>
      <div id="tasks"></div>
    </section>`
  $('#behind', view).addEventListener('change', (ev) => go(`#/tasks/${year}${ev.target.checked ? '?behind=1' : ''}`))
  const paint = (d) => {
    $('#elapsed', view).textContent = pct(d.elapsed)
    const late = d.units.filter((u) => u.behind).length
    $('#task-summary', view).textContent = `${d.units.length} 个单位${behind ? '' : `，其中 ${late} 个落后`}`
    $('#tasks', view).innerHTML = d.units.length
      ? `<div class="table-wrap"><table class="tasks"><thead><tr><th>单位</th><th class="n">骨干科普信息员</th><th>注册任务</th><th>传播量任务</th><th>状态</th></tr></thead><tbody>${d.units
          .map(
            (u) => `<tr class="${u.behind ? 'behind' : ''}" data-unit="${esc(u.unit.region_code ?? u.unit.institution_id ?? '')}"><td>${esc(u.name)}</td><td class="n">${num(u.core_members)}</td>
              <td>${progress(u.registrations, d.elapsed)}</td><td>${progress(u.shares, d.elapsed)}</td>
              <td>${u.behind ? '<span class="badge late">落后</span>' : '<span class="badge ok">正常</span>'}</td></tr>`,
          )
          .join('')}</tbody></table></div>`
      : `<p class="empty">${behind ? '没有落后的单位。' : '本年度尚未下达任务分解表（可用 PUT /v1/tasks/{year} 或 CSV 导入）。'}</p>`
  }
  paint(data)
  // Live: progress follows the counts, refreshed at most every 3 s while events arrive.
  const region = scopeRegion(session.get())
  if (region !== null) {
    let last = 0
    let first = true
    ctx.stops.push(
      live(region, {
        onState: (st) => ctx.alive && setLive(st),
        onKpis: async () => {
          if (first) return void (first = false)
          if (Date.now() - last < 3000) return
          last = Date.now()
          try {
            const d = await load()
            if (ctx.alive) paint(d)
          } catch {
            /* keep the last figures */
          }
        },
      }),
    )
  }
}

/* ---------- campaigns ---------- */

const STATUS = { scheduled: '未开始', running: '进行中', settling: '结算中', final: '已结束', cancelled: '已取消' }
const METRIC = { shares: '传播量', points: '积分' }
const statusBadge = (st) => `<span class="badge st-${esc(st)}" data-status="${esc(st)}">${esc(STATUS[st] ?? st)}</span>`
/** API times are Shanghai time with the offset: "2024-05-01T08:00:00.000+08:00" → "2024-05-01 08:00". */
const when = (iso) => (iso ? String(iso).slice(0, 16).replace('T', ' ') : '—')
/** The end is exclusive: a window ending at midnight is shown as "<the day before> 24:00". */
function endText(iso) {
  const t = when(iso)
  if (!t.endsWith(' 00:00')) return t
  const day = new Date(Date.parse(`${t.slice(0, 10)}T00:00:00Z`) - 86400_000).toISOString().slice(0, 10)
  return `${day} 24:00`
}
const windowText = (c) => `${when(c.starts_at)} 至 ${endText(c.ends_at)}`
const targetName = (c) => (c.region_code !== null ? names.get(c.region_code) ?? c.region_code : c.institution_id ? `机构 ${c.institution_id}` : '全国')
const rankText = (t) => (t.from_rank === t.to_rank ? `第 ${t.from_rank} 名` : `第 ${t.from_rank}–${t.to_rank} 名`)
const tiersText = (c) => (c.tiers.length ? c.tiers.map((t) => `${rankText(t)}：${esc(t.prize)}`).join('；') : '未设奖项')
const hasEnded = (c) => Date.parse(c.ends_at) <= Date.now()
/** Her scope covers the campaign (the API checks it again): she organises it and may settle it. */
function organises(c) {
  const s = session.get()
  if (s?.role === 'operator') return true
  if (s?.scope?.region_code) return c.region_code !== null && c.region_code.startsWith(s.scope.region_code)
  if (s?.scope?.institution_id) return c.institution_id === s.scope.institution_id
  return false
}
const campaignPath = (id) => `/v1/campaigns/${encodeURIComponent(id)}`

/** Names of the regions in `codes` (communicators' towns), learned from their parent's KPIs once. */
const namesTried = new Set()
async function learnNames(codes) {
  const own = scopeRegion(session.get())
  if (own === null) return false
  const parents = new Set()
  for (const code of codes) {
    if (!code || names.has(code)) continue
    const parent = code.length === 9 ? code.slice(0, 6) : code.length === 6 ? code.slice(0, 4) : code.slice(0, 2)
    if (parent.startsWith(own) && !kids.has(parent) && !namesTried.has(parent)) parents.add(parent)
  }
  if (!parents.size) return false
  await Promise.all(
    [...parents].map(async (p) => {
      namesTried.add(p)
      try {
        learnKids(p, await api(`/v1/kpis?region=${p}`))
      } catch {
        /* names are a nicety: the code stays */
      }
    }),
  )
  return true
}

async function renderCampaignList(ctx, view, q) {
  const s = session.get()
  const own = scopeRegion(s)
  const status = Object.hasOwn(STATUS, q.get('status') ?? '') ? q.get('status') : ''
  view.innerHTML = `<div class="loading">加载中…</div>`
  if (own !== null) {
    try {
      await learnRegion(own)
    } catch {
      /* names only */
    }
    if (!ctx.alive) return
  }
  const scopeName = own !== null ? names.get(own) ?? own : s.scope?.institution_id ? `机构 ${s.scope.institution_id}` : '全国'
  view.innerHTML = `
    <div class="head"><div class="title"><h1>竞赛活动</h1><span class="muted">${esc(scopeName)}及下级的竞赛，最新创建的在前</span>
      <a class="button primary" href="#/campaigns/new" id="new-campaign">新建竞赛</a></div></div>
    <section class="panel">
      <div class="panel-head wrap">
        <div class="seg" id="statuses">${[['', '全部'], ...Object.entries(STATUS)].map(([v, l]) => `<a href="#/campaigns${v ? `?status=${v}` : ''}" class="${v === status ? 'active' : ''}" data-filter="${v}">${l}</a>`).join('')}</div>
        <span class="muted small" id="campaigns-meta"></span>
      </div>
      <div id="campaigns"></div>
      <div class="pager"><button type="button" id="prev" disabled>上一页</button><button type="button" id="next" disabled>下一页</button></div>
    </section>`
  const PAGE = Math.min(100, Math.max(1, Number(q.get('limit')) || 20))
  const cursors = [null]
  const load = async () => {
    const after = cursors[cursors.length - 1]
    const p = new URLSearchParams({ limit: String(PAGE) })
    if (status) p.set('status', status)
    if (after) p.set('after', after)
    const r = await guarded(ctx, view, () => api(`/v1/campaigns?${p}`))
    if (!r || !ctx.alive) return
    $('#campaigns-meta', view).textContent = r.entries.length ? `本页 ${r.entries.length} 项` : ''
    $('#campaigns', view).innerHTML = r.entries.length
      ? `<div class="table-wrap"><table class="campaigns"><thead><tr><th>名称</th><th>状态</th><th>范围</th><th>时间窗口</th><th>指标</th><th class="n">基础任务</th><th class="n">奖励名额</th></tr></thead><tbody>${r.entries
          .map(
            (c) => `<tr data-campaign="${esc(c.id)}"><td><a href="#/campaigns/${esc(c.id)}" class="open">${esc(c.name)}</a></td><td>${statusBadge(c.status)}</td>
              <td>${esc(targetName(c))}</td><td class="muted">${esc(windowText(c))}</td><td>${METRIC[c.metric] ?? esc(c.metric)}</td>
              <td class="n">${num(c.min_score)}</td><td class="n">前 ${num(c.top_n)} 名</td></tr>`,
          )
          .join('')}</tbody></table></div>`
      : `<p class="empty">${status ? `没有“${STATUS[status]}”的竞赛。` : '辖区内还没有竞赛。'}<a href="#/campaigns/new">新建竞赛</a></p>`
    $('#prev', view).disabled = cursors.length < 2
    $('#next', view).disabled = !r.next
    $('#next', view).dataset.cursor = r.next ?? ''
  }
  $('#next', view).addEventListener('click', (ev) => {
    const c = ev.currentTarget.dataset.cursor
    if (c) (cursors.push(c), void load())
  })
  $('#prev', view).addEventListener('click', () => {
    if (cursors.length > 1) (cursors.pop(), void load())
  })
  await load()
}

async function renderCampaign(ctx, view, id, q) {
  view.innerHTML = `<div class="loading">加载中…</div>`
  let c = await guarded(ctx, view, () => api(campaignPath(id)))
  if (!c || !ctx.alive) return
  if (c.region_code !== null) {
    try {
      await learnRegion(c.region_code)
    } catch {
      /* names only */
    }
    if (!ctx.alive) return
  }
  const metricName = METRIC[c.metric] ?? c.metric
  view.innerHTML = `
    <div class="head">
      <nav class="crumbs" aria-label="位置"><a href="#/campaigns">竞赛活动</a><i>›</i><span aria-current="page">${esc(c.name)}</span></nav>
      <div class="title"><h1 id="campaign-name">${esc(c.name)}</h1><span id="campaign-status"></span>
        <div class="actions"><button type="button" id="csv" data-ext="csv">下载CSV</button><button type="button" id="xlsx" data-ext="xlsx">下载Excel</button><button type="button" id="settle" class="primary" hidden>结算</button></div></div>
      <div id="settle-box"></div>
      <dl class="facts" id="campaign-facts"></dl>
    </div>
    <section class="panel">
      <div class="panel-head wrap"><h2 id="standings-title">实时排名</h2>
        <form id="find" class="inline"><input name="user" placeholder="科普员编号" aria-label="按科普员编号查找" maxlength="64" required><button type="submit">查找</button></form>
        <span class="muted small" id="standings-meta"></span></div>
      <div id="standings"></div>
      <div class="pager"><button type="button" id="prev" disabled>上一页</button><button type="button" id="next" disabled>下一页</button></div>
    </section>`

  const paintHead = () => {
    $('#campaign-status', view).innerHTML = statusBadge(c.status)
    const settleAt = new Date(Date.parse(c.ends_at) + c.grace_seconds * 1000).toISOString()
    const facts = [
      ['范围', esc(targetName(c))],
      ['时间窗口', esc(windowText(c))],
      ['指标', esc(metricName)],
      ['基础任务', `${esc(metricName)}达到 ${num(c.min_score)}`],
      ['奖励名额', `前 ${num(c.top_n)} 名`],
      ['奖项', tiersText(c)],
      c.status === 'final'
        ? ['结算时间', esc(when(c.settled_at))]
        : c.status === 'cancelled'
          ? ['取消时间', esc(when(c.cancelled_at))]
          : ['自动结算', `${esc(when(shanghaiIsoOf(settleAt)))}（结束后宽限 ${num(Math.round(c.grace_seconds / 60))} 分钟）`],
    ]
    $('#campaign-facts', view).innerHTML = facts.map(([k, v]) => `<div><dt>${k}</dt><dd>${v}</dd></div>`).join('')
    $('#settle', view).hidden = !(organises(c) && (c.status === 'running' || c.status === 'settling') && hasEnded(c))
    $('#standings-title', view).textContent = c.status === 'final' ? '最终排名（已冻结）' : c.status === 'scheduled' ? '排名（未开始）' : '实时排名'
  }
  paintHead()

  // Standings: the top pages by keyset cursor, or one person with neighbours.
  const PAGE = Math.min(100, Math.max(1, Number(q.get('limit')) || 20))
  let cursors = [null]
  let mode = { kind: 'top' }
  let shown = { entries: [], me: null }
  const rows = (entries, me) =>
    entries.length
      ? `<div class="table-wrap"><table class="standings"><thead><tr><th class="n">名次</th><th>姓名</th><th class="n">${esc(metricName)}</th><th>奖项</th><th>编号</th><th>地区</th><th>达到时间</th></tr></thead><tbody>${entries
          .map(
            (e) => `<tr data-user="${esc(e.user_id)}" class="${[e.eligible ? '' : 'ineligible', e.user_id === me ? 'me' : ''].join(' ').trim()}"><td class="n rank">${e.rank}</td><td>${esc(e.name)}</td><td class="n score">${num(e.score)}</td>
              <td class="prize">${e.prize ? `<span class="badge prize">${esc(e.prize)}</span>` : e.eligible ? '<span class="muted">—</span>' : '<span class="badge inel">未完成基础任务</span>'}</td>
              <td class="muted">${esc(e.user_id)}</td><td>${esc(names.get(e.region_code ?? '') ?? e.region_code ?? '')}</td><td class="muted">${esc(when(e.reached_at))}</td></tr>`,
          )
          .join('')}</tbody></table></div>`
      : `<p class="empty">${c.status === 'scheduled' ? '竞赛尚未开始。' : '暂无参赛记录。'}</p>`
  const paintRows = (entries, me) => {
    shown = { entries, me }
    $('#standings', view).innerHTML = rows(entries, me)
    // Town names arrive a moment later; the rows are repainted then.
    void learnNames(entries.map((e) => e.region_code)).then((learned) => {
      if (learned && ctx.alive && shown.entries === entries) $('#standings', view).innerHTML = rows(entries, me)
    })
  }
  const backTop = () => {
    $('#back-top', view)?.addEventListener('click', (ev) => {
      ev.preventDefault()
      mode = { kind: 'top' }
      cursors = [null]
      void load()
    })
  }
  /** The campaign moved on by itself (running → settling → final): read it again. */
  const follow = async (status) => {
    if (status === c.status) return
    const next = await api(campaignPath(c.id))
    if (!ctx.alive) return
    c = next
    paintHead()
  }
  let lastLoad = 0
  const load = coalesced(ctx, async () => {
    lastLoad = Date.now()
    try {
      if (mode.kind === 'top') {
        const after = cursors[cursors.length - 1]
        const p = new URLSearchParams({ limit: String(PAGE) })
        if (after) p.set('after', after)
        const b = await api(`${campaignPath(c.id)}/standings?${p}`)
        if (!ctx.alive) return
        $('#standings-meta', view).textContent = `共 ${num(b.total)} 人${b.status === 'final' ? ' · 已冻结' : ''}`
        paintRows(b.entries, null)
        $('#prev', view).disabled = cursors.length < 2
        $('#next', view).disabled = !b.next
        $('#next', view).dataset.cursor = b.next ?? ''
        await follow(b.status)
      } else {
        const u = await api(`${campaignPath(c.id)}/standings/users/${encodeURIComponent(mode.id)}?around=5`)
        if (!ctx.alive) return
        $('#standings-meta', view).innerHTML = u.rank
          ? `科普员 ${esc(mode.id)}：第 <b>${u.rank}</b> 名，共 ${num(u.total)} 人 · <a href="#" id="back-top">返回榜首</a>`
          : `科普员 ${esc(mode.id)} 在本竞赛暂无成绩 · <a href="#" id="back-top">返回榜首</a>`
        paintRows(u.entries, mode.id)
        $('#prev', view).disabled = true
        $('#next', view).disabled = true
        backTop()
      }
    } catch (e) {
      if (!ctx.alive || (e instanceof ApiError && e.status === 401)) return
      if (e instanceof ApiError && e.code === 'invalid_cursor' && cursors.length > 1) {
        cursors = [null] // the standings moved on under the pages (the campaign was settled): back to the top
        return void load()
      }
      if (mode.kind === 'user' && e instanceof ApiError && (e.status === 404 || e.status === 403)) {
        $('#standings-meta', view).innerHTML = `${e.status === 404 ? '未找到该科普员' : '该科普员不在您的管辖范围内'} · <a href="#" id="back-top">返回榜首</a>`
        $('#standings', view).innerHTML = ''
        backTop()
      } else $('#standings', view).innerHTML = errorBox(e)
    }
  })
  $('#next', view).addEventListener('click', (ev) => {
    const cur = ev.currentTarget.dataset.cursor
    if (cur) (cursors.push(cur), void load())
  })
  $('#prev', view).addEventListener('click', () => {
    if (cursors.length > 1) (cursors.pop(), void load())
  })
  $('#find', view).addEventListener('submit', (ev) => {
    ev.preventDefault()
    const who = String(new FormData(ev.target).get('user') ?? '').trim()
    if (!who) return
    mode = { kind: 'user', id: who }
    void load()
  })

  // CSV / XLSX: fetched with the token in the header, saved through a Blob.
  const save = async (ev) => {
    const btn = ev.currentTarget
    const ext = btn.dataset.ext
    btn.disabled = true
    try {
      await download(`${campaignPath(c.id)}/standings.${ext}`, `${c.name.replace(/[\\/:*?"<>|\s]+/g, '_')}-排名.${ext}`)
    } catch (e) {
      if (ctx.alive && !(e instanceof ApiError && e.status === 401)) $('#settle-box', view).innerHTML = `<p class="notice bad" role="alert">下载失败：${esc(e?.message ?? e)}</p>`
    } finally {
      btn.disabled = false
    }
  }
  $('#csv', view).addEventListener('click', save)
  $('#xlsx', view).addEventListener('click', save)

  // Settle: a confirm step, then POST …/settle; the status shown is the one the API answers.
  $('#settle', view).addEventListener('click', () => {
    const box = $('#settle-box', view)
    box.innerHTML = `<div class="confirm" role="alertdialog" aria-labelledby="settle-q"><p id="settle-q">确认立即结算“${esc(c.name)}”？结算后排名冻结、奖项确定，不能撤销；宽限期内尚未到达的数据将不再计入。</p>
      <button type="button" id="settle-confirm" class="primary">确认结算</button> <button type="button" id="settle-cancel">取消</button></div>`
    $('#settle-cancel', box).addEventListener('click', () => (box.innerHTML = ''))
    $('#settle-confirm', box).addEventListener('click', async (ev) => {
      ev.currentTarget.disabled = true
      try {
        const done = await api(`${campaignPath(c.id)}/settle`, { method: 'POST' })
        if (!ctx.alive) return
        c = done
        paintHead()
        box.innerHTML = `<p class="notice ok" id="settle-result" role="status">${statusBadge(c.status)} 已于 ${esc(when(c.settled_at))} 结算，排名已冻结。</p>`
        mode = { kind: 'top' }
        cursors = [null]
        void load()
      } catch (e) {
        if (!ctx.alive || (e instanceof ApiError && e.status === 401)) return
        const why =
          e instanceof ApiError && e.code === 'not_ended' ? '竞赛时间窗口尚未结束，不能结算。'
          : e instanceof ApiError && e.code === 'settling' ? '正在结算中，请稍后刷新。'
          : e instanceof ApiError && e.code === 'cancelled' ? '竞赛已取消，不能结算。'
          : `结算失败：${e?.message ?? e}`
        box.innerHTML = `<p class="notice bad" id="settle-result" role="alert">${esc(why)}</p>`
      }
    })
  })

  await load()
  if (!ctx.alive) return
  performance.mark('standings-rendered')
  // Live: a push means a stored batch touched the region; refetch the page shown, at most once a second.
  if (c.status !== 'final' && c.status !== 'cancelled') {
    let first = true
    let timer = 0
    ctx.stops.push(() => clearTimeout(timer))
    ctx.stops.push(
      live(c.region_code ?? scopeRegion(session.get()) ?? '', {
        onState: (st) => ctx.alive && setLive(st),
        onKpis: () => {
          if (first) return void (first = false)
          if (!ctx.alive || c.status === 'final' || c.status === 'cancelled' || timer) return
          timer = setTimeout(() => ((timer = 0), void load()), Math.max(0, lastLoad + 1000 - Date.now()))
        },
      }),
    )
  }
}

/** An ISO instant (UTC "Z") as Shanghai time with the offset, like the API writes them. */
function shanghaiIsoOf(iso) {
  return new Date(Date.parse(iso) + 8 * 3600_000).toISOString().replace('Z', '+08:00')
}

async function renderCampaignForm(ctx, view) {
  const s = session.get()
  const own = scopeRegion(s)
  const inst = s.scope?.institution_id ?? null
  view.innerHTML = `<div class="loading">加载中…</div>`
  if (own !== null) {
    const ok = await guarded(ctx, view, () => learnRegion(own).then(() => true))
    if (!ok || !ctx.alive) return
  }
  const regions = own === null ? [] : [{ code: own, name: names.get(own) ?? (own || '全国') }, ...(kids.get(own) ?? [])]
  const day = (offset) => shanghaiDay(Date.now() + offset * 86400_000)
  view.innerHTML = `
    <div class="head"><nav class="crumbs" aria-label="位置"><a href="#/campaigns">竞赛活动</a><i>›</i><span aria-current="page">新建竞赛</span></nav>
      <div class="title"><h1>新建竞赛</h1><span class="muted">时间按北京时间；结束日期当天也计入</span></div></div>
    <form id="campaign-form" class="panel form" novalidate>
      <label class="wide">名称<input name="name" required maxlength="100" placeholder="例如：${esc(regions[0]?.name ?? '')}科普转发竞赛"></label>
      ${
        inst
          ? `<label>范围<input value="机构 ${esc(inst)}" disabled></label>`
          : `<label>范围<select name="region_code">${regions.map((r, i) => `<option value="${esc(r.code)}"${i === 0 ? ' selected' : ''}>${esc(r.name)}${i === 0 ? '（本级）' : ''}</option>`).join('')}</select></label>`
      }
      <label>指标<select name="metric"><option value="shares">传播量</option><option value="points">积分</option></select></label>
      <label>开始日期<input type="date" name="starts_at" required value="${day(1)}"></label>
      <label>结束日期（含）<input type="date" name="ends_at" required value="${day(7)}"></label>
      <label>基础任务（最低成绩）<input type="number" name="min_score" min="0" step="1" value="10" inputmode="numeric"></label>
      <label>奖励名额（前 N 名）<input type="number" name="top_n" min="1" max="1000" step="1" value="10" inputmode="numeric"></label>
      <fieldset class="wide"><legend>奖项（按名次区间，未完成基础任务者不获奖）</legend>
        <div class="table-wrap"><table class="tiers"><thead><tr><th>自第几名</th><th>至第几名</th><th>奖项名称</th><th></th></tr></thead><tbody id="tier-rows"></tbody></table></div>
        <button type="button" id="add-tier">添加奖项</button></fieldset>
      <p class="error-text wide" role="alert" id="form-error"></p>
      <div class="wide actions"><button type="submit" class="primary">创建竞赛</button> <a class="button" href="#/campaigns">取消</a></div>
    </form>`
  const body = $('#tier-rows', view)
  const addTier = (from = '', to = '', prize = '') => {
    const tr = document.createElement('tr')
    tr.innerHTML = `<td><input name="from_rank" type="number" min="1" step="1" value="${esc(from)}" aria-label="自第几名" inputmode="numeric"></td>
      <td><input name="to_rank" type="number" min="1" step="1" value="${esc(to)}" aria-label="至第几名" inputmode="numeric"></td>
      <td><input name="prize" maxlength="64" value="${esc(prize)}" aria-label="奖项名称"></td>
      <td><button type="button" class="link remove" aria-label="删除该奖项">删除</button></td>`
    tr.querySelector('.remove').addEventListener('click', () => tr.remove())
    body.append(tr)
  }
  addTier(1, 1, '一等奖')
  addTier(2, 3, '二等奖')
  addTier(4, 10, '三等奖')
  $('#add-tier', view).addEventListener('click', () => addTier())
  const form = $('#campaign-form', view)
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const fd = new FormData(form)
    const n = (v) => (String(v ?? '').trim() === '' ? undefined : Number(v))
    const payload = {
      name: String(fd.get('name') ?? ''),
      ...(inst ? { institution_id: inst } : { region_code: String(fd.get('region_code') ?? '') || undefined }),
      starts_at: String(fd.get('starts_at') ?? ''),
      ends_at: String(fd.get('ends_at') ?? ''),
      metric: String(fd.get('metric') ?? 'shares'),
      min_score: n(fd.get('min_score')),
      top_n: n(fd.get('top_n')),
      tiers: [...body.querySelectorAll('tr')]
        .map((tr) => ({ from_rank: n(tr.querySelector('[name=from_rank]').value), to_rank: n(tr.querySelector('[name=to_rank]').value), prize: tr.querySelector('[name=prize]').value }))
        .filter((t) => t.from_rank !== undefined || t.to_rank !== undefined || t.prize.trim() !== ''),
    }
    const btn = form.querySelector('button[type=submit]')
    btn.disabled = true
    $('#form-error', view).textContent = ''
    try {
      const created = await api('/v1/campaigns', { method: 'POST', body: payload })
      if (ctx.alive) go(`#/campaigns/${created.id}`)
    } catch (e) {
      if (!ctx.alive || (e instanceof ApiError && e.status === 401)) return
      $('#form-error', view).textContent =
        e instanceof ApiError && e.status === 400 ? `输入有误（400）：${e.message}` : e instanceof ApiError && e.status === 403 ? '无权在该范围创建竞赛（403）' : `创建失败：${e?.message ?? e}`
      btn.disabled = false
    }
  })
}

function renderCampaigns(ctx, view, arg, q) {
  if (arg === 'new') return renderCampaignForm(ctx, view)
  if (arg) return renderCampaign(ctx, view, arg, q)
  return renderCampaignList(ctx, view, q)
}

/* ---------- router ---------- */

function render() {
  const s = session.get()
  if (!s) return renderLogin()
  const { view: name, arg, q } = parseHash()
  const ctx = context()
  const own = scopeRegion(s)
  const view = shell(name)
  if (name === 'tasks') return void renderTasks(ctx, view, arg, q)
  if (name === 'campaigns') return void renderCampaigns(ctx, view, arg, q)
  // A region in the hash is only a request: the API decides whether she may see it.
  const region = arg !== null && /^(\d{2}|\d{4}|\d{6}|\d{9})?$/.test(arg) ? arg : own ?? ''
  if (name === 'leaders') return void renderLeaders(ctx, view, region, q)
  return void renderOverview(ctx, view, region)
}

authEvents.addEventListener('expired', () => {
  session.clear()
  renderLogin('登录已过期，请重新登录')
})
addEventListener('hashchange', render)
render()
