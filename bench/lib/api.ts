/** Thin HTTP client for the service's public API (only 127.0.0.1). */
export class Api {
  constructor(
    public base: string,
    public adminToken: string,
    public appKey = '',
  ) {}

  async call(method: string, path: string, opts: { token?: string; body?: string | object; type?: string; timeoutMs?: number } = {}) {
    const headers: Record<string, string> = { authorization: `Bearer ${opts.token ?? this.adminToken}` }
    let body: string | undefined
    if (opts.body !== undefined) {
      body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body)
      headers['content-type'] = opts.type ?? 'application/json'
    }
    const r = await fetch(this.base + path, { method, headers, body, signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000) })
    const text = await r.text()
    let json: any
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: r.status, json, text }
  }

  async createApp(name: string): Promise<string> {
    const r = await this.call('POST', '/v1/apps', { body: { name } })
    if (r.status !== 201) throw new Error(`POST /v1/apps: ${r.status} ${r.text.slice(0, 300)}`)
    this.appKey = r.json.key
    return this.appKey
  }

  /** POSTs a prepared {events:[…]} body with the app key. */
  async postEvents(body: string): Promise<{ status: number; json: any; text: string }> {
    return this.call('POST', '/v1/events', { token: this.appKey, body, timeoutMs: 30_000 })
  }

  async metricsText(): Promise<string> {
    const r = await fetch(this.base + '/metrics', { signal: AbortSignal.timeout(5000) })
    return r.text()
  }

  async metrics(): Promise<Metrics> {
    return parseMetrics(await this.metricsText())
  }
}

/** Prometheus text → name{labels} → value, plus helpers to sum a family. */
export class Metrics {
  constructor(public samples: Map<string, number>) {}
  /** Sum of every sample of `name` whose labels include all of `match`. */
  sum(name: string, match: Record<string, string> = {}): number {
    let s = 0
    for (const [k, v] of this.samples) {
      const brace = k.indexOf('{')
      const n = brace < 0 ? k : k.slice(0, brace)
      if (n !== name) continue
      const labels = brace < 0 ? '' : k.slice(brace)
      if (Object.entries(match).every(([lk, lv]) => labels.includes(`${lk}="${lv}"`))) s += v
    }
    return s
  }
}

export function parseMetrics(text: string): Metrics {
  const m = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    if (i < 0) continue
    const v = Number(line.slice(i + 1))
    if (Number.isFinite(v)) m.set(line.slice(0, i), v)
  }
  return new Metrics(m)
}
