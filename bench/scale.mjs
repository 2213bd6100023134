// Fleet-scale benchmark (not part of npm test): jobs over every device of a big emulated hub, and
// the listing of all their device-job rows, iothub-jobs beside azure-iothub in the same run.
//
//   npm run bench -- --scale                       # 100,000 and 1,000,000 devices, 3 listing runs
//   node bench/scale.mjs --devices=100000 --runs=5
//   node bench/scale.mjs --quick                   # 20,000 devices, 1 run (smoke)
//   node bench/scale.mjs --data-dir                # the same with the hub kept in a data dir
//
// Per fleet size, one emulator (`--devices N`, seeded simulated devices) is started and measured:
//   - RSS after seeding (per device), then a twin job and a method job on '*' (time from the PUT to
//     `waitForJob` resolving), RSS after them (the growth per device-job row), and peak RSS;
//   - `runs` listings of the twin job's N rows with page size 1000, alternating ours
//     (`listDeviceJobs`) and the reference (`Registry.createQuery` on the same devices.jobs query),
//     each in a fresh process (bench/workers/scale-list.mjs): wall time, rows/s, client CPU and
//     peak memory per row. Figures are medians over the runs.
// With --data-dir, each emulator keeps its state in a fresh data dir (`--data-dir`, SQLite), and
// the start (seeding written to disk), the disk use after the jobs, and a restart on that dir
// (stop, start again: time to the ready line, RSS) are measured too; compare with a run without.
// Writes bench/scale-results.json (scale-results-data-dir.json with --data-dir; bench/tmp/ for
// --quick) and prints a Markdown table.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { BENCH, alternate, machineInfo, median, runWorker, startHub, log, snapshotOurs, packageModule } from './lib/common.mjs'

const { values: opts } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== '--scale'),
  options: {
    quick: { type: 'boolean', default: false },
    devices: { type: 'string' },
    runs: { type: 'string' },
    out: { type: 'string' },
    'data-dir': { type: 'boolean', default: false },
  },
})
const DATA_DIR = opts['data-dir']
const SIZES = (opts.devices ?? (opts.quick ? '20000' : '100000,1000000')).split(',').map(Number)
const RUNS = Number(opts.runs ?? (opts.quick ? 1 : 3))
const PAGE_SIZE = 1000
const KB = 1024

function vmKb(pid, field) {
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
}

async function timedJob(jobs, schedule, jobId, devices) {
  const t0 = performance.now()
  await schedule()
  const job = await jobs.waitForJob(jobId, { pollIntervalMs: 100, timeoutMs: 30 * 60_000 })
  const seconds = (performance.now() - t0) / 1000
  const stats = job.deviceJobStatistics ?? {}
  const ok = job.status === 'completed' && stats.deviceCount === devices && stats.succeededCount === devices
  if (!ok) throw new Error(`${jobId}: ${job.status}, ${JSON.stringify(stats)}`)
  return seconds
}

/** Bytes of the files in `dir` (a data dir has no subdirectories). */
const diskBytes = (dir) => readdirSync(dir).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0)

async function timedStart(args) {
  const t0 = performance.now()
  const hub = await startHub(args)
  return { hub, seconds: (performance.now() - t0) / 1000 }
}

/** Stops the hub, starts it again on its data dir and measures that restart. */
async function restart(hub, args, dir, devices) {
  await hub.stop()
  const diskAfterStopBytes = diskBytes(dir)
  log(`${devices} devices: restarting on the data dir`)
  const again = await timedStart(args)
  const rssKb = vmKb(again.hub.pid, 'VmRSS')
  await again.hub.stop()
  return { restartSeconds: again.seconds, rssAfterRestartMiB: rssKb / KB, diskAfterStopMiB: diskAfterStopBytes / KB / KB }
}

async function fleet(devices) {
  log(`${devices} devices: starting the emulator${DATA_DIR ? ' on a new data dir' : ''}`)
  const dir = DATA_DIR ? mkdtempSync(join(tmpdir(), 'iothub-scale-data-')) : null
  const args = ['--devices', String(devices), ...(dir ? ['--data-dir', dir] : [])]
  const started = await timedStart(args)
  const hub = started.hub
  const pid = hub.pid
  const { JobClient } = createRequire(import.meta.url)(packageModule('ours'))
  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') })
  try {
    const seededKb = vmKb(pid, 'VmRSS')
    const patch = { etag: '*', tags: { rollout: 'scale' }, properties: { desired: { firmware: '2.0' } } }
    log(`${devices} devices: twin job`)
    const twinJobS = await timedJob(jobs, () => jobs.scheduleTwinUpdate('scale-twin', '*', patch), 'scale-twin', devices)
    log(`${devices} devices: method job`)
    const method = { methodName: 'ping', payload: { n: 1 }, responseTimeoutInSeconds: 30 }
    const methodJobS = await timedJob(jobs, () => jobs.scheduleDeviceMethod('scale-method', '*', method), 'scale-method', devices)
    const afterJobsKb = vmKb(pid, 'VmRSS')
    const listings = { ours: [], reference: [] }
    for (let round = 0; round < RUNS; round++) {
      for (const pkg of alternate(round)) {
        log(`${devices} devices: listing ${devices} rows, ${pkg}, run ${round + 1}/${RUNS}`)
        try {
          const r = await runWorker(
            pkg,
            'scale-list.mjs',
            { connectionString: hub.connectionString, jobId: 'scale-twin', pageSize: PAGE_SIZE, expected: devices },
            { caPath: hub.caPath, timeoutMs: 60 * 60_000 },
          )
          listings[pkg].push(r)
        } catch (err) {
          listings[pkg].push({ pkg, error: err.message.slice(0, 400), complete: false })
        }
      }
    }
    const peakKb = vmKb(pid, 'VmHWM')
    const store = dir && { startSeconds: started.seconds, diskMiB: diskBytes(dir) / KB / KB, ...(await restart(hub, args, dir, devices)) }
    const rows = 2 * devices
    const med = (pkg, key) => median(listings[pkg].map((r) => (r.complete ? r[key] : null)))
    const summary = (pkg) => ({
      completeRuns: listings[pkg].filter((r) => r.complete).length,
      listSeconds: med(pkg, 'wallMs') / 1000,
      rowsPerS: med(pkg, 'rowsPerS'),
      cpuUsPerRow: med(pkg, 'cpuUsPerRow'),
      bytesPerRow: med(pkg, 'bytesPerRow'),
      firstError: listings[pkg].find((r) => !r.complete)?.error ?? null,
    })
    return {
      devices,
      deviceJobRows: rows,
      twinJobSeconds: twinJobS,
      methodJobSeconds: methodJobS,
      emulator: {
        seededMiB: seededKb / KB,
        bytesPerDevice: (seededKb * KB) / devices,
        afterJobsMiB: afterJobsKb / KB,
        bytesPerRow: ((afterJobsKb - seededKb) * KB) / rows,
        peakMiB: peakKb / KB,
        withinBudget: afterJobsKb * KB <= 2 * KB * devices + 1 * KB * rows,
      },
      listing: { ours: summary('ours'), reference: summary('reference') },
      store,
      runs: listings,
    }
  } finally {
    await hub.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  }
}

const n = (v, d = 1) => (typeof v === 'number' ? v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a')

function markdown(result) {
  const lines = [
    `Measured ${result.machine.date} on ${result.machine.cores} × ${result.machine.cpu}, load average at start ${result.machine.loadavgAtStart?.join(' ')}, commit ${result.machine.commit?.slice(0, 10)}; listing figures are medians of ${RUNS} run(s) per package, page size ${PAGE_SIZE}.`,
    '',
    '| devices | twin job | method job | emulator RSS seeded (per device) | + per device-job row | peak RSS | list all rows, ours | rows/s ours | rows/s azure-iothub | client CPU/row ours / azure-iothub | client memory/row ours / azure-iothub |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const f of result.fleets) {
    const o = f.listing.ours
    const r = f.listing.reference
    lines.push(
      `| ${f.devices.toLocaleString('en-US')} | ${n(f.twinJobSeconds, 2)} s | ${n(f.methodJobSeconds, 2)} s | ${n(f.emulator.seededMiB, 0)} MiB (${n(f.emulator.bytesPerDevice, 0)} B) | ${n(f.emulator.bytesPerRow, 0)} B | ${n(f.emulator.peakMiB, 0)} MiB | ${n(o.listSeconds, 2)} s | ${n(o.rowsPerS, 0)} | ${n(r.rowsPerS, 0)} | ${n(o.cpuUsPerRow, 1)} µs / ${n(r.cpuUsPerRow, 1)} µs | ${n(o.bytesPerRow, 0)} B / ${n(r.bytesPerRow, 0)} B |`,
    )
  }
  if (DATA_DIR) {
    lines.push('', '| devices | first start (seed written) | data dir after the jobs | after a clean stop | restart to ready | RSS after restart |', '|---:|---:|---:|---:|---:|---:|')
    for (const { devices, store: s } of result.fleets) {
      lines.push(`| ${devices.toLocaleString('en-US')} | ${n(s.startSeconds, 2)} s | ${n(s.diskMiB, 0)} MiB | ${n(s.diskAfterStopMiB, 0)} MiB | ${n(s.restartSeconds, 2)} s | ${n(s.rssAfterRestartMiB, 0)} MiB |`)
    }
  }
  return lines.join('\n')
}

export async function runScale() {
  snapshotOurs()
  const result = { suite: 'fleet scale', command: `node bench/scale.mjs ${process.argv.slice(2).join(' ')}`.trim(), machine: machineInfo(), runs: RUNS, dataDir: DATA_DIR, pageSize: PAGE_SIZE, fleets: [] }
  let failed = false
  for (const devices of SIZES) {
    try {
      result.fleets.push(await fleet(devices))
    } catch (err) {
      failed = true
      log(`${devices} devices: ${err.stack ?? err}`)
      result.fleets.push({ devices, error: String(err.message ?? err) })
    }
  }
  result.loadavgAtEnd = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number)
  const ok = result.fleets.filter((f) => !f.error)
  const outDir = opts.quick ? join(BENCH, 'tmp') : BENCH
  mkdirSync(outDir, { recursive: true })
  const out = opts.out ?? join(outDir, DATA_DIR ? 'scale-results-data-dir.json' : 'scale-results.json')
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n')
  console.log(markdown({ ...result, fleets: ok }))
  log(`wrote ${out}`)
  for (const f of ok) {
    for (const pkg of ['ours', 'reference']) {
      if (f.listing[pkg].completeRuns !== RUNS) {
        failed = true
        log(`${f.devices} devices, ${pkg}: ${f.listing[pkg].completeRuns}/${RUNS} complete listings; ${f.listing[pkg].firstError}`)
      }
    }
  }
  return failed ? 1 : 0
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await runScale()
