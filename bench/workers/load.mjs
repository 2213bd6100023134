// One load measurement in a fresh process, so CPU and RSS are this client's alone. Parameters come
// in BENCH_PARAMS (JSON, set by bench/lib/common.mjs runWorker); one JSON line goes to stdout.
//
//   op 'get':      `total` getJob calls over `jobIds` (round robin) with `concurrency` lanes (every
//                  package, and the hand-written peers 'undici' and 'fetch')
//   op 'schedule': `total` scheduleDeviceMethod calls, ids `${idPrefix}${i}`, with `concurrency` lanes
//
// `warmup` calls (same op, not recorded) run first so connections and lazy initialisation are paid
// before the clock starts; then CPU (process.cpuUsage, user + sys, all threads), wall time and
// per-call latency are measured over exactly `total` calls. Bounded by count and by `timeoutMs`.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const p = JSON.parse(process.env.BENCH_PARAMS)
const require = createRequire(import.meta.url)
const PEERS = ['undici', 'fetch'] // hand-written getJob without an SDK (bench/workers/peer-client.mjs)
const client = PEERS.includes(p.pkg)
  ? (await import('./peer-client.mjs')).peerClient(p.pkg, p)
  : p.pkg === 'ours'
    ? require(p.module).JobClient.fromConnectionString(p.connectionString, { ca: readFileSync(p.caPath, 'utf8') })
    : require(p.module).JobClient.fromConnectionString(p.connectionString) // trusts the CA through NODE_EXTRA_CA_CERTS

const deadline = Date.now() + (p.timeoutMs ?? 120_000)
const methodParams = { methodName: p.methodName ?? 'bench', payload: { run: p.idPrefix ?? null }, responseTimeoutInSeconds: 30 }

function call(i, phase) {
  if (p.op === 'get') return client.getJob(p.jobIds[i % p.jobIds.length])
  if (p.op === 'schedule') {
    // Both packages get the full 5-argument promise form, so they put identical bodies on the wire.
    const startTime = new Date(Date.now() + (p.startOffsetMs ?? 0))
    return client.scheduleDeviceMethod(`${p.idPrefix}${phase}${i}`, p.queryCondition, methodParams, startTime, 3600)
  }
  throw new Error(`unknown op ${p.op}`)
}

async function phase(name, total, concurrency, latencies) {
  let next = 0
  let failed = 0
  let firstError = null
  let stoppedByDeadline = false
  async function lane() {
    for (;;) {
      const i = next++
      if (i >= total) return
      if (Date.now() > deadline) {
        stoppedByDeadline = true
        return
      }
      const t0 = performance.now()
      try {
        await call(i, name)
        if (latencies) latencies[i] = performance.now() - t0
      } catch (err) {
        failed++
        if (latencies) latencies[i] = NaN
        firstError ??= `${err?.name}: ${err?.message}`.slice(0, 300)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, lane))
  return { attempted: Math.min(next, total), failed, firstError, stoppedByDeadline }
}

const warmup = p.warmup ?? 0
const warm = warmup > 0 ? await phase('w', warmup, p.concurrency) : null

const latencies = new Float64Array(p.total)
const rssBeforeKb = Math.round(process.memoryUsage.rss() / 1024)
const cpu0 = process.cpuUsage()
const t0 = performance.now()
const run = await phase('m', p.total, p.concurrency, latencies)
const wallMs = performance.now() - t0
const cpu = process.cpuUsage(cpu0)

const ok = Array.from(latencies.subarray(0, run.attempted)).filter((v) => v > 0 || v === 0).sort((a, b) => a - b)
const pct = (q) => (ok.length ? ok[Math.min(ok.length - 1, Math.max(0, Math.ceil((q / 100) * ok.length) - 1))] : null)
const completed = run.attempted - run.failed
console.log(
  JSON.stringify({
    pkg: p.pkg,
    op: p.op,
    total: p.total,
    concurrency: p.concurrency,
    completed,
    failed: run.failed + (warm?.failed ?? 0),
    firstError: run.firstError ?? warm?.firstError ?? null,
    stoppedByDeadline: run.stoppedByDeadline || Boolean(warm?.stoppedByDeadline),
    wallMs,
    callsPerSec: completed / (wallMs / 1000),
    cpuUserMs: cpu.user / 1000,
    cpuSysMs: cpu.system / 1000,
    cpuPerCallUs: run.attempted ? (cpu.user + cpu.system) / run.attempted : null,
    p50Ms: pct(50),
    p99Ms: pct(99),
    maxMs: ok.length ? ok[ok.length - 1] : null,
    rssBeforeKb,
    maxRssKb: process.resourceUsage().maxRSS,
  }),
)
process.exit(0)
