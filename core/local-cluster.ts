import { spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { ensureBinary, startNats, startRedis, type LocalService } from './local-services.ts'

/**
 * The distributed layout's engines on one machine, from Debian's packages: a Redis Cluster
 * (`redis-server --cluster-enabled yes`, formed with `redis-cli --cluster create`) and a NATS cluster
 * (`nats-server` nodes with routes, JetStream on each). Used by `npm run cluster` and by the tests
 * that run the service on a cluster. Data under DATA_DIR/redis-cluster/<port> and
 * DATA_DIR/nats-cluster/<n>; a second start on the same directory and ports finds the cluster formed.
 */

export interface RedisNode {
  host: string
  port: number
  role: 'master' | 'replica'
}

export interface LocalRedisCluster {
  /** REDIS_URL for the service: every node, comma-separated. */
  url: string
  servers: LocalService[]
  /** Every node with its current role (it changes on a failover). */
  nodes(): Promise<RedisNode[]>
  stop(): Promise<void>
}

/** The field of CLUSTER INFO, or of INFO, named `name`. */
const field = (info: string, name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim()

async function ask<T>(port: number, f: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000 })
  try {
    await r.connect()
    return await f(r)
  } finally {
    r.disconnect()
  }
}

/** Polls `cond` every 100 ms (a cluster announces none of these states) until it holds or `ms` pass. */
async function until(what: string, ms: number, cond: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await cond().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(100)
  }
}

/**
 * A Redis Cluster of `ports.length` nodes on loopback, `replicas` replicas per master (6 ports and 1:
 * 3 masters, 3 replicas). Resolves when every node reports `cluster_state:ok` and every master has
 * its replicas.
 */
export async function startRedisCluster(dataDir: string, ports: number[], log?: Logger, replicas = 1): Promise<LocalRedisCluster> {
  const servers: LocalService[] = []
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()))
  }
  try {
    for (const port of ports) {
      servers.push(
        await startRedis(dataDir, port, log, {
          dir: `redis-cluster/${port}`,
          name: `redis-${port}`,
          // A master that does not answer for 3 s is failed over to its replica.
          args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '3000'],
        }),
      )
    }
    const known = await Promise.all(ports.map((p) => ask(p, async (r) => Number(field(await r.cluster('INFO'), 'cluster_known_nodes')))))
    if (known.every((n) => n === 1)) {
      // A fresh set of nodes: form the cluster (slots spread over the masters, replicas assigned).
      const cli = ensureBinary('redis-cli', log)
      const r = spawnSync(cli, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8' })
      if (r.status !== 0) throw new Error(`redis-cli --cluster create failed: ${(r.stdout + r.stderr).slice(-800)}`)
      log?.info({ nodes: ports.length, replicas }, 'redis cluster created')
    } else if (!known.every((n) => n === ports.length)) {
      throw new Error(`these redis nodes belong to different clusters (known nodes: ${known.join(', ')}); remove ${dataDir}/redis-cluster to start afresh`)
    }
    const cluster: LocalRedisCluster = {
      url: `redis://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
      servers,
      async nodes() {
        return Promise.all(
          ports.map(async (port) => ({
            host: '127.0.0.1',
            port,
            role: (await ask(port, (r) => r.info('replication')).then((i) => field(i, 'role'), () => 'down')) === 'master' ? ('master' as const) : ('replica' as const),
          })),
        )
      },
      stop,
    }
    await until('the redis cluster to be ok on every node', 30_000, async () => {
      const infos = await Promise.all(ports.map((p) => ask(p, (r) => r.cluster('INFO'))))
      if (!infos.every((i) => field(i, 'cluster_state') === 'ok')) return false
      const ns = await cluster.nodes()
      return ns.filter((n) => n.role === 'master').length * (replicas + 1) === ports.length
    })
    return cluster
  } catch (err) {
    await stop()
    throw err
  }
}

export interface LocalNatsCluster {
  /** NATS_URL for the service: every server, comma-separated. */
  url: string
  urls: string[]
  servers: LocalService[]
  stop(): Promise<void>
}

/**
 * A NATS cluster on loopback: one nats-server per client port, routed to each other on the route
 * ports, JetStream on each. Resolves when JetStream answers (its meta leader is elected).
 */
export async function startNatsCluster(dataDir: string, ports: number[], routePorts: number[], log?: Logger): Promise<LocalNatsCluster> {
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`).join(',')
  const servers: LocalService[] = []
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()))
  }
  try {
    const started = await Promise.all(
      ports.map((port, i) =>
        startNats(dataDir, port, log, {
          dir: `nats-cluster/n${i + 1}`,
          name: `nats-${i + 1}`,
          args: ['-n', `kepu-n${i + 1}`, '--cluster_name', 'kepu', '--cluster', `nats://127.0.0.1:${routePorts[i]}`, '--routes', routes],
        }),
      ),
    )
    servers.push(...started)
    const urls = ports.map((p) => `nats://127.0.0.1:${p}`)
    const nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 200 })
    try {
      await until('JetStream on the NATS cluster', 60_000, async () => {
        const jsm = await jetstreamManager(nc, { timeout: 2000 })
        const info = await jsm.getAccountInfo()
        return info !== undefined
      })
    } finally {
      await nc.close()
    }
    return { url: urls.join(','), urls, servers, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
