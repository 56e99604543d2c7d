import { Cluster, Command, Redis, type RedisOptions } from 'ioredis'

/**
 * Where Redis is: one server (`redis://[user:pass@]host:port[/db]`), or a Redis Cluster given by
 * several of its nodes, comma-separated (`redis://[user:pass@]h1:p1,h2:p2,…`; the credentials, on
 * the first, hold for all). Throws on anything else, naming what is wrong.
 */
export function parseRedisUrl(url: string): { cluster: false; url: string } | { cluster: true; nodes: { host: string; port: number }[]; username?: string; password?: string; tls: boolean } {
  const m = /^(rediss?):\/\/(?:([^@/]*)@)?([^/?#]+)(\/[^?#]*)?$/.exec(url.trim())
  if (!m) throw new Error('must be redis://host:port, or redis://host:port,host:port,… for a Redis Cluster')
  const [, scheme, auth, hosts, path] = m
  const list = hosts.split(',').map((h) => h.trim())
  if (list.length === 1) return { cluster: false, url }
  if (path && path !== '/' && path !== '/0') throw new Error('a Redis Cluster has only database 0')
  const nodes = list.map((h) => {
    const hp = /^(\[[0-9a-fA-F:]+\]|[^:\[\]]+):(\d{1,5})$/.exec(h)
    if (!hp || Number(hp[2]) < 1 || Number(hp[2]) > 65535) throw new Error(`cluster node ${JSON.stringify(h)} is not host:port`)
    return { host: hp[1].replace(/^\[|\]$/g, ''), port: Number(hp[2]) }
  })
  const [user, pass] = auth ? auth.split(':') : []
  return { cluster: true, nodes, username: user ? decodeURIComponent(user) : undefined, password: pass !== undefined ? decodeURIComponent(pass) : undefined, tls: scheme === 'rediss' }
}

const OPTIONS: RedisOptions = {
  maxRetriesPerRequest: 2,
  connectTimeout: 5000,
  retryStrategy: (times) => Math.min(times * 100, 2000),
}

/**
 * One Redis client per process, passed to every tier that needs it: a `Redis`, or a `Cluster` when
 * the URL names several nodes. A Cluster is handed on typed as `Redis`: the tiers use the commands
 * both answer, and where a Cluster differs (a pipeline or a script stays in one slot, SCAN runs per
 * node) the code asks `isCluster()`.
 */
export function createRedis(url: string): Redis {
  const where = parseRedisUrl(url)
  if (!where.cluster) return new Redis(url, { ...OPTIONS, enableAutoPipelining: true })
  const cluster = new Cluster(where.nodes, {
    // Not on a Cluster: ioredis's auto-pipelines there are per node, and after a failover a MOVED
    // reply fails the commands of the pipeline instead of redirecting them, with routing left on the
    // old node (redis/ioredis#2075, open). Every request then failed with MOVED until a restart.
    enableAutoPipelining: false,
    // After a failover the old master's slots move: commands are retried on the new owner.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    clusterRetryStrategy: (times) => Math.min(times * 100, 2000),
    redisOptions: { ...OPTIONS, username: where.username, password: where.password, tls: where.tls ? {} : undefined },
  })
  return cluster as unknown as Redis
}

/** What /readyz pings: the one server ('redis'), or every node of a Cluster by address ('redis 10.0.0.5:6379'). */
export function redisNodes(redis: Redis): { name: string; client: Redis }[] {
  if (!isCluster(redis)) return [{ name: 'redis', client: redis }]
  return (redis as unknown as Cluster).nodes('all').map((n) => ({ name: `redis ${n.options.host}:${n.options.port}`, client: n }))
}

/** The masters of a client: itself for one server, every master node of a Cluster (SCAN, FLUSH, INFO run per node). */
export function masters(redis: Redis): Redis[] {
  return isCluster(redis) ? (redis as unknown as Cluster).nodes('master') : [redis]
}

/** Whether a client is a Redis Cluster's (its pipelines and scripts must stay inside one slot). */
export const isCluster = (redis: unknown): boolean => (redis as { isCluster?: boolean }).isCluster === true

/**
 * A command built from arguments that are already flat. ioredis's Command copies its arguments with
 * `Array.prototype.flat()`, which V8 runs at ≈ 0.2 µs per element: ≈ 400 µs for a 1,000-member ZADD
 * (the ceiling's client spent 35–40 µs less CPU per event without it). Sent with `sendCommand`, which
 * writes it at once (a standalone Redis, a pipeline or a Cluster alike), so commands reach Redis in
 * the order sent.
 */
class FlatCommand extends Command {
  constructor(name: string, args: (string | number)[]) {
    super(name, [], { replyEncoding: 'utf8' }) // strings, as ioredis's own methods answer (not Buffers)
    this.args = args
    this.stringifyArguments() // what the constructor does after flattening (numbers to strings)
  }
}

/** What a command is sent through: a client, a Cluster or a pipeline. */
export type Sink = Pick<Redis, 'sendCommand'>

export function sendFlat(redis: Sink, name: string, args: (string | number)[]): Promise<unknown> {
  const c = new FlatCommand(name, args)
  redis.sendCommand(c)
  return c.promise
}

/**
 * EVALSHA with flat arguments; where the server does not know the script yet (NOSCRIPT), EVAL on
 * `fallback` (outside a pipeline), which also loads it.
 */
export async function evalFlat(out: Sink, script: { lua: string; sha: string }, keys: string[], args: (string | number)[], fallback: Sink = out): Promise<unknown> {
  const argv: (string | number)[] = [script.sha, keys.length, ...keys, ...args]
  try {
    return await sendFlat(out, 'evalsha', argv)
  } catch (err) {
    if (!String(err).includes('NOSCRIPT')) throw err
    argv[0] = script.lua
    return sendFlat(fallback, 'eval', argv)
  }
}

type Pipeline = ReturnType<Redis['pipeline']>

/**
 * A pipeline for commands on many keys, answered by `exec()` in order ([error, reply] each): on one
 * server a real pipeline (one write, one batch of replies); on a Cluster, where a pipeline must keep
 * to one slot, each command is sent on its own, to its slot's node. Commands
 * on one key keep their order either way (one node, one connection).
 */
export function pipelineFor(redis: Redis): Pipeline {
  if (!isCluster(redis)) return redis.pipeline()
  const calls: [string, unknown[]][] = []
  const proxy: Pipeline = new Proxy({} as Pipeline, {
    get(_, prop) {
      if (prop === 'exec')
        return () =>
          Promise.all(
            calls.map(([name, args]) =>
              (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[name](...args).then(
                (v) => [null, v] as [null, unknown],
                (err: Error) => [err, null] as [Error, null],
              ),
            ),
          )
      if (prop === 'length') return calls.length
      if (prop === 'then') return undefined // not a thenable
      return (...args: unknown[]) => {
        calls.push([String(prop), args])
        return proxy
      }
    },
  })
  return proxy
}

export class ReplicationError extends Error {}

/**
 * Redis replication is asynchronous: a master that dies before its replica got a write loses it when
 * the replica takes over. `replicated(conn, replicas, ms)` snapshots the masters `conn` writes to now;
 * `check()` then resolves once every write `conn` sent to them since is on `replicas` replicas (WAIT
 * on each master's own connection, at most `ms`), and rejects (ReplicationError) when a master is
 * gone, the masters changed (a failover moved slots meanwhile), or a replica that is connected did not
 * confirm in time. A master with no replica connected at all is taken as it is: there is nothing its
 * writes could be lost to by a failover. With replicas = 0 check() resolves at once.
 */
export function replicated(conn: Redis, replicas: number, ms: number): { check(): Promise<void> } {
  if (replicas <= 0) return { check: async () => {} }
  const nodes = masters(conn)
  const names = (ns: Redis[]) => ns.map((n) => `${n.options.host}:${n.options.port}`).sort().join(',')
  const before = names(nodes)
  return {
    async check() {
      if (isCluster(conn) && names(masters(conn)) !== before) throw new ReplicationError('the Redis Cluster failed over during the batch')
      await Promise.all(
        nodes.map(async (n) => {
          // 'wait': a Cluster's lazy connection to a node never used, so nothing was written through it.
          if (n.status === 'wait') return
          if (n.status !== 'ready') throw new ReplicationError(`Redis ${n.options.host}:${n.options.port} is ${n.status}`)
          const got = Number(await n.wait(replicas, ms))
          if (got >= replicas) return
          const connected = Number(/^connected_slaves:(\d+)/m.exec(await n.info('replication'))?.[1] ?? 0)
          if (connected > got) throw new ReplicationError(`${got} of ${connected} replicas of ${n.options.host}:${n.options.port} confirmed the batch within ${ms} ms`)
        }),
      )
    },
  }
}
