import { randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { z } from 'zod'

/**
 * Campaigns (share competitions, seed 003): durable in NATS KV (bucket `campaigns`, key `c.<id>`),
 * every change revision-checked so that two processes never both apply one (edit, cancel, and later
 * the settlement's state change are compare-and-set on the record).
 */
export const Tier = z.object({
  from_rank: z.number().int().min(1),
  to_rank: z.number().int().min(1),
  prize: z.string().trim().min(1).max(64),
})
export type Tier = z.infer<typeof Tier>

export interface Campaign {
  id: string
  name: string
  region_code: string | null
  institution_id: string | null
  /** Epoch ms, inclusive. */
  starts_at: number
  /** Epoch ms, exclusive. */
  ends_at: number
  metric: 'shares' | 'points'
  /** The basic task: below this score an entry is not eligible for a prize. */
  min_score: number
  top_n: number
  tiers: Tier[]
  grace_seconds: number
  created_by: string
  created_at: number
  updated_at: number
  cancelled_at: number | null
  settled_at: number | null
}

export type CampaignStatus = 'scheduled' | 'running' | 'settling' | 'final' | 'cancelled'

/** scheduled before the start; running until the end plus grace; settling until settled; final. */
export function campaignStatus(c: Campaign, now = Date.now()): CampaignStatus {
  if (c.cancelled_at !== null) return 'cancelled'
  if (c.settled_at !== null) return 'final'
  if (now < c.starts_at) return 'scheduled'
  if (now < c.ends_at + c.grace_seconds * 1000) return 'running'
  return 'settling'
}

/** Problems with a campaign's window, top N and tiers (empty when valid). */
export function campaignProblems(c: Pick<Campaign, 'starts_at' | 'ends_at' | 'top_n' | 'tiers'>): string[] {
  const out: string[] = []
  if (c.ends_at <= c.starts_at) out.push('ends_at: must be after starts_at')
  const tiers = [...c.tiers].sort((a, b) => a.from_rank - b.from_rank)
  tiers.forEach((t, i) => {
    if (t.to_rank < t.from_rank) out.push(`tiers: ${t.from_rank}–${t.to_rank} ends before it starts`)
    if (t.to_rank > c.top_n) out.push(`tiers: ${t.from_rank}–${t.to_rank} reaches beyond top_n ${c.top_n}`)
    const next = tiers[i + 1]
    if (next && next.from_rank <= t.to_rank) out.push(`tiers: ${t.from_rank}–${t.to_rank} overlaps ${next.from_rank}–${next.to_rank}`)
  })
  return out
}

/** The prize of a rank among eligible entries, or null. */
export function prizeOf(c: Pick<Campaign, 'tiers'>, eligibleRank: number | null): string | null {
  if (eligibleRank === null) return null
  return c.tiers.find((t) => eligibleRank >= t.from_rank && eligibleRank <= t.to_rank)?.prize ?? null
}

export class CampaignConflict extends Error {}

export interface CampaignStore {
  create(c: Omit<Campaign, 'id' | 'created_at' | 'updated_at' | 'cancelled_at' | 'settled_at'>): Promise<Campaign>
  get(id: string): Promise<Campaign | null>
  /** Applies `change` to the current record with compare-and-set; `change` may throw to refuse. */
  update(id: string, change: (c: Campaign) => Campaign): Promise<Campaign>
  list(): Promise<Campaign[]>
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const ID = /^[A-Za-z0-9_-]{1,64}$/

export function createCampaignStore(kv: KV): CampaignStore {
  async function read(id: string) {
    if (!ID.test(id)) return null
    const e = await kv.get(`c.${id}`)
    return e && e.operation === 'PUT' && e.value.length ? { c: JSON.parse(dec.decode(e.value)) as Campaign, rev: e.revision } : null
  }
  return {
    async create(input) {
      const now = Date.now()
      const c: Campaign = { ...input, id: 'cp' + randomBytes(8).toString('hex'), created_at: now, updated_at: now, cancelled_at: null, settled_at: null }
      await kv.create(`c.${c.id}`, enc.encode(JSON.stringify(c)))
      return c
    },
    async get(id) {
      return (await read(id))?.c ?? null
    },
    async update(id, change) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const cur = await read(id)
        if (!cur) throw new CampaignConflict('no such campaign')
        const next = { ...change(cur.c), id, updated_at: Date.now() }
        try {
          await kv.update(`c.${id}`, enc.encode(JSON.stringify(next)), cur.rev)
          return next
        } catch {
          continue // changed in between: apply the change to the newer record
        }
      }
      throw new CampaignConflict('campaign was changed concurrently; retry')
    },
    async list() {
      const keys: string[] = []
      for await (const k of await kv.keys('c.*')) keys.push(k)
      const got = await Promise.all(keys.map((k) => kv.get(k)))
      return got.flatMap((e) => (e && e.operation === 'PUT' && e.value.length ? [JSON.parse(dec.decode(e.value)) as Campaign] : [])).sort((a, b) => b.created_at - a.created_at || a.id.localeCompare(b.id))
    },
  }
}
