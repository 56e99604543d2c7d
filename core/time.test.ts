import { describe, expect, it } from 'vitest'
import { compactDay, isoDay, parseDay, parseInstant, periodRange, shanghaiIso } from './time.ts'

describe('Asia/Shanghai calendar', () => {
  it('puts 16:30 UTC into the next Shanghai day', () => {
    expect(isoDay(Date.parse('2021-06-20T16:30:00Z'))).toBe('2021-06-21')
    expect(compactDay(Date.parse('2021-06-20T15:59:59.999Z'))).toBe('20210620')
  })
  it('starts weeks on Monday', () => {
    // 2021-06-27 is a Sunday: its week starts on Monday 2021-06-21.
    const r = periodRange('week', Date.parse('2021-06-27T12:00:00+08:00'))
    expect(r.key).toBe('w20210621')
    expect(r.from).toBe('2021-06-21')
    expect(r.to).toBe('2021-06-27')
  })
  it('gives month and year bounds as Shanghai days', () => {
    const m = periodRange('month', Date.parse('2024-02-10T00:00:00+08:00'))
    expect([m.key, m.from, m.to]).toEqual(['m202402', '2024-02-01', '2024-02-29'])
    const y = periodRange('year', Date.parse('2021-12-31T23:59:59+08:00'))
    expect([y.key, y.from, y.to]).toEqual(['y2021', '2021-01-01', '2021-12-31'])
    expect(y.startMs).toBe(Date.parse('2021-01-01T00:00:00+08:00'))
  })
  it('parses bare days and rejects impossible ones', () => {
    expect(parseDay('2021-06-21')).toBe(Date.parse('2021-06-21T00:00:00+08:00'))
    expect(parseDay('2021-02-30')).toBeNull()
    expect(parseDay('21-06-21')).toBeNull()
  })
  it('accepts ISO with offset or epoch ms, not bare local times', () => {
    expect(parseInstant('2021-06-21T08:00:00+08:00')).toBe(Date.parse('2021-06-21T00:00:00Z'))
    expect(parseInstant(1624233600000)).toBe(1624233600000)
    expect(parseInstant('1624233600000')).toBe(1624233600000)
    expect(parseInstant('2021-06-21T08:00:00')).toBeNull()
    expect(parseInstant('yesterday')).toBeNull()
    expect(parseInstant(-5)).toBeNull()
    // Only 2000–2099: anything else is a typo or an attack (1e30 would not even print as a date).
    for (const bad of [1e30, 2e15, '9999999999999999', 946684799999, '1999-12-31T23:59:59Z', '2100-01-01T00:00:00Z', 1.5]) expect(parseInstant(bad), String(bad)).toBeNull()
    expect(parseInstant(946684800000)).toBe(946684800000)
    expect(parseInstant('2099-12-31T23:59:59.999Z')).toBe(Date.UTC(2100, 0, 1) - 1)
    expect(parseDay('1999-12-31')).toBeNull()
    expect(parseDay('9999-12-31')).toBeNull()
    expect(parseDay('2099-12-31')).not.toBeNull()
  })
})

describe('shanghaiIso', () => {
  const viaDate = (ms: number) => new Date(ms + 8 * 3600_000).toISOString().replace('Z', '+08:00')
  it('writes the instant with +08:00', () => {
    expect(shanghaiIso(Date.parse('2024-02-29T15:59:59.007Z'))).toBe('2024-02-29T23:59:59.007+08:00')
    expect(shanghaiIso(Date.parse('2024-02-29T16:00:00Z'))).toBe('2024-03-01T00:00:00.000+08:00')
    expect(shanghaiIso(-8 * 3600_000)).toBe('1970-01-01T00:00:00.000+08:00')
  })
  it('agrees with Date on random instants, leap days and the edges of its fast range', () => {
    let seed = 7
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    const samples = [-8 * 3600_000 - 1, 0, 951_782_400_000, 4_107_542_400_000, 253_402_300_799_999 - 8 * 3600_000, 253_402_300_800_000, -1e12]
    for (let i = 0; i < 20_000; i++) samples.push(Math.floor(rnd() * 253_402_300_800_000) - 8 * 3600_000)
    for (const ms of samples) expect(shanghaiIso(ms)).toBe(viaDate(ms))
  })
})

