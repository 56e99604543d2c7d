// Small SVG charts drawn at the container's real width (text stays readable on a phone); no library.

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c])

function niceMax(v) {
  if (v <= 0) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p
  return 10 * p
}

const fmt = (n) => (n >= 10000 ? `${(n / 10000).toFixed(n >= 100000 ? 0 : 1)}万` : Number.isInteger(n) ? String(n) : n.toFixed(1))

/**
 * Draws into `el`: kind 'line' or 'bar'; labels (x); series [{name, color, values}]. The first
 * series of a bar chart is drawn as bars, the others as lines.
 */
export function drawChart(el, { kind = 'line', labels, series, height = 180 }) {
  const W = Math.max(260, Math.floor(el.clientWidth || 600))
  const H = height
  const pad = { l: 44, r: 10, t: 10, b: 26 }
  const iw = W - pad.l - pad.r
  const ih = H - pad.t - pad.b
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter((v) => v !== null))))
  const n = labels.length
  const x = (i) => pad.l + (kind === 'bar' ? (iw / n) * (i + 0.5) : n > 1 ? (iw / (n - 1)) * i : iw / 2)
  const y = (v) => pad.t + ih - (v / max) * ih
  const parts = []
  for (let k = 0; k <= 4; k++) {
    const v = (max / 4) * k
    parts.push(`<line x1="${pad.l}" x2="${W - pad.r}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`)
    parts.push(`<text x="${pad.l - 6}" y="${y(v) + 4}" text-anchor="end" class="tick">${fmt(v)}</text>`)
  }
  const every = Math.max(1, Math.ceil(n / Math.floor(iw / 56)))
  labels.forEach((l, i) => {
    // Every `every`-th label, and the last one unless it would touch the one before it.
    const show = i === n - 1 || (i % every === 0 && (n - 1 - i >= every || n - 1 - i === 0))
    // The last label ends at the chart's edge instead of being cut by it.
    const [tx, anchor] = i === n - 1 && n > 1 ? [Math.min(W - 2, x(i) + 12), 'end'] : [x(i), 'middle']
    if (show) parts.push(`<text x="${tx}" y="${H - 8}" text-anchor="${anchor}" class="tick">${esc(l)}</text>`)
  })
  series.forEach((s, si) => {
    if (kind === 'bar' && si === 0) {
      const bw = Math.max(2, (iw / n) * 0.6)
      s.values.forEach((v, i) => {
        if (v === null) return
        parts.push(`<rect x="${x(i) - bw / 2}" y="${y(v)}" width="${bw}" height="${Math.max(0, pad.t + ih - y(v))}" fill="${s.color}" rx="2"><title>${esc(labels[i])} ${esc(s.name)}：${v}</title></rect>`)
      })
      return
    }
    const pts = s.values.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean)
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"/>`)
    s.values.forEach((v, i) => {
      if (v !== null) parts.push(`<circle cx="${x(i)}" cy="${y(v)}" r="${n > 40 ? 1.5 : 2.5}" fill="${s.color}"><title>${esc(labels[i])} ${esc(s.name)}：${v}</title></circle>`)
    })
  })
  const legend = series.map((s) => `<span><i style="background:${s.color}"></i>${esc(s.name)}</span>`).join('')
  el.innerHTML = `<div class="legend">${legend}</div><svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img">${parts.join('')}</svg>`
}
