import { pino, type DestinationStream, type Logger } from 'pino'

/**
 * JSON logs. Credentials never reach a log line: request logs carry no headers or bodies.
 * `destination` defaults to stdout (tests pass one that keeps the lines in memory).
 */
export function createLogger(level: string, name = 'kepu', destination?: DestinationStream): Logger {
  const options = {
    name,
    level,
    redact: { paths: ['*.authorization', '*.password', '*.token', '*.key', '*.phone', 'req.headers'], censor: '[redacted]' },
  }
  return destination ? pino(options, destination) : pino(options)
}
