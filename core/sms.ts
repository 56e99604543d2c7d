import { createHash, randomInt } from 'node:crypto'
import type { Redis, Result } from 'ioredis'
import type { Logger } from 'pino'

/**
 * SMS verification codes for registration and password reset. A code is 6 digits, valid 5 minutes,
 * a new one is sent no sooner than 60 s after the last, and a code takes at most 5 wrong guesses
 * (then it is void and a new one must be requested). Codes are kept in Redis only as SHA-256 hashes,
 * under a key tagged with the phone ({phone}) so that the check-and-count is one script in one slot.
 *
 * The sender is an interface: the default (`SMS_SENDER=log`) logs "code sent" with the phone masked
 * and the code only at debug level; `memory` keeps the last code per phone for tests; `http` posts
 * {phone, code, purpose} as JSON to SMS_GATEWAY_URL (a real gateway, or an adapter to one).
 */
export type SmsPurpose = 'register' | 'reset'

export interface SmsSender {
  send(phone: string, code: string, purpose: SmsPurpose): Promise<void>
}

/** 13812341234 → 138****1234 (the only form of a phone number that reaches a log line). */
export const maskPhone = (phone: string) => phone.replace(/^(\d{3})\d{4}(\d{4})$/, '$1****$2')

export function createLogSmsSender(log: Logger): SmsSender {
  return {
    async send(phone, code, purpose) {
      log.info({ to: maskPhone(phone), purpose }, 'sms code sent')
      log.debug({ to: maskPhone(phone), purpose, code }, 'sms code (development sender)')
    },
  }
}

export interface MemorySmsSender extends SmsSender {
  /** The last code sent to a phone (tests). */
  last(phone: string, purpose?: SmsPurpose): string | undefined
  sent: number
}

export function createMemorySmsSender(): MemorySmsSender {
  const codes = new Map<string, string>()
  const s: MemorySmsSender = {
    sent: 0,
    async send(phone, code, purpose) {
      s.sent++
      codes.set(`${purpose}:${phone}`, code)
      if (codes.size > 10_000) codes.delete(codes.keys().next().value!)
    },
    last: (phone, purpose = 'register') => codes.get(`${purpose}:${phone}`),
  }
  return s
}

export function createHttpSmsSender(url: string): SmsSender {
  return {
    async send(phone, code, purpose) {
      const r = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ phone, code, purpose }),
        signal: AbortSignal.timeout(5000),
      })
      if (!r.ok) throw new Error(`sms gateway answered ${r.status}`)
    },
  }
}

export const SMS_RULES = { ttlS: 300, resendS: 60, maxAttempts: 5, perIpPerHour: 100 }

const codeKey = (phone: string, purpose: SmsPurpose) => `sms:{${phone}}:${purpose}`
const gapKey = (phone: string, purpose: SmsPurpose) => `sms:{${phone}}:${purpose}:gap`
const hashCode = (phone: string, code: string) => createHash('sha256').update(`${phone}:${code}`).digest('hex')

// KEYS[1] the code hash {h, a}; ARGV: hash of the guess, max attempts.
// Returns 'ok', 'wrong', 'expired' (no code) or 'locked' (too many wrong guesses).
const CHECK = `
local v = redis.call('HMGET', KEYS[1], 'h', 'a')
if not v[1] then return 'expired' end
local a = tonumber(v[2] or '0')
if a >= tonumber(ARGV[2]) then return 'locked' end
if v[1] == ARGV[1] then return 'ok' end
redis.call('HINCRBY', KEYS[1], 'a', 1)
return 'wrong'
`

declare module 'ioredis' {
  interface RedisCommander<Context> {
    smsCheck(key: string, hash: string, max: number): Result<string, Context>
  }
}

export type SendResult = { ok: true } | { ok: false; retryAfterS: number }
export type CheckResult = 'ok' | 'wrong' | 'expired' | 'locked'

export interface SmsCodes {
  /** Sends a new code unless one was sent less than 60 s ago. */
  send(phone: string, purpose: SmsPurpose): Promise<SendResult>
  /** Checks a code without using it up (wrong guesses count). */
  check(phone: string, purpose: SmsPurpose, code: string): Promise<CheckResult>
  /** Uses a code up once the action it allowed is done. */
  consume(phone: string, purpose: SmsPurpose): Promise<void>
}

export function createSmsCodes(redis: Redis, sender: SmsSender, rules = SMS_RULES): SmsCodes {
  if (!(redis as unknown as { smsCheck?: unknown }).smsCheck) redis.defineCommand('smsCheck', { numberOfKeys: 1, lua: CHECK })
  return {
    async send(phone, purpose) {
      const ok = await redis.set(gapKey(phone, purpose), '1', 'EX', rules.resendS, 'NX')
      if (!ok) {
        const ttl = await redis.ttl(gapKey(phone, purpose))
        return { ok: false, retryAfterS: ttl > 0 ? ttl : rules.resendS }
      }
      const code = String(randomInt(0, 1_000_000)).padStart(6, '0')
      // A new code replaces the old one and its attempt count.
      await redis.multi().del(codeKey(phone, purpose)).hset(codeKey(phone, purpose), 'h', hashCode(phone, code), 'a', '0').expire(codeKey(phone, purpose), rules.ttlS).exec()
      try {
        await sender.send(phone, code, purpose)
      } catch (e) {
        await redis.del(codeKey(phone, purpose), gapKey(phone, purpose))
        throw e
      }
      return { ok: true }
    },
    async check(phone, purpose, code) {
      if (!/^\d{6}$/.test(code)) return 'wrong'
      return (await redis.smsCheck(codeKey(phone, purpose), hashCode(phone, code), rules.maxAttempts)) as CheckResult
    },
    async consume(phone, purpose) {
      await redis.del(codeKey(phone, purpose))
    },
  }
}
