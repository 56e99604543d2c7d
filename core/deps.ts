import type { ClickHouseClient } from '@clickhouse/client'
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { Kvm } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/nats-core'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { createClickHouse, createEmbeddedClickHouse } from './clients/clickhouse.ts'
import type { ChdbLike } from './facts-server.ts'
import { createNats, failFastWhileDown } from './clients/nats.ts'
import { createRedis } from './clients/redis.ts'
import type { Config } from './config.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import { loadRegionTree, type RegionTree } from './regions.ts'
import { migrate } from './schema.ts'
import { createAppStore, type AppStore } from './store/apps.ts'
import { createUserStore, type UserStore } from './store/users.ts'
import { createOfficialStore, type OfficialStore } from './store/officials.ts'
import { createPopulationStore, type PopulationStore } from './store/populations.ts'
import { createTaskStore, type TaskStore } from './store/tasks.ts'
import { createCampaignStore, type CampaignStore } from './store/campaigns.ts'
import { createAccountStore, type AccountStore } from './store/accounts.ts'
import { createCertificationStore, type CertificationStore } from './store/certifications.ts'
import { createItemStore, type ItemStore } from './store/items.ts'
import { createInstitutionStore, type InstitutionStore } from './store/institutions.ts'
import { createHttpSmsSender, createLogSmsSender, createMemorySmsSender, type SmsSender } from './sms.ts'

/** Everything a tier needs, built once per process and passed in. */
export interface Deps {
  log: Logger
  redis: Redis
  nc: NatsConnection
  js: JetStreamClient
  jsm: JetStreamManager
  ch: ClickHouseClient
  /** chDB's own connection when this process holds the embedded ClickHouse (null with CLICKHOUSE_URL): what the facts role serves. */
  chdb: ChdbLike | null
  apps: AppStore
  users: UserStore
  officials: OfficialStore
  populations: PopulationStore
  tasks: TaskStore
  campaigns: CampaignStore
  accounts: AccountStore
  certifications: CertificationStore
  items: ItemStore
  institutions: InstitutionStore
  sms: SmsSender
  tree: RegionTree
  metrics: Metrics
  /** False while the NATS connection is down: ingest answers 503 at once. */
  natsUp(): boolean
  close(): Promise<void>
}

export async function connectDeps(config: Config, urls: { redis: string; nats: string }, log: Logger): Promise<Deps> {
  const redis = createRedis(urls.redis)
  redis.on('error', (err) => log.warn({ err: String(err) }, 'redis error'))
  const { nc, up: natsUp } = failFastWhileDown(await createNats(urls.nats, 'kepu-live'), log)
  const js = jetstream(nc, { timeout: 5000 })
  // Replicated assets (a NATS cluster) answer after their Raft group agrees: creating ten buckets and
  // the stream at R3 on a busy machine takes longer than one server's 5 s.
  const admin = { timeout: config.nats.replicas > 1 ? 20_000 : 5000 }
  const jsm = await jetstreamManager(nc, admin)
  const kvm = new Kvm(jetstream(nc, admin))
  const kvOpts = { history: 1, replicas: config.nats.replicas }
  const [appsKv, usersKv, officialsKv, populationsKv, tasksKv, campaignsKv, accountsKv, certsKv, itemsKv, institutionsKv] = await Promise.all([
    kvm.create('apps', kvOpts),
    kvm.create('users', kvOpts),
    kvm.create('officials', kvOpts),
    kvm.create('populations', kvOpts),
    kvm.create('tasks', kvOpts),
    kvm.create('campaigns', kvOpts),
    kvm.create('accounts', kvOpts),
    kvm.create('certifications', kvOpts),
    kvm.create('store', kvOpts),
    kvm.create('institutions', kvOpts),
  ])
  const embedded = config.clickhouse.url ? null : await createEmbeddedClickHouse(config.dataDir)
  const ch = embedded?.client ?? (await createClickHouse({ url: config.clickhouse.url, dataDir: config.dataDir }))
  await migrate(ch)
  return {
    log,
    redis,
    nc,
    js,
    jsm,
    ch,
    chdb: embedded?.connection ?? null,
    apps: createAppStore(appsKv),
    users: createUserStore(usersKv),
    officials: createOfficialStore(officialsKv),
    populations: createPopulationStore(populationsKv),
    tasks: createTaskStore(tasksKv),
    campaigns: createCampaignStore(campaignsKv),
    accounts: createAccountStore(accountsKv),
    certifications: createCertificationStore(certsKv),
    items: createItemStore(itemsKv),
    institutions: createInstitutionStore(institutionsKv),
    sms:
      config.sms.sender === 'memory' ? createMemorySmsSender()
      : config.sms.sender === 'http' ? createHttpSmsSender(config.sms.gatewayUrl!)
      : createLogSmsSender(log),
    tree: loadRegionTree(),
    metrics: createMetrics(),
    natsUp,
    async close() {
      await Promise.allSettled([nc.drain(), redis.quit(), ch.close()])
    },
  }
}
