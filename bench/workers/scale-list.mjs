// One listing of every device-job row of a job, in a fresh process, so CPU and memory are this
// client's alone. Parameters come in BENCH_PARAMS (JSON, set by bench/lib/common.mjs runWorker);
// one JSON line goes to stdout.
//
//   ours:      JobClient.listDeviceJobs(jobId, { maxPageSize }) (async iteration over every row)
//   reference: Registry.createQuery('SELECT * FROM devices.jobs WHERE devices.jobs.jobId = …',
//              pageSize) and query.next(token) while hasMoreResults — the same request, page by page
//
// Rows are checked as they stream by, without keeping them (that would measure the checker):
// the count must be `expected`, and device ids strictly increasing (the hub's order), which also
// proves that no row came twice. CPU is process.cpuUsage() (user + sys, all threads) over the
// listing; memory is the peak RSS (VmHWM) above the RSS just before the first page.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const p = JSON.parse(process.env.BENCH_PARAMS)
const require = createRequire(import.meta.url)
const vm = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync('/proc/self/status', 'utf8'))[1])

let rows = 0
let pages = 0
let previous = ''
let outOfOrder = 0
function check(row) {
  rows++
  if (!(row.deviceId > previous)) outOfOrder++
  previous = row.deviceId
}

let listing
if (p.pkg === 'ours') {
  const { JobClient } = require(p.module)
  const client = JobClient.fromConnectionString(p.connectionString, { ca: readFileSync(p.caPath, 'utf8') })
  listing = async () => {
    for await (const page of client.listDeviceJobs(p.jobId, { maxPageSize: p.pageSize }).byPage()) {
      pages++
      for (const row of page) check(row)
    }
  }
} else {
  // The Registry lives in azure-iothub's main module; p.module is its resolved entry point.
  const { Registry } = require(p.module)
  const registry = Registry.fromConnectionString(p.connectionString)
  const sql = `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${p.jobId}'`
  listing = async () => {
    const query = registry.createQuery(sql, p.pageSize)
    while (query.hasMoreResults) {
      // The token must be passed: the reference's next() without one starts over from page 1.
      const { result } = await query.next(query.continuationToken)
      pages++
      for (const row of result) check(row)
    }
  }
}

const rssBeforeKb = vm('VmRSS')
const cpu0 = process.cpuUsage()
const t0 = performance.now()
let error = null
try {
  await listing()
} catch (err) {
  error = `${err?.name}: ${err?.message}`.slice(0, 300)
}
const wallMs = performance.now() - t0
const cpu = process.cpuUsage(cpu0)
const cpuMs = (cpu.user + cpu.system) / 1000
const peakAboveKb = vm('VmHWM') - rssBeforeKb
process.stdout.write(
  JSON.stringify({
    pkg: p.pkg,
    error,
    rows,
    pages,
    outOfOrder,
    complete: error === null && rows === p.expected && outOfOrder === 0,
    wallMs,
    rowsPerS: rows / (wallMs / 1000),
    cpuMs,
    cpuUsPerRow: (cpuMs * 1000) / Math.max(rows, 1),
    peakAboveKb,
    bytesPerRow: (peakAboveKb * 1024) / Math.max(rows, 1),
  }) + '\n',
)
