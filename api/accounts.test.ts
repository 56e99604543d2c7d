import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogSmsSender, type MemorySmsSender } from '../core/sms.ts'
import { startStack, type Stack } from '../test/stack.ts'

/**
 * Registration and login of app accounts (issue 5, part 1): SMS codes (6 digits, 60 s between
 * sends, limited guesses), password / nickname / signature rules, one account per phone under 50
 * concurrent registrations, login, logout, password reset.
 */
let s: Stack
let sms: MemorySmsSender
const PW = 'Abc12345'

beforeAll(async () => {
  s = await startStack({ SMS_SENDER: 'memory' })
  sms = s.deps.sms as MemorySmsSender
})
afterAll(async () => s?.stop())

const anon = { token: null }
async function code(phone: string, purpose: 'register' | 'reset' = 'register') {
  const r = await s.call('POST', '/v1/auth/sms', { ...anon, body: { phone, purpose } })
  expect(r.status, r.text).toBe(202)
  return sms.last(phone, purpose)!
}

describe('SMS codes', () => {
  it('sends 6 digits, refuses a resend within 60 s, voids a code after 5 wrong guesses', async () => {
    const phone = '13700000001'
    const c = await code(phone)
    expect(c).toMatch(/^\d{6}$/)
    const again = await s.call('POST', '/v1/auth/sms', { ...anon, body: { phone } })
    expect(again.status).toBe(429)
    expect(Number(again.headers.get('retry-after'))).toBeGreaterThan(50)
    const wrong = c === '000000' ? '111111' : '000000'
    for (let i = 0; i < 5; i++) {
      const r = await s.call('POST', '/v1/accounts', { ...anon, body: { phone, code: wrong, password: PW, nickname: '小明' } })
      expect(r.json.error.code).toBe('wrong_code')
    }
    const locked = await s.call('POST', '/v1/accounts', { ...anon, body: { phone, code: c, password: PW, nickname: '小明' } })
    expect(locked.status).toBe(400)
    expect(locked.json.error.code).toBe('code_locked')
  })

  it('refuses non-mainland numbers and asks nothing of unknown phones on reset', async () => {
    expect((await s.call('POST', '/v1/auth/sms', { ...anon, body: { phone: '12345' } })).status).toBe(400)
    const before = sms.sent
    expect((await s.call('POST', '/v1/auth/sms', { ...anon, body: { phone: '13700000099', purpose: 'reset' } })).status).toBe(202)
    expect(sms.sent).toBe(before)
  })

  it('the log sender masks the phone and logs the code only at debug level', async () => {
    const lines: string[] = []
    const out = new Writable({ write: (chunk, _e, cb) => (lines.push(String(chunk)), cb()) })
    await createLogSmsSender(pino({ level: 'info' }, out)).send('13812345678', '654321', 'register')
    expect(lines.join('')).toContain('138****5678')
    expect(lines.join('')).not.toMatch(/13812345678|654321/)
    lines.length = 0
    await createLogSmsSender(pino({ level: 'debug' }, out)).send('13812345678', '654321', 'register')
    expect(lines.join('')).toContain('654321')
    expect(lines.join('')).not.toContain('13812345678')
  })
})

describe('registration', () => {
  it('applies the password, nickname and signature rules', async () => {
    const phone = '13700000002'
    const c = await code(phone)
    const bad: [string, Record<string, unknown>][] = [
      ['short', { password: 'Ab12345' }],
      ['long', { password: 'Abcdef1234567' }],
      ['no digit', { password: 'Abcdefgh' }],
      ['no letter', { password: '12345678' }],
      ['symbol', { password: 'Abc1234!' }],
      ['nickname empty', { nickname: '' }],
      ['nickname 13', { nickname: '一二三四五六七八九十一二三' }],
      ['signature 141', { signature: 'x'.repeat(141) }],
    ]
    for (const [why, over] of bad) {
      const r = await s.call('POST', '/v1/accounts', { ...anon, body: { phone, code: c, password: PW, nickname: '小明', ...over } })
      expect(r.status, why).toBe(400)
    }
    const ok = await s.call('POST', '/v1/accounts', { ...anon, body: { phone, code: c, password: 'abcDEF123456', nickname: '一二三四五六七八九十一二', signature: '签'.repeat(140) } })
    expect(ok.status, ok.text).toBe(201)
    expect(ok.json).toMatchObject({ phone, certified: false, certification: null, scope: null })
    // The code was used up; the phone is taken.
    expect((await s.call('POST', '/v1/accounts', { ...anon, body: { phone, code: c, password: PW, nickname: 'x' } })).json.error.code).toBe('code_expired')
    expect((await s.call('POST', '/v1/auth/sms', { ...anon, body: { phone } })).status).toBe(409)
    // Passwords are case-sensitive.
    expect((await s.call('POST', '/v1/auth/login', { ...anon, body: { phone, password: 'ABCdef123456' } })).status).toBe(401)
    expect((await s.call('POST', '/v1/auth/login', { ...anon, body: { phone, password: 'abcDEF123456' } })).status).toBe(200)
  })

  it('50 parallel registrations with one phone create exactly one account', async () => {
    const phone = '13700000003'
    const c = await code(phone)
    const rs = await Promise.all(
      Array.from({ length: 50 }, (_, i) => s.call('POST', '/v1/accounts', { ...anon, body: { phone, code: c, password: PW, nickname: `n${i}` } })),
    )
    const statuses = rs.map((r) => r.status)
    expect(statuses.filter((x) => x === 201)).toHaveLength(1)
    // The others lost the race in the store (409) or came after the code was used (400).
    expect(statuses.every((x) => x === 201 || x === 409 || x === 400)).toBe(true)
    expect(statuses.filter((x) => x === 409).length).toBeGreaterThan(0)
    const winner = rs.find((r) => r.status === 201)!.json
    const stored = await s.deps.accounts.byPhone(phone)
    expect(stored?.id).toBe(winner.id)
    expect(stored?.nickname).toBe(winner.nickname)
    // Exactly one account record in the bucket holds this phone.
    const kv = await new (await import('@nats-io/kv')).Kvm(s.deps.nc).open('accounts')
    let holders = 0
    for await (const k of await kv.keys('a.>')) {
      const e = await kv.get(k)
      if (e?.value.length && JSON.parse(new TextDecoder().decode(e.value)).phone === phone) holders++
    }
    expect(holders).toBe(1)
  })

  it('keeps one login per phone across app accounts and officials, also when both are created at once', async () => {
    const official = (phone: string) => s.call('POST', '/v1/officials', { body: { phone, password: 'Official123', name: '官员', scope: { region_code: '430623' } } })
    const register = (phone: string, c: string) => s.call('POST', '/v1/accounts', { ...anon, body: { phone, code: c, password: PW, nickname: '小红' } })
    const login = (phone: string, password: string) => s.call('POST', '/v1/auth/login', { ...anon, body: { phone, password } })
    // An app account first: no official may take its phone; she still logs in as herself.
    const a = '13700000011'
    expect((await register(a, await code(a))).status).toBe(201)
    const o1 = await official(a)
    expect([o1.status, o1.json.error?.code]).toEqual([409, 'phone_taken'])
    expect((await login(a, PW)).json).toMatchObject({ role: 'communicator' })
    // An official first: no code is sent to register her phone, and a code obtained before she was
    // created does not register it either; she still logs in as the official.
    const b = '13700000012'
    const early = await code(b)
    expect((await official(b)).status).toBe(201)
    expect((await s.call('POST', '/v1/auth/sms', { ...anon, body: { phone: b } })).json.error.code).toBe('phone_taken')
    expect((await register(b, early)).json.error.code).toBe('phone_taken')
    expect((await login(b, 'Official123')).json).toMatchObject({ role: 'official' })
    // Both at once, on several phones: never both, and the phone logs in as whichever was created.
    for (let i = 0; i < 8; i++) {
      const phone = `1370000002${i}`
      const c = await code(phone)
      const [o, r] = await Promise.all([official(phone), register(phone, c)])
      expect([o.status, r.status].filter((x) => x === 201).length, `official ${o.status}, account ${r.status}`).toBeLessThanOrEqual(1)
      expect([o.status, r.status].every((x) => x === 201 || x === 409)).toBe(true)
      const acc = await s.deps.accounts.byPhone(phone)
      const off = await s.deps.officials.byPhone(phone)
      expect(!!acc, phone).toBe(r.status === 201)
      expect(!!off, phone).toBe(o.status === 201)
    }
  })
})

describe('login, logout, reset', () => {
  it('logs in, shows me, logs out (token void), resets the password by SMS (old sessions void)', async () => {
    const phone = '13700000004'
    const reg = await s.call('POST', '/v1/accounts', { ...anon, body: { phone, code: await code(phone), password: PW, nickname: '小红' } })
    expect(reg.status).toBe(201)
    const login = await s.call('POST', '/v1/auth/login', { ...anon, body: { phone, password: PW } })
    expect(login.status).toBe(200)
    expect(login.json).toMatchObject({ role: 'communicator', scope: null, name: '小红', account_id: reg.json.id })
    const t = login.json.token
    const me = await s.call('GET', '/v1/me', { token: t })
    expect(me.json).toMatchObject({ id: reg.json.id, phone, nickname: '小红' })
    expect((await s.call('PATCH', '/v1/me', { token: t, body: { signature: '热爱科普' } })).json.signature).toBe('热爱科普')
    expect((await s.call('PATCH', '/v1/me', { token: t, body: { nickname: '' } })).status).toBe(400)
    // A communicator is not staff.
    expect((await s.call('GET', '/v1/kpis', { token: t })).status).toBe(403)
    expect((await s.call('POST', '/v1/auth/logout', { token: t })).status).toBe(204)
    expect((await s.call('GET', '/v1/me', { token: t })).status).toBe(401)
    // The registration token still works; a reset voids it.
    expect((await s.call('GET', '/v1/me', { token: reg.json.token })).status).toBe(200)
    await new Promise((r) => setTimeout(r, 1100)) // tokens carry whole seconds
    const c = await code(phone, 'reset')
    expect((await s.call('POST', '/v1/auth/reset', { ...anon, body: { phone, code: c, password: 'Newpass99' } })).status).toBe(204)
    expect((await s.call('GET', '/v1/me', { token: reg.json.token })).status).toBe(401)
    expect((await s.call('POST', '/v1/auth/login', { ...anon, body: { phone, password: PW } })).status).toBe(401)
    const again = await s.call('POST', '/v1/auth/login', { ...anon, body: { phone, password: 'Newpass99' } })
    expect(again.status).toBe(200)
    expect((await s.call('GET', '/v1/me', { token: again.json.token })).status).toBe(200)
    expect((await s.call('GET', '/v1/me')).status).toBe(403) // the admin token has no account
  })
})
