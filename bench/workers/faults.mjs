// The issue-4 workload for one package, in a fresh process (parameters in BENCH_PARAMS; one JSON
// line to stdout). `slots` independent chains run with `concurrency` lanes, each chain being
//   scheduleDeviceMethod(<prefix>k-m, start in 1 h) → scheduleTwinUpdate(<prefix>k-t, start now)
//   → getJob(<prefix>k-m) → cancelJob(<prefix>k-m)
// so 4 × slots operations, every one issued even when an earlier step of its chain failed (a
// caller that ignores errors: exactly what surfaces lost or phantom jobs). The orchestrator
// compares the outcome of each schedule call with the hub's record (bench/faults.mjs).
// Bounded: lanes stop taking chains at `timeoutMs`; calls still pending then count as unsettled.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const p = JSON.parse(process.env.BENCH_PARAMS)
const { JobClient } = createRequire(import.meta.url)(p.module)
const client =
  p.pkg === 'ours'
    ? JobClient.fromConnectionString(p.connectionString, { ca: readFileSync(p.caPath, 'utf8') })
    : JobClient.fromConnectionString(p.connectionString)

let unhandled = 0
process.on('unhandledRejection', () => unhandled++)

const deadline = Date.now() + p.timeoutMs
const counts = {}
for (const op of ['scheduleDeviceMethod', 'scheduleTwinUpdate', 'getJob', 'cancelJob']) counts[op] = { ok: 0, failed: 0, unsettled: 0 }
const errorKinds = {}
const schedule = {} // jobId -> true (resolved) | false (rejected) | null (unsettled)
let pending = 0

/** Settles `promise` into {ok} / {error}, or {unsettled} at the deadline (the call is left behind). */
function settle(op, promise) {
  pending++
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ unsettled: true }), Math.max(0, deadline + 30_000 - Date.now()))
    promise.then(
      () => { clearTimeout(timer); pending--; resolve({ ok: true }) },
      (err) => {
        clearTimeout(timer)
        pending--
        const kind = `${op}: ${err?.name ?? 'Error'}${err?.code ? ` ${err.code}` : ''}${err?.response?.statusCode ? ` ${err.response.statusCode}` : ''}`
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1
        resolve({ ok: false })
      },
    )
  }).then((r) => {
    counts[op][r.unsettled ? 'unsettled' : r.ok ? 'ok' : 'failed']++
    return r
  })
}

async function chain(k) {
  const methodId = `${p.prefix}${k}-m`
  const twinId = `${p.prefix}${k}-t`
  const inAnHour = new Date(Date.now() + 3_600_000)
  const device = `device-${String(k % 10).padStart(4, '0')}`
  const m = await settle(
    'scheduleDeviceMethod',
    client.scheduleDeviceMethod(methodId, `deviceId = '${device}'`, { methodName: 'reboot', payload: { k }, responseTimeoutInSeconds: 30 }, inAnHour, 3600),
  )
  schedule[methodId] = m.unsettled ? null : m.ok
  const t = await settle(
    'scheduleTwinUpdate',
    client.scheduleTwinUpdate(twinId, `deviceId = '${device}'`, { etag: '*', tags: { benchSlot: k } }, new Date(), 3600),
  )
  schedule[twinId] = t.unsettled ? null : t.ok
  await settle('getJob', client.getJob(methodId))
  await settle('cancelJob', client.cancelJob(methodId))
}

let next = 0
let stoppedByDeadline = false
const t0 = performance.now()
await Promise.all(
  Array.from({ length: Math.min(p.concurrency, p.slots) }, async () => {
    for (;;) {
      const k = next++
      if (k >= p.slots) return
      if (Date.now() > deadline) {
        stoppedByDeadline = true
        return
      }
      await chain(k)
    }
  }),
)
const wallMs = performance.now() - t0
const total = Object.values(counts).reduce((s, c) => s + c.ok + c.failed + c.unsettled, 0)
console.log(
  JSON.stringify({
    pkg: p.pkg,
    operations: total,
    expectedOperations: p.slots * 4,
    failed: Object.values(counts).reduce((s, c) => s + c.failed, 0),
    unsettled: Object.values(counts).reduce((s, c) => s + c.unsettled, 0),
    stoppedByDeadline,
    unhandledRejections: unhandled,
    wallMs,
    counts,
    errorKinds,
    schedule,
  }),
)
process.exit(0)
