import type { Redis } from 'ioredis'
import { keys } from '../core/keys.ts'

/**
 * The applied-sequence mark (m:seq) moves in batch order: to a batch's highest stream sequence only
 * once every batch started before it is done with Redis. Batches run on separate connections and
 * finish in any order, and the mark must never be written before the effects it vouches for: a
 * Redis restored from an older append-only file keeps a prefix of its writes, so a mark in it means
 * the effects of every sequence up to it are there too.
 *
 * `done(no, maxSeq)` records batch `no` (numbered from 0 in start order) as applied up to maxSeq
 * (-1: it failed and vouches for nothing) and resolves once a mark covering it has been written by
 * `write`; a failed write rejects the batches it would have covered, and later marks still go on.
 */
export function createSeqMark(write: (mark: number) => Promise<void>) {
  let next = 0
  const finished = new Map<number, number>()
  const waiting = new Map<number, { resolve: () => void; reject: (err: unknown) => void }>()
  let chain: Promise<void> = Promise.resolve()
  return {
    done(no: number, maxSeq: number): Promise<void> {
      finished.set(no, maxSeq)
      const mine = new Promise<void>((resolve, reject) => waiting.set(no, { resolve, reject }))
      let mark = -1
      const covered: number[] = []
      while (finished.has(next)) {
        mark = Math.max(mark, finished.get(next)!)
        finished.delete(next)
        covered.push(next++)
      }
      if (covered.length) {
        const settle = (err?: unknown) => {
          for (const n of covered) {
            const w = waiting.get(n)
            waiting.delete(n)
            if (err) w?.reject(err)
            else w?.resolve()
          }
        }
        chain = chain.then(() => (mark < 0 ? undefined : write(mark))).then(() => settle(), settle)
      }
      return mine
    },
  }
}

/**
 * Moves m:seq (KEYS[1]) up to ARGV[1]. Returns 1, or without writing: -1 when the key is gone (Redis
 * came back empty); -2 when it is below ARGV[2], a mark this process has seen in Redis (Redis came
 * back from an older snapshot, or lost the last second of its append-only file); -3 when the server's
 * run id is not ARGV[3] (it restarted since this process learned the mark: the batches in flight
 * may have lost writes the mark would vouch for).
 */
const ADVANCE_SEQ = `local c = redis.call('GET', KEYS[1])
if not c then return -1 end
if tonumber(c) < tonumber(ARGV[2]) then return -2 end
if string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') ~= ARGV[3] then return -3 end
if tonumber(ARGV[1]) > tonumber(c) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`

export async function advanceMark(redis: Redis, mark: number, seenMark: number, runId: string): Promise<1 | -1 | -2 | -3> {
  return (await redis.eval(ADVANCE_SEQ, 1, keys.seq, mark, seenMark, runId)) as 1 | -1 | -2 | -3
}

const RUN_ID = `return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')`

/**
 * The run id (a new one at every start) of the Redis server that holds m:seq: asked through a script
 * on that key, so on a Redis Cluster it is the master of m:seq's slot, the server ADVANCE_SEQ runs on.
 */
export async function redisRunId(redis: Redis): Promise<string> {
  const id = (await redis.eval(RUN_ID, 1, keys.seq)) as string | null
  if (!id) throw new Error('Redis INFO server has no run_id')
  return id
}
