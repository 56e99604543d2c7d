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
