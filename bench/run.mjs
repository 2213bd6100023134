// Side-by-side benchmarks of iothub-jobs ("ours") against azure-iothub@1.16.6 ("reference").
//
//   npm run bench                    # build, then every workload at full size (several minutes)
//   npm run bench -- --quick         # CI smoke: small sizes, 1 run; checks completion, not timings
//   node bench/run.mjs --only=throughput,ceiling --runs=7
//   npm run bench -- --scale         # the fleet-scale benchmark instead (bench/scale.mjs, its options)
//
// Every client runs in a fresh child process per measurement (bench/workers/*), the two packages
// alternate run by run (order flipped on odd rounds), and each figure is the median of the runs.
// Full runs write bench/RESULTS.md and bench/results.json; quick runs write bench/tmp/ (ignored by
// git) unless --out is given. Exit code 1 when a workload did not complete for either package.
import { execFile, execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, lstatSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import {
  ROOT, BENCH, PACKAGES, PEERS, alternate, median, ratio, machineInfo, busyAtStart, RUNTIMES_END, packageModule, runJsonChild, runWorker,
  startHub, log, firstErrorLine, trackChild, addonFingerprint, snapshotOurs,
} from './lib/common.mjs'
import { runFaults } from './faults.mjs'
import { renderMarkdown } from './lib/report.mjs'

const execFileAsync = promisify(execFile)
const WORKLOADS = ['cold', 'footprint', 'throughput', 'schedule', 'memory', 'ceiling', 'faults']

if (process.argv.includes('--scale')) {
  const { runScale } = await import('./scale.mjs')
  process.exit(await runScale())
}

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    runs: { type: 'string' },
    out: { type: 'string' },
    label: { type: 'string' },
  },
})
const quick = opts.quick
const only = new Set(opts.only ? opts.only.split(',') : WORKLOADS)
for (const w of only) if (!WORKLOADS.includes(w)) throw new Error(`--only: unknown workload ${w} (${WORKLOADS.join(', ')})`)

// Sizes. Full: the figures of record. Quick: the same code paths, small enough for CI (< 2 min).
const RUNS = Number(opts.runs ?? (quick ? 1 : 5))
const CFG = {
  coldRounds: quick ? 1 : Math.max(RUNS, 15),
  getTotal: quick ? 400 : 20_000,
  getConcurrency: [1, 16, 256],
  scheduleTotal: quick ? 200 : 2_000,
  scheduleConcurrency: 32,
  inFlight: quick ? 500 : 10_000,
  memoryLatencyMs: 500,
  seedJobs: 64,
  workerTimeoutMs: quick ? 45_000 : 240_000,
}
const warmupFor = (concurrency) => (quick ? Math.min(64, concurrency) : Math.max(2 * concurrency, 200))

snapshotOurs()
const results = {
  suite: 'iothub-jobs vs azure-iothub@1.16.6',
  command: (() => {
    const args = [quick && '--quick', opts.only && `--only=${opts.only}`, opts.runs && `--runs=${opts.runs}`].filter(Boolean)
    return `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`
  })(),
  quick,
  label: opts.label ?? null,
  runs: RUNS,
  machine: machineInfo(),
  addon: addonFingerprint(),
  config: CFG,
  workloads: {},
  errors: [],
  warnings: [],
}
const started = Date.now()

const summarize = (runs, keys) =>
  Object.fromEntries(keys.map((k) => [k, median(runs.map((r) => r?.[k]))]))

/** null when every run of every package completed all its calls without error, else why not. */
function completedAll(runsByPkg, expected) {
  for (const [pkg, runs] of Object.entries(runsByPkg)) {
    for (const r of runs) {
      if (!r || r.error) return `${pkg}: ${r?.error ?? 'no result'}`
      if (r.failed > 0 || r.completed !== expected || r.stoppedByDeadline)
        return `${pkg}: completed ${r.completed}/${expected}, failed ${r.failed}${r.stoppedByDeadline ? ', stopped by deadline' : ''}; first error: ${r.firstError}`
    }
  }
  return null
}

async function measure(pkg, script, params, caPath) {
  try {
    return await runWorker(pkg, script, params, { caPath, timeoutMs: CFG.workerTimeoutMs + 30_000 })
  } catch (err) {
    return { pkg, error: err.message.split('\n').slice(0, 6).join(' | ').slice(0, 600) }
  }
}

/** Creates `count` static jobs (start time a day ahead) for the GET workloads, through the reference. */
async function seedJobs(hub, prefix, count) {
  const seed = await runWorker(
    'reference',
    'load.mjs',
    {
      op: 'schedule', total: count, concurrency: Math.min(count, 16), idPrefix: prefix,
      queryCondition: "deviceId = 'device-0000'", startOffsetMs: 86_400_000,
      connectionString: hub.connectionString, timeoutMs: 60_000,
    },
    { caPath: hub.caPath, timeoutMs: 90_000 },
  )
  if (seed.failed || seed.completed !== count) throw new Error(`seeding ${count} jobs failed: ${seed.firstError}`)
  return Array.from({ length: count }, (_, i) => `${prefix}m${i}`)
}

// ---------------------------------------------------------------------------------------------
// 1. Cold start: `node -e` that requires the package and builds a client, minus bare `node -e`.
async function coldStart() {
  const cs = 'HostName=bench-cold-start.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='
  // Every variant ends with the same report: peak RSS and the in-process time (origin = process start).
  const report = 'process.stdout.write(JSON.stringify({maxRssKb:process.resourceUsage().maxRSS,readyMs:performance.now()})+"\\n")'
  const code = {
    bare: report,
    ours: `const {JobClient}=require(${JSON.stringify(packageModule('ours'))});JobClient.fromConnectionString(${JSON.stringify(cs)});${report}`,
    reference: `const {JobClient}=require(${JSON.stringify(packageModule('reference'))});JobClient.fromConnectionString(${JSON.stringify(cs)});${report}`,
  }
  const env = { ...process.env }
  delete env.NODE_OPTIONS
  delete env.NODE_EXTRA_CA_CERTS
  const variants = ['bare', ...PACKAGES]
  const runs = { bare: [], ours: [], reference: [] }
  // One unrecorded round first: fills the page cache for node, both packages and the .node file.
  for (let round = -1; round < CFG.coldRounds; round++) {
    const order = variants.map((_, i) => variants[(i + Math.max(round, 0)) % variants.length])
    for (const v of order) {
      let sample
      try {
        const { result, wallMs } = await runJsonChild(process.execPath, ['-e', code[v]], { env, timeoutMs: 30_000 })
        sample = { wallMs, ...result }
      } catch (err) {
        sample = { error: err.message.slice(0, 400) }
      }
      if (round >= 0) runs[v].push(sample)
    }
  }
  const keys = ['wallMs', 'readyMs', 'maxRssKb']
  const med = Object.fromEntries(variants.map((v) => [v, summarize(runs[v], keys)]))
  const overhead = Object.fromEntries(
    PACKAGES.map((p) => [p, Object.fromEntries(keys.map((k) => [k, med[p][k] === null || med.bare[k] === null ? null : med[p][k] - med.bare[k]]))]),
  )
  const failures = variants.flatMap((v) => runs[v].filter((r) => r.error).map((r) => `${v}: ${r.error}`))
  return { runs, median: med, overhead, ratio: Object.fromEntries(keys.map((k) => [k, ratio(overhead.ours[k], overhead.reference[k])])), failed: failures[0] ?? null }
}

// ---------------------------------------------------------------------------------------------
// 2. Footprint: npm pack of ours, then a fresh install of each package into an empty folder.
function diskUsage(dir) {
  const seen = new Set()
  let bytes = 0
  let blocks = 0
  let files = 0
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name)
      const st = lstatSync(path)
      if (seen.has(st.ino)) continue
      seen.add(st.ino)
      blocks += st.blocks * 512
      if (st.isDirectory()) walk(path)
      else if (st.isFile()) {
        bytes += st.size
        files++
      }
    }
  }
  walk(dir)
  return { bytes, diskBytes: blocks, files }
}

async function installInto(dir, spec) {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'bench-footprint', version: '1.0.0', private: true }))
  const t0 = Date.now()
  await execFileAsync('npm', ['install', spec, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: dir, env: { ...process.env, npm_config_update_notifier: 'false' }, timeout: 300_000, maxBuffer: 16 * 1024 * 1024,
  })
  const lock = JSON.parse(readFileSync(join(dir, 'node_modules', '.package-lock.json'), 'utf8'))
  const packages = Object.entries(lock.packages).filter(([k, v]) => k.startsWith('node_modules/') && !v.link).length
  return { packages, installMs: Date.now() - t0, ...diskUsage(join(dir, 'node_modules')) }
}

async function footprint() {
  const dir = mkdtempSync(join(tmpdir(), 'iothub-jobs-footprint-'))
  try {
    const ours = packageModule('ours') // the snapshot of the working tree taken at start
    const nodeFiles = readdirSync(ours).filter((f) => /^iothub-jobs\..+\.node$/.test(f))
    if (nodeFiles.length === 0) throw new Error('no iothub-jobs.*.node in the repo root: run `npm run build` first')
    const [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: ours, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }))
    const tarball = join(dir, packed.filename)
    // Both installs at once: sizes and counts do not depend on timing.
    const [oursInstall, reference] = await Promise.all([installInto(join(dir, 'ours'), tarball), installInto(join(dir, 'reference'), 'azure-iothub@1.16.6')])
    const installed = { ...oursInstall, tarballBytes: packed.size, unpackedBytes: packed.unpackedSize, tarballFiles: packed.entryCount }
    const addon = Object.fromEntries(nodeFiles.map((f) => [f, statSync(join(ours, f)).size]))
    return {
      ours: installed, reference, addonBytes: addon,
      ratio: { bytes: ratio(installed.bytes, reference.bytes), diskBytes: ratio(installed.diskBytes, reference.diskBytes), packages: ratio(installed.packages, reference.packages) },
      failed: null,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------
// 3 + 6. Throughput, client CPU, latency (getJob at c = 1, 16, 256), with the hand-written undici and
// fetch peers and the Rust ceiling at 16 and 256.
/**
 * Builds crates/core/examples/ceiling.rs in the background (release profile, workspace feature set,
 * so the artifacts of `cargo test --workspace --release` are reused). Resolves with the binary path.
 */
function buildCeiling() {
  const exe = join(ROOT, 'target', 'release', 'examples', process.platform === 'win32' ? 'ceiling.exe' : 'ceiling')
  return new Promise((resolve, reject) => {
    const child = trackChild(spawn('cargo', ['build', '--release', '--workspace', '--example', 'ceiling'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] }))
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr = (stderr + d).slice(-8000)))
    const timer = setTimeout(() => child.kill('SIGKILL'), 1_200_000)
    child.once('error', (err) => (clearTimeout(timer), reject(err)))
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve(exe)
      else reject(new Error(`cargo build --example ceiling exited with ${signal ?? code}: ${firstErrorLine(stderr)}`))
    })
  })
}

async function measureCeiling(exe, hub, jobIds, total, concurrency) {
  if (!exe) return { pkg: 'ceiling', error: 'ceiling example not built' }
  const env = {
    ...process.env,
    IOTHUB_CONNECTION_STRING: hub.connectionString, IOTHUB_CA_PATH: hub.caPath, BENCH_JOB_IDS: jobIds.join(','),
    BENCH_TOTAL: String(total), BENCH_CONCURRENCY: String(concurrency), BENCH_WARMUP: String(warmupFor(concurrency)),
    BENCH_TIMEOUT_MS: String(CFG.workerTimeoutMs),
  }
  delete env.NODE_EXTRA_CA_CERTS
  try {
    const { result } = await runJsonChild(exe, [], { env, timeoutMs: CFG.workerTimeoutMs + 30_000 })
    return result
  } catch (err) {
    return { pkg: 'ceiling', error: err.message.slice(0, 600) }
  }
}

const LOAD_KEYS = ['callsPerSec', 'cpuPerCallUs', 'p50Ms', 'p99Ms', 'maxRssKb', 'wallMs']
// The concurrencies at which the Rust ceiling and the hand-written peers run beside the packages.
const COMPARED = [16, 256]

async function throughput({ withThroughput, withCeiling }) {
  let exe = null
  let ceilingBuildError = null
  if (withCeiling) {
    try {
      exe = await ceilingBuild
    } catch (err) {
      ceilingBuildError = err.message.slice(0, 400)
    }
  }
  const hub = await startHub([])
  try {
    const jobIds = await seedJobs(hub, 'bench-get-', CFG.seedJobs)
    const out = { throughput: [], ceiling: [] }
    const levels = withThroughput ? CFG.getConcurrency : COMPARED
    for (const concurrency of levels) {
      const compared = COMPARED.includes(concurrency)
      const runs = Object.fromEntries([...PACKAGES, ...PEERS].map((p) => [p, []]))
      const ceilingRuns = []
      for (let round = 0; round < RUNS; round++) {
        // Every client of this level in one round, each at a different place from round to round.
        const order = withThroughput ? [...alternate(round)] : []
        if (withThroughput && compared) PEERS.forEach((peer, k) => order.splice((round + k) % (order.length + 1), 0, peer))
        if (withCeiling && compared) order.splice(round % (order.length + 1), 0, 'ceiling')
        for (const pkg of order) {
          if (pkg === 'ceiling') {
            ceilingRuns.push(await measureCeiling(exe, hub, jobIds, CFG.getTotal, concurrency))
            continue
          }
          const params = { op: 'get', total: CFG.getTotal, concurrency, warmup: warmupFor(concurrency), jobIds, connectionString: hub.connectionString, timeoutMs: CFG.workerTimeoutMs }
          runs[pkg].push(await measure(pkg, 'load.mjs', params, hub.caPath))
        }
        log(`getJob c=${concurrency} round ${round + 1}/${RUNS} done`)
      }
      let ours = null
      if (withThroughput) {
        const med = Object.fromEntries(PACKAGES.map((p) => [p, summarize(runs[p], LOAD_KEYS)]))
        ours = med.ours
        const measured = compared ? runs : Object.fromEntries(PACKAGES.map((p) => [p, runs[p]]))
        out.throughput.push({
          concurrency, total: CFG.getTotal,
          runs: Object.fromEntries(PACKAGES.map((p) => [p, runs[p]])),
          median: med,
          ratio: Object.fromEntries(LOAD_KEYS.map((k) => [k, ratio(med.ours[k], med.reference[k])])),
          // The hand-written getJob peers: their runs and medians, and ours / theirs.
          peers: compared
            ? Object.fromEntries(PEERS.map((peer) => {
                const m = summarize(runs[peer], LOAD_KEYS)
                return [peer, { runs: runs[peer], median: m, oursRatio: Object.fromEntries(LOAD_KEYS.map((k) => [k, ratio(med.ours[k], m[k])])) }]
              }))
            : null,
          failed: completedAll(measured, CFG.getTotal),
        })
      }
      if (withCeiling && compared) {
        const med = summarize(ceilingRuns, LOAD_KEYS)
        out.ceiling.push({
          concurrency, total: CFG.getTotal, runs: ceilingRuns, median: med,
          addonPercentOfCeiling: ours && med.callsPerSec ? (100 * ours.callsPerSec) / med.callsPerSec : null,
          addonCpuRatio: ratio(ours?.cpuPerCallUs, med.cpuPerCallUs),
          failed: ceilingBuildError ?? completedAll({ ceiling: ceilingRuns }, CFG.getTotal),
        })
      }
    }
    return out
  } finally {
    await hub.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Schedule path: scheduleDeviceMethod at concurrency 32 (fresh ids, start a day ahead).
async function schedule() {
  const hub = await startHub(['--devices', '10'])
  try {
    const runs = { ours: [], reference: [] }
    for (let round = 0; round < RUNS; round++) {
      for (const pkg of alternate(round)) {
        const params = {
          op: 'schedule', total: CFG.scheduleTotal, concurrency: CFG.scheduleConcurrency, warmup: warmupFor(CFG.scheduleConcurrency),
          idPrefix: `bench-put-${pkg}-${round}-`, queryCondition: "deviceId = 'device-0000'", startOffsetMs: 86_400_000,
          connectionString: hub.connectionString, timeoutMs: CFG.workerTimeoutMs,
        }
        runs[pkg].push(await measure(pkg, 'load.mjs', params, hub.caPath))
      }
      log(`scheduleDeviceMethod round ${round + 1}/${RUNS} done`)
    }
    const med = Object.fromEntries(PACKAGES.map((p) => [p, summarize(runs[p], LOAD_KEYS)]))
    return {
      concurrency: CFG.scheduleConcurrency, total: CFG.scheduleTotal, runs, median: med,
      ratio: Object.fromEntries(LOAD_KEYS.map((k) => [k, ratio(med.ours[k], med.reference[k])])),
      failed: completedAll(runs, CFG.scheduleTotal),
    }
  } finally {
    await hub.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 5. Memory under load: peak RSS with N getJob calls in flight (every response held 500 ms).
async function memory() {
  const hub = await startHub(['--faults', `latency:${CFG.memoryLatencyMs}-${CFG.memoryLatencyMs}ms`])
  try {
    const jobIds = await seedJobs(hub, 'bench-mem-', 16)
    const runs = { ours: [], reference: [] }
    for (let round = 0; round < RUNS; round++) {
      for (const pkg of alternate(round)) {
        const params = { op: 'get', total: CFG.inFlight, concurrency: CFG.inFlight, warmup: 0, jobIds, connectionString: hub.connectionString, timeoutMs: CFG.workerTimeoutMs }
        const r = await measure(pkg, 'load.mjs', params, hub.caPath)
        if (r && !r.error) r.rssGrowthKb = r.maxRssKb - r.rssBeforeKb
        runs[pkg].push(r)
      }
      log(`in-flight ${CFG.inFlight} round ${round + 1}/${RUNS} done`)
    }
    const keys = ['maxRssKb', 'rssGrowthKb', 'rssBeforeKb', 'wallMs', 'cpuPerCallUs']
    const med = Object.fromEntries(PACKAGES.map((p) => [p, summarize(runs[p], keys)]))
    return {
      inFlight: CFG.inFlight, latencyMs: CFG.memoryLatencyMs, runs, median: med,
      ratio: Object.fromEntries(keys.map((k) => [k, ratio(med.ours[k], med.reference[k])])),
      failed: completedAll(runs, CFG.inFlight),
    }
  } finally {
    await hub.stop()
  }
}

// ---------------------------------------------------------------------------------------------
async function step(name, fn) {
  const t0 = Date.now()
  log(`${name}…`)
  try {
    const r = await fn()
    log(`${name} finished in ${((Date.now() - t0) / 1000).toFixed(1)} s${r?.failed ? ` — FAILED: ${r.failed}` : ''}`)
    return r
  } catch (err) {
    log(`${name} FAILED: ${err.message}`)
    return { failed: err.message.slice(0, 800) }
  }
}

// The ceiling binary compiles while nothing is measured in full runs (awaited first), and alongside
// the other workloads in quick runs, where timings do not matter (throughput then runs last).
const ceilingBuild = only.has('ceiling') ? buildCeiling() : null
ceilingBuild?.catch(() => {})
if (ceilingBuild && !quick) {
  log('building crates/core/examples/ceiling.rs (cargo build --release --workspace --example ceiling)…')
  await ceilingBuild.catch(() => {})
}

const W = results.workloads
const throughputStep = async () => {
  if (!only.has('throughput') && !only.has('ceiling')) return
  const r = await step('throughput + ceiling', () => throughput({ withThroughput: only.has('throughput'), withCeiling: only.has('ceiling') }))
  if (only.has('throughput')) W.throughput = r.throughput ?? { failed: r.failed }
  if (only.has('ceiling')) W.ceiling = r.ceiling ?? { failed: r.failed }
}
if (only.has('cold')) W.coldStart = await step('cold start', coldStart)
if (only.has('footprint')) W.footprint = await step('footprint', footprint)
if (!quick) await throughputStep()
if (only.has('schedule')) W.schedule = await step('schedule path', schedule)
if (only.has('memory')) W.memory = await step('memory under load', memory)
if (only.has('faults')) W.faults = await step('faults', () => runFaults({ quick }))
if (quick) await throughputStep()

results.durationSec = Math.round((Date.now() - started) / 100) / 10
if (JSON.stringify(addonFingerprint(ROOT)) !== JSON.stringify(results.addon))
  results.warnings.push('The addon in the working tree changed during the run; every figure is of the copy taken at the start (see "addon measured" below).')
if (busyAtStart(results.machine))
  results.warnings.push(`The machine was busy when the run started (load average ${results.machine.loadavgAtStart[0]} on ${results.machine.cores} cores): expect noisy figures.`)
for (const [name, w] of Object.entries(W)) {
  for (const item of Array.isArray(w) ? w : [w]) if (item?.failed) results.errors.push(`${name}${item.concurrency ? ` c=${item.concurrency}` : ''}: ${item.failed}`)
}

const outDir = opts.out ?? (quick ? join(BENCH, 'tmp') : BENCH)
mkdirSync(outDir, { recursive: true })
writeFileSync(join(outDir, 'results.json'), JSON.stringify(results, null, 2) + '\n')
const analysis = join(BENCH, 'ANALYSIS.md')
const resultsMd = join(outDir, 'RESULTS.md')
const runtimes = existsSync(resultsMd) ? new RegExp(`\n## Runtimes\n[\\s\\S]*${RUNTIMES_END}\n`).exec(readFileSync(resultsMd, 'utf8'))?.[0] ?? '' : ''
writeFileSync(resultsMd, renderMarkdown(results) + (existsSync(analysis) ? '\n' + readFileSync(analysis, 'utf8') : '') + runtimes)
log(`wrote ${resultsMd} and results.json in ${results.durationSec} s`)
if (results.errors.length) {
  log(`${results.errors.length} workload(s) did not complete:\n  ${results.errors.join('\n  ')}`)
  process.exitCode = 1
}
