import { randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { z } from 'zod'
import { createKvRecords } from './kv-records.ts'

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
  /** Events received from here on never count (ends_at + grace, or earlier when settled by hand). */
  cutoff_at: number
  /**
   * Backfill: facts with a stream sequence up to `barrier_seq` are added from ClickHouse; later ones
   * are fed live by the aggregators, which learned of the campaign before they processed them.
   */
  barrier_seq: number | null
  backfilled_at: number | null
  /** Who may run the backfill or the settlement now (compare-and-set claims with an expiry). */
  lease: { owner: string; job: 'backfill' | 'settle'; until: number } | null
}

export type NewCampaign = Omit<Campaign, 'id' | 'created_at' | 'updated_at' | 'cancelled_at' | 'settled_at' | 'cutoff_at' | 'barrier_seq' | 'backfilled_at' | 'lease'>

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
  create(c: NewCampaign): Promise<Campaign>
  get(id: string): Promise<Campaign | null>
  /** Applies `change` to the current record with compare-and-set; `change` may throw to refuse. */
  update(id: string, change: (c: Campaign) => Campaign): Promise<Campaign>
  list(): Promise<Campaign[]>
  /**
   * Revision of the change counter, bumped after every create and update: an aggregator compares it
   * before each batch and reloads the campaigns when it moved (one small read per batch).
   */
  epoch(): Promise<number>
}

const enc = new TextEncoder()

export function createCampaignStore(kv: KV): CampaignStore {
  const records = createKvRecords<Campaign>(kv, 'c', {
    missing: () => new CampaignConflict('no such campaign'),
    conflict: () => new CampaignConflict('campaign was changed concurrently; retry'),
  })
  async function bump() {
    await kv.put('m.epoch', enc.encode(String(Date.now())))
  }
  return {
    async epoch() {
      const e = await kv.get('m.epoch')
      return e?.revision ?? 0
    },
    async create(input) {
      const now = Date.now()
      const c: Campaign = {
        ...input, id: 'cp' + randomBytes(8).toString('hex'), created_at: now, updated_at: now, cancelled_at: null, settled_at: null,
        cutoff_at: input.ends_at + input.grace_seconds * 1000, barrier_seq: null, backfilled_at: null, lease: null,
      }
      await records.create(c.id, c)
      await bump()
      return c
    },
    get: records.get,
    async update(id, change) {
      // `change` returns the campaign it was given for no change.
      const { before, after } = await records.update(id, (c) => {
        const changed = change(c)
        return changed === c ? null : { ...changed, id }
      })
      if (after !== before) await bump()
      return after
    },
    async list() {
      return (await records.list()).sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    },
  }
}
