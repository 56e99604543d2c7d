import { describe, expect, it } from 'vitest'
import { admitEvent } from './events.ts'

const bounds = { maxAgeMs: 72 * 3600_000, maxFutureMs: 10 * 60_000 }
const now = Date.parse('2026-11-23T10:00:00+08:00')
const ctx = { receivedAt: now, appId: 'app1' }
const share = { id: 'e1', type: 'share_back', user_id: 'u1', ts: now - 1000, content_id: 'c1', channel: 'wechat' }

describe('admitEvent', () => {
  it('accepts a valid share-back and keeps its time without sent_at', () => {
    const r = admitEvent(share, ctx, bounds)
    expect(r.ok && r.event.ts).toBe(now - 1000)
  })
  it('corrects the device clock with sent_at', () => {
    // The device clock runs 5 minutes fast: it says it sent at now+5min.
    const r = admitEvent({ ...share, ts: now + 300_000 - 2000, sent_at: now + 300_000 }, ctx, bounds)
    expect(r.ok && r.event.ts).toBe(now - 2000)
    // A phone whose clock was reset to 1970: its times are far off, the correction puts them right.
    const reset = admitEvent({ ...share, ts: 86_400_000 - 3000, sent_at: 86_400_000 }, ctx, bounds)
    expect(reset.ok && reset.event.ts).toBe(now - 3000)
    // Beyond 2099 is no clock at all.
    expect(admitEvent({ ...share, ts: 1e30, sent_at: 1e30 }, ctx, bounds)).toMatchObject({ ok: false, rejection: { code: 'invalid_event' } })
  })
  it('rejects unknown types, missing per-type fields and bad ids with a code', () => {
    expect(admitEvent({ ...share, type: 'nope' }, ctx, bounds)).toMatchObject({ ok: false, rejection: { code: 'unknown_type' } })
    expect(admitEvent({ ...share, channel: undefined }, ctx, bounds)).toMatchObject({ ok: false, rejection: { code: 'invalid_event', message: expect.stringContaining('channel') } })
    expect(admitEvent({ ...share, user_id: 'a b' }, ctx, bounds)).toMatchObject({ ok: false, rejection: { code: 'invalid_event' } })
    expect(admitEvent({ ...share, ts: '2026-11-23 10:00' }, ctx, bounds)).toMatchObject({ ok: false, rejection: { code: 'invalid_event' } })
    expect(admitEvent(42, ctx, bounds)).toMatchObject({ ok: false })
  })
  it('rejects events older than the window or too far in the future', () => {
    expect(admitEvent({ ...share, ts: now - 73 * 3600_000 }, ctx, bounds)).toMatchObject({ ok: false, rejection: { code: 'too_old' } })
    expect(admitEvent({ ...share, ts: now + 11 * 60_000 }, ctx, bounds)).toMatchObject({ ok: false, rejection: { code: 'in_future' } })
    expect(admitEvent({ ...share, ts: now + 9 * 60_000 }, ctx, bounds).ok).toBe(true)
  })
})
