import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // chDB binds one data directory per process: every test file runs in its own process.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    include: ['**/*.test.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    exclude: ['node_modules/**', 'data/**'],
  },
})
