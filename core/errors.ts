import type { ContentfulStatusCode } from 'hono/utils/http-status'

/** The one error type of the HTTP API: a status, a snake_case code and a message for people. */
export class ApiError extends Error {
  constructor(
    public status: ContentfulStatusCode,
    public code: string,
    message: string,
    public headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

export const badRequest = (message: string, code = 'invalid_request') => new ApiError(400, code, message)
export const unauthorized = (message = 'missing or invalid credentials') => new ApiError(401, 'unauthorized', message)
export const forbidden = (message = 'outside your scope') => new ApiError(403, 'forbidden', message)
export const notFound = (message = 'not found') => new ApiError(404, 'not_found', message)
export const unavailable = (dependency: string, retryAfterS = 2) =>
  new ApiError(503, 'unavailable', `${dependency} is unavailable; retry later`, { 'Retry-After': String(retryAfterS) })
