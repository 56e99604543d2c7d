import { randomBytes } from 'node:crypto'
import type { KV } from '@nats-io/kv'
import { z } from 'zod'
import { USER_ID } from '../events.ts'
import { listKeys } from './kv-keys.ts'
import { isRevisionConflict, releasePhone } from './kv-records.ts'

/**
 * Communicators, durable in NATS JetStream KV (bucket `users`): `u.<id>` holds the profile and
 * `p.<phone>` the owner of a phone number, taken with `create` so that one phone maps to one
 * account even under concurrent writers. Profile updates are revision-checked. Each communicator also
 * gets a dense numeric index `ix` (1, 2, 3, …, never reused), handed out in blocks from the counter
 * `m.ix` with compare-and-set so that processes never share one: the KPI rollups count distinct
 * active communicators as bitmaps of these indexes, which merge fast over long periods.
 */
export const PHONE = z.string().regex(/^1[3-9]\d{9}$/, 'must be a mainland mobile number (11 digits, 1[3-9]…)')
export const USER_KINDS = ['个人用户', '中国科协', '省级', '市级', '区县级', '乡镇街道'] as const

export interface User {
  id: string
  phone: string
  real_name: string
  region_code: string
  kind: string
  institution_id: string
  /** Epoch ms; events before it do not count. */
  certified_at: number
  /** Dense numeric index (≥ 1) for the KPI bitmaps; assigned at creation and never changed. */
  ix: number
  created_at: number
  updated_at: number
}

export interface UserStore {
  get(id: string): Promise<User | null>
  /**
   * Creates or updates by id (or by phone when no id). Returns the stored user and whether it is new.
   * `mayChange`, when given, is asked about the stored record before it is replaced (in the same
   * revision-checked write): false refuses with UserConflict('outside_scope') and changes nothing.
   */
  upsert(input: UserInput, mayChange?: (existing: User) => boolean): Promise<UpsertResult>
  /**
   * `upsert` for many rows at once (a roster import), with the same guarantees per row, their KV
   * requests in flight together. Results are in input order: a row's UserConflict, or any other
   * error (store unavailable), is that row's alone. A row identical to the stored record (and
   * allowed by `mayChange`) is not written again: it comes back as stored, `created: false`.
   * Rows sharing a phone: one takes it, the others fail with phone_taken (the import refuses
   * repeats before); rows sharing an id are serialised by the revision checks, the last write wins.
   */
  upsertMany(inputs: UserInput[], mayChange?: (existing: User) => boolean): Promise<PromiseSettledResult<UpsertResult>[]>
  /** Every stored user, for rebuilding caches. */
  all(): AsyncIterable<User>
  /** The communicator holding a phone number, if any. */
  idByPhone(phone: string): Promise<string | null>
}

export type UserInput = Omit<User, 'id' | 'ix' | 'created_at' | 'updated_at'> & { id?: string }
export type UpsertResult = { user: User; created: boolean; previous: User | null }

export class UserConflict extends Error {
  constructor(public code: 'phone_taken' | 'conflict' | 'outside_scope', message: string) {
    super(message)
  }
}

const enc = new TextEncoder()
const dec = new TextDecoder()
// Buffer.from: small strings come from a shared pool, not an ArrayBuffer each (an import encodes one a row).
const json = (v: unknown) => Buffer.from(JSON.stringify(v))

export function newUserId(): string {
  return 'u' + randomBytes(9).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x')
}

const IX_BLOCK = 256

/**
 * Hands out indexes from blocks reserved in the KV counter `m.ix` (compare-and-set): one at a time
 * from blocks of IX_BLOCK, or `n` consecutive ones in one reservation (an import's new rows). An
 * index reserved for a row that then fails is left unused (a gap), never handed out twice.
 */
function createIndexAllocator(kv: KV) {
  let next = 0
  let end = 0
  let reserving: Promise<void> | null = null
  /** Reserves n indexes; returns the first. */
  async function reserve(n: number): Promise<number> {
    for (;;) {
      const e = await kv.get('m.ix')
      const cur = e && e.operation === 'PUT' && e.value.length ? Number(dec.decode(e.value)) : 0
      try {
        if (e) await kv.update('m.ix', enc.encode(String(cur + n)), e.revision)
        else await kv.create('m.ix', enc.encode(String(n)))
      } catch (err) {
        if (isRevisionConflict(err)) continue // another process reserved a block in between
        throw err
      }
      return cur + 1
    }
  }
  async function allocate(): Promise<number> {
    while (next === 0 || next > end) {
      reserving ??= reserve(IX_BLOCK)
        .then((first) => {
          next = first
          end = first + IX_BLOCK - 1
        })
        .finally(() => (reserving = null))
      await reserving
    }
    return next++
  }
  return { allocate, reserve }
}

/** Runs fn over items with at most `limit` in flight; fn must not throw. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0
  const worker = async () => {
    while (i < items.length) await fn(items[i++])
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/**
 * Rows of one upsertMany in flight at once (a KV request each), on the one connection. Measured
 * (client CPU per KV request, local nats-server, a busy 2-core machine): about the same from 200
 * to 1,000 in flight (12–16 µs), more with 50 (fewer requests per socket write) and with 5,000
 * (16–27 µs: requests wait longer, so more of them outlive a young-generation GC).
 */
const IN_FLIGHT = 256

/** The fields an import sets; a row equal on all of them to the stored record changes nothing. */
const sameProfile = (u: User, v: UserInput) =>
  u.phone === v.phone && u.real_name === v.real_name && u.region_code === v.region_code && u.kind === v.kind &&
  u.institution_id === v.institution_id && u.certified_at === v.certified_at

export function createUserStore(kv: KV): UserStore {
  const ix = createIndexAllocator(kv)
  // Share of the latest imported rows that were new (a decaying average, kept across calls: an
  // import comes in several requests). While most are, upsertMany lets a row with an id claim its
  // phone first and skip reading u.<id>: 2 requests for a new row instead of 3, but 3 for an
  // unchanged one instead of 1, so only above 3/4. A guess about cost only; either way is correct.
  let newShare = 0
  let observed = 0
  const observe = (isNew: boolean) => {
    observed = Math.min(observed + 1, 64)
    newShare += ((isNew ? 1 : 0) - newShare) / observed
  }
  async function get(id: string) {
    const e = await kv.get(`u.${id}`)
    return e && e.operation === 'PUT' && e.value.length ? { user: JSON.parse(dec.decode(e.value)) as User, rev: e.revision } : null
  }
  async function ownerOfPhone(phone: string) {
    const e = await kv.get(`p.${phone}`)
    return e && e.operation === 'PUT' && e.value.length ? dec.decode(e.value) : null
  }
  async function claimPhone(phone: string, id: string) {
    try {
      await kv.create(`p.${phone}`, enc.encode(id))
    } catch {
      const owner = await ownerOfPhone(phone)
      if (owner !== id) throw new UserConflict('phone_taken', 'phone number belongs to another communicator')
    }
  }
  /** `upsert`; `newIx`, when given, is the index a new record takes (reserved by the caller). */
  async function upsertOne(input: UserInput, mayChange?: (existing: User) => boolean, id?: string, newIx?: number): Promise<UpsertResult> {
    id ??= input.id ?? (await ownerOfPhone(input.phone)) ?? newUserId()
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = Date.now()
      const existing = await get(id)
      if (existing && mayChange && !mayChange(existing.user)) throw new UserConflict('outside_scope', 'this communicator is outside your scope')
      await claimPhone(input.phone, id)
      const user: User = {
        ...input,
        id,
        ix: existing?.user.ix || newIx || (await ix.allocate()),
        created_at: existing?.user.created_at ?? now,
        updated_at: now,
      }
      try {
        if (existing) await kv.update(`u.${id}`, json(user), existing.rev)
        else await kv.create(`u.${id}`, json(user))
      } catch (err) {
        if (isRevisionConflict(err)) continue // someone else wrote in between: read again and retry
        throw err
      }
      if (existing && existing.user.phone !== input.phone) await releasePhone(kv, existing.user.phone, id)
      return { user, created: !existing, previous: existing?.user ?? null }
    }
    throw new UserConflict('conflict', 'communicator was changed concurrently; retry')
  }
  return {
    async get(id) {
      if (!USER_ID.safeParse(id).success) return null
      return (await get(id))?.user ?? null
    },
    upsert: (input, mayChange) => upsertOne(input, mayChange),
    async upsertMany(inputs, mayChange) {
      // The steps of upsertOne's first attempt, each row's requests in flight beside the others'
      // (rows awaited in turn left the client waiting on round trips). Pass 1 reads and claims
      // phones; then one reservation of indexes for every new record; pass 2 writes. A write that
      // meets a concurrent one goes through upsertOne (read again, retry). An unchanged row is
      // only read.
      type Row = { input: UserInput; id: string; existing: { user: User; rev: number } | null; ix: number; out?: PromiseSettledResult<UpsertResult> }
      const rows: Row[] = inputs.map((input) => ({ input, id: input.id ?? '', existing: null, ix: 0 }))
      const fail = (r: Row, reason: unknown) => (r.out = { status: 'rejected', reason })
      await eachLimited(rows, IN_FLIGHT, async (r) => {
        try {
          // Not where mayChange judges the stored record: a refused row must not claim a phone meanwhile.
          if (r.id && !mayChange && observed >= 32 && newShare > 0.75) {
            const claimed = await kv.create(`p.${r.input.phone}`, Buffer.from(r.id)).then(
              () => true,
              (err) => (isRevisionConflict(err) ? false : Promise.reject(err)),
            )
            observe(claimed)
            // The phone was free: most likely a new record (pass 2 creates it; when it exists after
            // all, upsertOne updates it).
            if (claimed) return
            // Taken (by this id, most likely): the read-first way below.
          }
          if (!r.id) {
            const owner = await ownerOfPhone(r.input.phone)
            r.id = owner ?? newUserId()
            if (owner) r.existing = await get(owner)
          } else {
            r.existing = await get(r.id)
            observe(!r.existing)
          }
          const e = r.existing?.user
          if (e && mayChange && !mayChange(e)) throw new UserConflict('outside_scope', 'this communicator is outside your scope')
          if (e && e.ix && sameProfile(e, r.input)) {
            r.out = { status: 'fulfilled', value: { user: e, created: false, previous: e } }
            return
          }
          // A stored record's own phone is claimed by it (claimed before that record was written,
          // given back only after it moved off): only a new or changed phone needs the claim.
          if (!e || e.phone !== r.input.phone) await claimPhone(r.input.phone, r.id)
        } catch (err) {
          fail(r, err)
        }
      })
      const needIx = rows.filter((r) => !r.out && !r.existing?.user.ix)
      if (needIx.length) {
        try {
          const first = await ix.reserve(needIx.length)
          needIx.forEach((r, k) => (r.ix = first + k))
        } catch (err) {
          for (const r of needIx) fail(r, err)
        }
      }
      await eachLimited(rows.filter((r) => !r.out), IN_FLIGHT, async (r) => {
        const now = Date.now()
        const e = r.existing
        const v = r.input
        // A literal, not a spread of the input: a spread with added fields cost ≈ 2 µs a row.
        const user: User = {
          id: r.id, phone: v.phone, real_name: v.real_name, region_code: v.region_code, kind: v.kind, institution_id: v.institution_id,
          certified_at: v.certified_at, ix: e?.user.ix || r.ix, created_at: e?.user.created_at ?? now, updated_at: now,
        }
        try {
          try {
            if (e) await kv.update(`u.${r.id}`, json(user), e.rev)
            else await kv.create(`u.${r.id}`, json(user))
          } catch (err) {
            if (!isRevisionConflict(err)) throw err
            r.out = { status: 'fulfilled', value: await upsertOne(r.input, mayChange, r.id, r.ix || undefined) }
            return
          }
          if (e && e.user.phone !== r.input.phone) await releasePhone(kv, e.user.phone, r.id)
          r.out = { status: 'fulfilled', value: { user, created: !e, previous: e?.user ?? null } }
        } catch (err) {
          fail(r, err)
        }
      })
      return rows.map((r) => r.out!)
    },
    idByPhone: ownerOfPhone,
    async *all() {
      const ids = (await listKeys(kv, 'u.>')).map((k) => k.slice(2))
      for (let i = 0; i < ids.length; i += 500) {
        const got = await Promise.all(ids.slice(i, i + 500).map((id) => get(id)))
        for (const g of got) if (g) yield g.user
      }
    },
  }
}
