import { pino, type Logger } from 'pino'

/** JSON logs. Credentials never reach a log line: request logs carry no headers or bodies. */
export function createLogger(level: string, name = 'kepu'): Logger {
  return pino({
    name,
    level,
    redact: { paths: ['*.authorization', '*.password', '*.token', '*.key', '*.phone', 'req.headers'], censor: '[redacted]' },
  })
}
