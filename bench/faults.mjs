// The fault workload (the same as __test__/faults.test.mjs) through azure-iothub and through iothub-jobs, in one run, against
//   iothub-emulator --faults 429:0.1,503:0.05,reset:0.05,drop:0.05,latency:1-20ms
// 2,000 operations per package (schedule method and twin jobs, get, cancel; bench/workers/faults.mjs)
// at concurrency 32. For each package: calls failed, jobs lost (a schedule call whose job is not
// on the hub), jobs duplicated (created more than once, per the emulator's control API), failures
// reported for jobs that were in fact created, calls left unsettled, wall time.
//
//   node bench/faults.mjs [--quick]       (also run by `npm run bench`, which puts it in RESULTS.md)
import https from 'node:https'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { PACKAGES, runWorker, startHub, log } from './lib/common.mjs'

export const FAULTS = '429:0.1,503:0.05,reset:0.05,drop:0.05,latency:1-20ms'

/** GET on the emulator's control API (no auth, loopback only, never fault-injected). */
function control(hub, path) {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: hub.host, port: hub.port, path, method: 'GET', ca: readFileSync(hub.caPath), agent: false, timeout: 30_000 },
      (res) => {
        let body = ''
        res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`GET ${path}: ${res.statusCode} ${body.slice(0, 200)}`))
          try {
            resolve(JSON.parse(body))
          } catch (err) {
            reject(err)
          }
        })
      },
    )
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timed out`)))
    req.on('error', reject)
    req.end()
  })
}

/** jobId -> number of times the hub created it (control API: `{jobs: [...], counters: {id: {creates, attempts}}}`). */
async function hubCreates(hub) {
  const listing = await control(hub, '/_emulator/jobs')
  const creates = new Map()
  for (const [id, c] of Object.entries(listing.counters ?? {})) if (c.creates > 0) creates.set(id, c.creates)
  for (const job of listing.jobs ?? []) if (!creates.has(job.jobId)) creates.set(job.jobId, Math.max(1, job.creates ?? 1))
  return creates
}

function assess(run, creates, prefix) {
  const requested = Object.entries(run.schedule)
  const lost = requested.filter(([id]) => !creates.has(id)).length
  const failedButCreated = requested.filter(([id, ok]) => ok === false && creates.has(id)).length
  let duplicated = 0
  let unrequested = 0
  for (const [id, n] of creates) {
    if (!id.startsWith(prefix)) continue
    if (n > 1) duplicated++
    if (!(id in run.schedule)) unrequested++
  }
  return { lost, duplicated: duplicated + unrequested, failedButCreated }
}

export async function runFaults({ quick = false, operations = quick ? 200 : 2_000, concurrency = 32 } = {}) {
  const slots = Math.ceil(operations / 4)
  const timeoutMs = quick ? 40_000 : 240_000
  const hub = await startHub(['--devices', '10', '--faults', FAULTS])
  try {
    const out = { faults: FAULTS, operations: slots * 4, concurrency, packages: {} }
    for (const pkg of PACKAGES) {
      const prefix = `faults-${pkg}-`
      let run
      try {
        run = await runWorker(pkg, 'faults.mjs', { connectionString: hub.connectionString, prefix, slots, concurrency, timeoutMs }, { caPath: hub.caPath, timeoutMs: timeoutMs + 60_000 })
      } catch (err) {
        out.packages[pkg] = { error: err.message.slice(0, 600) }
        continue
      }
      const creates = await hubCreates(hub)
      const { schedule, ...rest } = run
      out.packages[pkg] = { ...rest, scheduleCalls: Object.keys(schedule).length, ...assess(run, creates, prefix) }
      log(`faults ${pkg}: ${run.failed} failed, ${out.packages[pkg].lost} lost, ${out.packages[pkg].duplicated} duplicated, ${Math.round(run.wallMs)} ms`)
    }
    // Completion check (the CI gate): both packages issued and settled every operation. Failed
    // calls are the measurement, not a harness failure.
    const bad = PACKAGES.map((p) => [p, out.packages[p]]).find(
      ([, r]) => !r || r.error || r.unsettled > 0 || r.stoppedByDeadline || r.operations !== r.expectedOperations,
    )
    out.failed = bad ? `${bad[0]}: ${bad[1]?.error ?? `${bad[1].operations}/${bad[1].expectedOperations} operations issued, ${bad[1].unsettled} unsettled`}` : null
    return out
  } finally {
    await hub.stop()
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { renderFaults } = await import('./lib/report.mjs')
  const r = await runFaults({ quick: process.argv.includes('--quick') })
  console.log(renderFaults(r))
  if (r.failed) {
    console.error(r.failed)
    process.exitCode = 1
  }
}
