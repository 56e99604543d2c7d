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
