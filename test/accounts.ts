import type { MemorySmsSender } from '../core/sms.ts'
import type { Stack } from './stack.ts'

/**
 * App accounts for tests: SMS code (the stack must run with SMS_SENDER=memory), registration.
 * Returns the account and its login token.
 */
export async function registerAccount(s: Stack, phone: string, nickname = '测试'): Promise<{ id: string; user_id: string; token: string }> {
  const sent = await s.call('POST', '/v1/auth/sms', { token: null, body: { phone } })
  if (sent.status !== 202) throw new Error(`sms: ${sent.status} ${sent.text}`)
  const code = (s.deps.sms as MemorySmsSender).last(phone)
  const r = await s.call('POST', '/v1/accounts', { token: null, body: { phone, code, password: 'Passw0rd', nickname } })
  if (r.status !== 201) throw new Error(`register: ${r.status} ${r.text}`)
  return { id: r.json.id, user_id: r.json.user_id, token: r.json.token }
}

export async function login(s: Stack, phone: string, password = 'Passw0rd'): Promise<any> {
  const r = await s.call('POST', '/v1/auth/login', { token: null, body: { phone, password } })
  if (r.status !== 200) throw new Error(`login: ${r.status} ${r.text}`)
  return r.json
}

/** An official (科协 staff) created with the admin token, then logged in: returns her token. */
export async function createOfficial(
  s: Stack,
  o: { phone: string; name: string; scope?: Record<string, string>; role?: 'operator'; password?: string },
): Promise<string> {
  const password = o.password ?? 'Official123'
  const { phone, name, scope, role } = o
  const r = await s.call('POST', '/v1/officials', { body: { phone, password, name, ...(scope && { scope }), ...(role && { role }) } })
  if (r.status !== 201) throw new Error(`official ${name}: ${r.status} ${r.text}`)
  return (await login(s, phone, password)).token
}
