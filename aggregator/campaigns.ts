import type { StreamEvent } from '../core/events.ts'
import type { Campaign, CampaignStore } from '../core/store/campaigns.ts'
import type { CampaignArg } from './user-step.ts'

/** How long a communicator's campaign totals outlive the campaign's cutoff (the result is archived). */
export const CAMPAIGN_KEEP_S = 30 * 86400

/**
 * The campaigns an aggregator feeds: every campaign neither cancelled nor settled. `refresh()` runs
 * before each batch, after its messages were pulled: it reads the campaigns' change counter and
 * reloads on a change, so a message published after a campaign was stored is always processed
 * knowing it (the backfill's barrier relies on this).
 */
export interface CampaignFeed {
  refresh(): Promise<void>
  /** The campaigns an event may count in: window holds its time, cutoff is after its receipt. */
  candidates(ev: StreamEvent): CampaignArg[]
  get(id: string): Campaign | undefined
}

export function createCampaignFeed(store: CampaignStore): CampaignFeed {
  let epoch = -1
  let active: Campaign[] = []
  let byId = new Map<string, Campaign>()
  return {
    async refresh() {
      const e = await store.epoch()
      if (e === epoch) return
      const list = (await store.list()).filter((c) => c.cancelled_at === null && c.settled_at === null)
      // Batches overlap: a refresh that read an older counter must not replace a newer list.
      if (e < epoch) return
      active = list
      byId = new Map(active.map((c) => [c.id, c]))
      epoch = e
    },
    candidates(ev) {
      if (!active.length) return []
      const out: CampaignArg[] = []
      for (const c of active) {
        if (ev.ts < c.starts_at || ev.ts >= c.ends_at || ev.received_at >= c.cutoff_at) continue
        out.push({ id: c.id, prefix: c.region_code ?? '', institution: c.institution_id ?? '', pending: c.backfilled_at === null, expireAtS: Math.ceil(c.cutoff_at / 1000) + CAMPAIGN_KEEP_S })
      }
      return out
    },
    get: (id) => byId.get(id),
  }
}
