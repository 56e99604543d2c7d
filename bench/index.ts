/**
 * `npm run bench [-- options]`: the single-box benchmark (bench/run.ts, which takes the options), then
 * the KPI and campaign benches; `npm run bench -- --cluster [options]` runs bench/cluster.ts instead
 * (the distributed layout). Each is its own process, as it would be run alone.
 */
import { spawnSync } from 'node:child_process'

const args = process.argv.slice(2)
const run = (script: string, argv: string[]) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, ...argv], { stdio: 'inherit', cwd: new URL('..', import.meta.url) })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
if (args.includes('--cluster')) run('bench/cluster.ts', args)
else if (args.includes('--help')) run('bench/run.ts', args)
else for (const [script, argv] of [['bench/run.ts', args], ['bench/kpi.ts', []], ['bench/campaigns.ts', []]] as const) run(script, [...argv])
