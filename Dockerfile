# One image for every role of 科普中国 live analytics (ROLE=ingest | aggregator | api | all).
# The service runs TypeScript directly with tsx, so devDependencies are installed too.
# Built for the distributed layout (docker-compose.yml): REDIS_URL, NATS_URL and CLICKHOUSE_URL
# point at real servers. redis-server / nats-server are not in this image, so the embedded
# default (those URLs unset) does not run in it.
FROM node:20-bookworm-slim

WORKDIR /app

# Dependencies first, so source edits do not reinstall them.
# patches/ is applied by the postinstall step (patch-package): see patches/README.md.
COPY package.json package-lock.json ./
COPY patches ./patches
# Not `npm ci`: chdb's optional per-platform packages are not all on the registry, so the lock
# file cannot list them and `npm ci` refuses; `npm install` honours the lock and skips them.
RUN npm install --no-audit --no-fund --no-save && npm cache clean --force

# Sources stay root-owned (read-only for the service); only the data dir is writable.
COPY . .
RUN mkdir -p /app/data && chown node:node /app/data

ENV NODE_ENV=production \
    PORT=8080 \
    HOST=0.0.0.0 \
    DATA_DIR=/app/data

USER node
EXPOSE 8080

# Liveness only; docker-compose.yml overrides this with /readyz (dependencies up).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]

# Same as `npx tsx main.ts`, but in one process: npx exits on SIGTERM without waiting for its
# child, which would cut the graceful drain (stop taking requests, flush facts, ack) short.
# A larger young generation: the hot path allocates short-lived objects per event, and with the
# default the service spent 10-20 % more CPU per event (bench/run.ts, 30,000 users).
CMD ["node", "--max-semi-space-size=64", "--import", "tsx", "main.ts"]
