import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Logger } from 'pino'

/** ADMIN_TOKEN from the environment, or one generated at first start and kept at <data dir>/admin-token (0600). */
export function resolveAdminToken(configured: string | undefined, dataDir: string, log: Logger): string {
  if (configured) return configured
  const path = resolve(join(dataDir, 'admin-token'))
  if (existsSync(path)) {
    const t = readFileSync(path, 'utf8').trim()
    if (t.length >= 16) {
      log.info({ path }, 'admin token read from file')
      return t
    }
  }
  mkdirSync(dataDir, { recursive: true })
  const token = randomBytes(32).toString('base64url')
  writeFileSync(path, token + '\n', { mode: 0o600 })
  chmodSync(path, 0o600)
  log.info({ path }, 'admin token generated (read it from this file)')
  return token
}
