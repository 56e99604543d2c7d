import { describe, expect, it } from 'vitest'
import { createSeqMark } from './seq-mark.ts'

describe('the applied-sequence mark', () => {
  it('moves only over batches done in start order, whatever order they finish in', async () => {
    const writes: number[] = []
    const mark = createSeqMark(async (m) => void writes.push(m))
    const settled: number[] = []
    const b2 = mark.done(2, 300).then(() => settled.push(2))
    const b1 = mark.done(1, 200).then(() => settled.push(1))
    await new Promise((r) => setImmediate(r))
    // Batch 0 still runs: nothing may be written, and 1 and 2 wait.
    expect(writes).toEqual([])
    expect(settled).toEqual([])
    await mark.done(0, 100)
    await Promise.all([b1, b2])
    expect(writes).toEqual([300]) // one write covers 0, 1 and 2
    expect(settled.sort()).toEqual([1, 2])
  })

  it('a failed batch vouches for nothing and does not hold later batches back', async () => {
    const writes: number[] = []
    const mark = createSeqMark(async (m) => void writes.push(m))
    const later = mark.done(1, 50)
    await mark.done(0, -1) // batch 0 failed: its messages come again in later batches
    await later
    expect(writes).toEqual([50])
    await mark.done(2, -1)
    expect(writes).toEqual([50]) // nothing to vouch for: no write
  })

  it('a failed write rejects the batches it covered, and the next mark is written', async () => {
    let fail = true
    const writes: number[] = []
    const mark = createSeqMark(async (m) => {
      if (fail) throw new Error('Redis lost its state')
      writes.push(m)
    })
    await expect(mark.done(0, 10)).rejects.toThrow('Redis lost its state')
    fail = false
    await mark.done(1, 20)
    expect(writes).toEqual([20])
  })
})
