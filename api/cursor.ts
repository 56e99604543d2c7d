import { badRequest } from '../core/errors.ts'

/**
 * Opaque keyset cursors: the sort key of a page's last entry as base64url JSON. `dec` checks the
 * shape it expects and answers 400 `invalid_cursor` for anything else.
 */
export const cursor = {
  enc: (...parts: (string | number)[]) => Buffer.from(JSON.stringify(parts)).toString('base64url'),
  dec: <T extends unknown[]>(s: string, check: (v: unknown[]) => boolean): T => {
    try {
      const v = JSON.parse(Buffer.from(s, 'base64url').toString()) as unknown
      if (Array.isArray(v) && check(v)) return v as T
    } catch {
      /* fall through */
    }
    throw badRequest('after: not a cursor from this list', 'invalid_cursor')
  },
}
