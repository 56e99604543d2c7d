// The dashboard's only link to the service: JSON calls with the login token, and the live stream.
// The page is a client: every number comes from the API, which checks the official's scope.

const KEY = 'kepu.session'

/** The login (token, expiry, scope, name) lives in sessionStorage: gone when the tab closes. */
export const session = {
  get() {
    try {
      const s = JSON.parse(sessionStorage.getItem(KEY) ?? 'null')
      if (s && typeof s.token === 'string' && Date.parse(s.expires_at) > Date.now()) return s
    } catch {
      /* unreadable: treat as logged out */
    }
    return null
  },
  set(s) {
    sessionStorage.setItem(KEY, JSON.stringify(s))
  },
  clear() {
    sessionStorage.removeItem(KEY)
  },
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** Fires when the API says the token is no longer good (401): the app shows the login again. */
export const authEvents = new EventTarget()

function headers(extra = {}) {
  const h = { accept: 'application/json', ...extra }
  const s = session.get()
  if (s) h.authorization = `Bearer ${s.token}`
  return h
}

export async function api(path, { method = 'GET', body, signal } = {}) {
  const r = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  })
  let json = null
  try {
    json = await r.json()
  } catch {
    /* not JSON */
  }
  if (!r.ok) {
    const e = json?.error
    if (r.status === 401 && !path.startsWith('/v1/auth/')) authEvents.dispatchEvent(new Event('expired'))
    throw new ApiError(r.status, e?.code ?? `http_${r.status}`, e?.message ?? r.statusText)
  }
  return json
}

/**
 * Downloads a file the API serves (e.g. a campaign's standings as CSV or XLSX): fetched with the token in the
 * header (never in the URL), then saved through a Blob URL and an `<a download>`.
 */
export async function download(path, filename) {
  const r = await fetch(path, { headers: headers({ accept: '*/*' }) })
  if (!r.ok) {
    let e = null
    try {
      e = (await r.json())?.error
    } catch {
      /* not JSON */
    }
    if (r.status === 401) authEvents.dispatchEvent(new Event('expired'))
    throw new ApiError(r.status, e?.code ?? `http_${r.status}`, e?.message ?? r.statusText)
  }
  const url = URL.createObjectURL(await r.blob())
  const a = document.createElement('a')
  a.href = url
  a.download = filename
  a.hidden = true
  document.body.append(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 60_000)
}

export async function login(phone, password) {
  const r = await api('/v1/auth/login', { method: 'POST', body: { phone, password } })
  session.set({ token: r.token, expires_at: r.expires_at, scope: r.scope, role: r.role, name: r.name })
  return r
}

const sleep = (ms, signal) =>
  new Promise((res) => {
    const t = setTimeout(res, ms)
    signal.addEventListener('abort', () => (clearTimeout(t), res()), { once: true })
  })

/**
 * Live KPIs of a region: GET /v1/live read with fetch (EventSource cannot send the Authorization
 * header, and tokens never go into URLs). Calls onKpis for every `kpis` event and onState with
 * 'connecting' | 'live' | 'retry' | 'forbidden'; reconnects with back-off until stopped.
 * Returns stop().
 */
export function live(region, { onKpis, onState }) {
  const ctl = new AbortController()
  const { signal } = ctl
  void (async () => {
    let wait = 1000
    while (!signal.aborted) {
      onState('connecting')
      try {
        const r = await fetch(`/v1/live${region ? `?region=${encodeURIComponent(region)}` : ''}`, { headers: headers({ accept: 'text/event-stream' }), signal })
        if (r.status === 401) {
          authEvents.dispatchEvent(new Event('expired'))
          return
        }
        if (r.status === 403 || r.status === 404 || r.status === 400) {
          onState('forbidden')
          return
        }
        if (!r.ok || !r.body) throw new Error(`live: ${r.status}`)
        onState('live')
        wait = 1000
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader()
        let buf = ''
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          buf += value.replace(/\r\n?/g, '\n')
          let i
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i)
            buf = buf.slice(i + 2)
            let event = 'message'
            const data = []
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim()
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
            }
            if (event === 'kpis' && data.length) onKpis(JSON.parse(data.join('\n')))
          }
        }
      } catch {
        /* dropped, aborted or unreachable: retry below unless stopped */
      }
      if (signal.aborted) return
      onState('retry')
      await sleep(wait, signal)
      wait = Math.min(wait * 2, 10_000)
    }
  })()
  return () => ctl.abort()
}
