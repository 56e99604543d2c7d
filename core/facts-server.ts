import { timingSafeEqual } from 'node:crypto'
import type { Server } from 'node:http'
import { Readable } from 'node:stream'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import type { Logger } from 'pino'

/**
 * The embedded ClickHouse (chDB) of one process, served to the other processes of a distributed
 * layout over the part of ClickHouse's HTTP interface that `@clickhouse/client` speaks: POST with the
 * SQL in the body or in `query`, the rows of an INSERT in the body, `param_*` query parameters,
 * settings as URL parameters, errors as ClickHouse writes them, GET /ping.
 *
 * chDB opens its data directory in one process only; this is how several aggregators, ingest and API
 * processes reach that one store: each sets CLICKHOUSE_URL to this server and uses the same client
 * and SQL as against a ClickHouse server. An aggregator's insert returns once chDB holds the rows,
 * so "acked only after the facts are stored" holds as before. With a real ClickHouse server
 * (CLICKHOUSE_URL to it) nothing runs this.
 *
 * Only `user` with `password` may query (HTTP basic auth or X-ClickHouse-User / X-ClickHouse-Key).
 */
/** The user the facts role serves (its password: the admin token): CLICKHOUSE_URL=http://kepu:<token>@host:port */
export const FACTS_USER = 'kepu'

export interface ChdbLike {
  exec(params: {
    query: string
    values?: Readable
    clickhouse_settings?: Record<string, unknown>
    query_id?: string
  }): Promise<{ stream: Readable; query_id: string; summary?: unknown }>
}

/** URL parameters that steer the HTTP exchange, not the query. */
const HTTP_PARAMS = new Set(['query', 'query_id', 'database', 'session_id', 'session_timeout', 'session_check', 'role', 'default_format', 'user', 'password'])

/**
 * A `param_*` value, as the client writes it (ClickHouse's escaped text form), as the value of a
 * `SET param_<name> = '…'` that chDB runs before the query (the adapter quotes it, doubling quotes):
 * the engine then parses the very text a ClickHouse server would. chDB's own binder takes JS values
 * and escapes them again, which no longer reads an array literal's escapes the same way.
 */
export const paramSetting = (text: string) => text.replace(/\\/g, '\\\\')

/** A ClickHouse-style error body, which `@clickhouse/client` parses into a ClickHouseError (code, type). */
function errorBody(err: unknown): string {
  const msg = String((err as Error)?.message ?? err)
  if (/^(Code|Error): \d+/.test(msg)) return msg
  const code = (err as { code?: unknown })?.code
  const type = (err as { type?: unknown })?.type
  return `Code: ${typeof code === 'string' && /^\d+$/.test(code) ? code : '1000'}. DB::Exception: ${msg} (${typeof type === 'string' && /^[A-Z0-9_]+$/.test(type) ? type : 'UNKNOWN_EXCEPTION'})`
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

export function createFactsApp(ch: ChdbLike, auth: { user: string; password: string }) {
  const app = new Hono()
  const allowed = (h: (name: string) => string | undefined): boolean => {
    let user = h('x-clickhouse-user')
    let key = h('x-clickhouse-key')
    const basic = /^Basic (.+)$/i.exec(h('authorization') ?? '')
    if (basic) {
      const text = Buffer.from(basic[1], 'base64').toString()
      const i = text.indexOf(':')
      user = text.slice(0, i)
      key = text.slice(i + 1)
    }
    return user !== undefined && key !== undefined && same(user, auth.user) && same(key, auth.password)
  }
  app.get('/ping', (c) => c.text('Ok.\n'))
  app.on(['GET', 'POST'], '/', async (c) => {
    if (!allowed((n) => c.req.header(n))) {
      return c.text(`Code: 516. DB::Exception: ${auth.user}: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)\n`, 401)
    }
    const url = new URL(c.req.url)
    const clickhouse_settings: Record<string, unknown> = {}
    for (const [k, v] of url.searchParams) {
      if (k.startsWith('param_')) clickhouse_settings[k] = paramSetting(v)
      else if (!HTTP_PARAMS.has(k)) clickhouse_settings[k] = v
    }
    const body = c.req.method === 'POST' ? Buffer.from(await c.req.arrayBuffer()) : Buffer.alloc(0)
    const inUrl = url.searchParams.get('query')
    // The SQL is in `query` with the body as its data (an INSERT's rows), or the body is the SQL.
    const query = inUrl ?? body.toString('utf8')
    if (!query.trim()) return c.text('Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)\n', 400)
    try {
      const r = await ch.exec({
        query,
        values: inUrl !== null && body.length ? Readable.from([body]) : undefined,
        clickhouse_settings,
        query_id: url.searchParams.get('query_id') ?? undefined,
      })
      const chunks: Buffer[] = []
      for await (const chunk of r.stream) chunks.push(Buffer.from(chunk))
      const headers: Record<string, string> = { 'content-type': 'text/plain; charset=UTF-8', 'x-clickhouse-query-id': r.query_id }
      if (r.summary) headers['x-clickhouse-summary'] = JSON.stringify(r.summary)
      return c.body(Buffer.concat(chunks), 200, headers)
    } catch (err) {
      return c.text(errorBody(err) + '\n', 500)
    }
  })
  return app
}

/** Serves `ch` on host:port (port 0: any free one); resolves with the port once listening. */
export async function serveFacts(ch: ChdbLike, opts: { host: string; port: number; user: string; password: string; log?: Logger }): Promise<{ port: number; close(): Promise<void> }> {
  const app = createFactsApp(ch, opts)
  const server = await new Promise<Server>((res) => {
    // The client sends query parameters in the URL (a redelivered batch's lookup carries thousands of
    // event ids): take request lines up to 1 MiB, as ClickHouse's http_max_uri_size does, not Node's 16 KiB.
    const s = serve({ fetch: app.fetch, port: opts.port, hostname: opts.host, serverOptions: { maxHeaderSize: 1024 * 1024 } }, () => res(s as Server))
  })
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : opts.port
  opts.log?.info({ port }, 'facts store served over the ClickHouse HTTP interface')
  return {
    port,
    close: () =>
      new Promise<void>((res) => {
        server.close(() => res())
        server.closeAllConnections()
      }),
  }
}
