// Cold start and calls/s per runtime (`node bench/runtimes.mjs [--rounds=N] [--out=FILE]`): the
// workloads of bench/run.mjs's cold start (require + fromConnectionString in a fresh process,
// wall time from spawn to exit, against the bare runtime) and throughput (getJob against the
// emulator, bench/workers/load.mjs, concurrency 16), run by each runtime of
// scripts/runtimes/runtimes.mjs and the host's node, ours and azure-iothub side by side
// (azure-iothub on the Node lines and Bun; on Deno ours only). Rounds alternate the packages.
// Writes the table into bench/RESULTS.md between its runtimes markers (or --out). Needs
// `npm run build` and `npm run setup:runtimes`.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { BENCH, ROOT, REFERENCE_SHIM, WORKERS, alternate, median, machineInfo, busyAtStart, RUNTIMES_START, RUNTIMES_END, packageModule, runJsonChild, snapshotOurs, startHub, log } from './lib/common.mjs'
import { RUNTIMES, runtimeBinary } from '../scripts/runtimes/runtimes.mjs'
import { installedVersion } from '../scripts/runtimes/setup.mjs'

// Read before the run, which loads the machine itself.
const m = machineInfo()

const { values: opts } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, total: { type: 'string', default: '4000' }, out: { type: 'string' } } })
const ROUNDS = Number(opts.rounds)
const TOTAL = Number(opts.total)
const CONCURRENCY = 16

snapshotOurs()
const hostNode = { name: 'host', label: 'Node.js', kind: 'node', binary: process.execPath, version: process.versions.node }
const runtimes = [hostNode, ...RUNTIMES.map((r) => ({ ...r, binary: runtimeBinary(r), version: installedVersion(r) }))].filter((r) => r.version)

/** [command, args] running a script (file) or inline code in `runtime`, with optional preload. */
function argv(runtime, { file, code, preload }) {
  if (runtime.kind === 'deno') return [runtime.binary, code ? ['eval', code] : ['run', '-A', file]]
  const pre = preload ? (runtime.kind === 'bun' ? ['--preload', preload] : ['--require', preload]) : []
  return [runtime.binary, [...pre, ...(code ? ['-e', code] : [file])]]
}
const packagesOn = (runtime) => (runtime.kind === 'deno' ? ['ours'] : ['ours', 'reference'])
const cleanEnv = () => {
  const env = { ...process.env }
  delete env.NODE_OPTIONS
  delete env.NODE_EXTRA_CA_CERTS
  return env
}

const CS = 'HostName=bench-cold-start.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='
const REPORT = 'process.stdout.write(JSON.stringify({ok:1})+"\\n")'
const coldCode = (pkg) => (pkg === 'bare' ? REPORT : `const {JobClient}=require(${JSON.stringify(packageModule(pkg))});JobClient.fromConnectionString(${JSON.stringify(CS)});${REPORT}`)

async function cold(runtime) {
  const variants = ['bare', ...packagesOn(runtime)]
  const wall = Object.fromEntries(variants.map((v) => [v, []]))
  for (let round = -1; round < ROUNDS; round++) {
    for (const v of round % 2 ? [...variants].reverse() : variants) {
      // Deno's `eval` is ESM: require comes from node:module there.
      const code = runtime.kind === 'deno' && v !== 'bare' ? `import{createRequire}from'node:module';const require=createRequire(import.meta.url);${coldCode(v)}` : coldCode(v)
      const [command, args] = argv(runtime, { code })
      const { wallMs } = await runJsonChild(command, args, { env: cleanEnv(), timeoutMs: 60_000 })
      if (round >= 0) wall[v].push(wallMs)
    }
  }
  return Object.fromEntries(variants.map((v) => [v, median(wall[v])]))
}

async function throughput(runtime, hub, jobIds) {
  const rates = { ours: [], reference: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const pkg of alternate(round).filter((p) => packagesOn(runtime).includes(p))) {
      const env = cleanEnv()
      if (pkg === 'reference') env.NODE_EXTRA_CA_CERTS = hub.caPath
      env.BENCH_PARAMS = JSON.stringify({ op: 'get', total: TOTAL, concurrency: CONCURRENCY, warmup: 64, jobIds, connectionString: hub.connectionString, timeoutMs: 120_000, pkg, module: packageModule(pkg), caPath: hub.caPath })
      const [command, args] = argv(runtime, { file: join(WORKERS, 'load.mjs'), preload: pkg === 'reference' ? REFERENCE_SHIM : null })
      const { result } = await runJsonChild(command, args, { env, timeoutMs: 180_000 })
      if (result.completed !== TOTAL) throw new Error(`${runtime.label} ${pkg}: ${result.completed}/${TOTAL} calls completed (${result.firstError})`)
      rates[pkg].push(result.callsPerSec)
    }
  }
  return { ours: median(rates.ours), reference: rates.reference.length ? median(rates.reference) : null }
}

const hub = await startHub([])
const rows = []
try {
  const client = (await import(join(ROOT, 'lib', 'main.mjs'))).JobClient.fromConnectionString(hub.connectionString, { ca: hub.ca })
  const jobIds = []
  for (let i = 0; i < 64; i++) {
    const id = `bench-runtimes-${i}`
    await client.scheduleDeviceMethod(id, "deviceId = 'device-0000'", { methodName: 'bench' }, new Date(Date.now() + 86_400_000), 3600)
    jobIds.push(id)
  }
  for (const runtime of runtimes) {
    log(`${runtime.label} ${runtime.version}: cold start`)
    const c = await cold(runtime)
    log(`${runtime.label} ${runtime.version}: throughput`)
    const t = await throughput(runtime, hub, jobIds)
    rows.push({ runtime: `${runtime.label} ${runtime.version}`, cold: c, throughput: t })
  }
} finally {
  await hub.stop()
}

const ms = (v) => (v === undefined || v === null ? 'n/a' : `${v.toFixed(0)}`)
const rate = (v) => (v === null ? 'n/a' : v.toLocaleString('en-US', { maximumFractionDigits: 0 }))
const table = [
  `Per runtime (\`node bench/runtimes.mjs --rounds=${ROUNDS}\`, medians of ${ROUNDS} rounds; ${m.cpu}, ${m.cores} cores, 1-minute load average ${m.loadavgAtStart?.[0] ?? 'n/a'} at the start${busyAtStart(m) ? ': the machine was busy, so the figures are noisy' : ''}). Cold start: wall ms from spawn to exit of \`require\` + \`fromConnectionString\` (bare: the runtime alone). Throughput: getJob calls/s, ${TOTAL} calls at concurrency ${CONCURRENCY} against the emulator. azure-iothub is not run on Deno.`,
  '',
  '| runtime | cold: bare | cold: iothub-jobs | cold: azure-iothub | getJob/s: iothub-jobs | getJob/s: azure-iothub |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.runtime} | ${ms(r.cold.bare)} | ${ms(r.cold.ours)} | ${ms(r.cold.reference)} | ${rate(r.throughput.ours)} | ${rate(r.throughput.reference)} |`),
].join('\n')
console.log(table)
const out = opts.out ?? join(BENCH, 'RESULTS.md')
const text = (() => {
  try {
    return readFileSync(out, 'utf8')
  } catch {
    return ''
  }
})()
const block = `${RUNTIMES_START}\n${table}\n${RUNTIMES_END}`
writeFileSync(out, text.includes(RUNTIMES_START) ? text.replace(new RegExp(`${RUNTIMES_START}[\\s\\S]*${RUNTIMES_END}`), block) : `${text.trimEnd()}\n\n## Runtimes\n\n${block}\n`)
log(`runtimes table written to ${out}`)
