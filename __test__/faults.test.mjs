// 2,000 job operations (schedule method and twin jobs, get, cancel) at concurrency 32
// through iothub-jobs against an emulator that throttles, fails, resets and drops
// (429:0.1, 503:0.05, reset:0.05, drop:0.05, latency 1-20 ms). Retries must absorb every fault:
// every call resolves, every scheduled job exists on the hub exactly once, no unhandled
// rejection. The emulator's request log (drained all along) and job counters are the evidence.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'

import { startEmulator } from './helpers/emulator.mjs'
import { pkg, prng, pool, drainRequests, byRequestId, withUnhandledRejections } from './helpers/reliability.mjs'
import { SecretSet, errorTexts } from './helpers/secrets.mjs'

const { JobClient } = pkg

const FAULTS = '429:0.1,503:0.05,reset:0.05,drop:0.05,latency:1-20ms'
const FAULT_KINDS = ['429', '503', 'reset', 'drop']
const OPERATIONS = 2000
const CONCURRENCY = 32
const SEED = Number(process.env.FAULTS_SEED ?? 0x1b0b)
/** Fast policy for the big run: the faults stay, the waits shrink (throttling too: maxDelayMs caps it). */
const FAST_RETRY = { maxRetries: 10, initialDelayMs: 5, maxDelayMs: 100 }
const DEFAULT_MAX_RETRIES = 10 // documented default (crates/core/README.md, options.rs)
const FUTURE = () => new Date(Date.now() + 3600_000)

/**
 * The workload: a deterministic mix of operations. Gets and cancels target jobs whose schedule
 * already resolved (so a 404 would mean a lost job); a third of the jobs start in an hour, so a
 * cancel of those must really cancel them. Returns per-operation records.
 */
async function runWorkload(client, { operations, concurrency, seed, prefix }) {
  const rand = prng(seed)
  const scheduled = [] // { id, type, future } whose schedule resolved
  const expected = new Map() // id → { type, future } for every schedule attempted
  const records = []
  let serial = 0
  const pickExisting = () => scheduled[Math.floor(rand() * scheduled.length)]

  await pool(operations, concurrency, async (i) => {
    const r = rand()
    const op = scheduled.length === 0 || r < 0.4 ? (r < 0.2 ? 'method' : 'twin') : r < 0.8 ? 'get' : 'cancel'
    const rec = { i, op }
    records.push(rec)
    const t0 = performance.now()
    try {
      if (op === 'method' || op === 'twin') {
        const id = `${prefix}-${op}-${serial++}`
        const future = rand() < 1 / 3
        const condition = rand() < 0.5 ? '*' : "tags.group = 'even'"
        const type = op === 'method' ? 'scheduleDeviceMethod' : 'scheduleUpdateTwin'
        rec.id = id
        expected.set(id, { type, future })
        const start = future ? FUTURE() : new Date()
        const res =
          op === 'method'
            ? await client.scheduleDeviceMethod(id, condition, { methodName: 'reboot', payload: { i }, responseTimeoutInSeconds: 30 }, start)
            : await client.scheduleTwinUpdate(id, condition, { etag: '*', tags: { batch: i }, properties: { desired: { v: i } } }, start)
        rec.value = res
        assert.equal(res.jobStatus.jobId, id)
        assert.equal(res.jobStatus.type, type)
        assert.equal(res.response.statusCode, 200)
        scheduled.push({ id, type, future })
      } else {
        const job = pickExisting()
        rec.id = job.id
        // A quarter of them through the callback form (same machinery, other settle path).
        const viaCallback = rand() < 0.25
        const res = viaCallback
          ? await new Promise((resolve, reject) =>
              client[op === 'get' ? 'getJob' : 'cancelJob'](job.id, (err, jobStatus, response) => (err ? reject(err) : resolve({ jobStatus, response }))),
            )
          : op === 'get'
            ? await client.getJob(job.id)
            : await client.cancelJob(job.id)
        rec.value = res
        assert.equal(res.jobStatus.jobId, job.id)
        assert.equal(res.jobStatus.type, job.type)
        if (op === 'cancel') {
          if (job.future) assert.equal(res.jobStatus.status, 'cancelled', `cancel of not-yet-started ${job.id}`)
          else assert.ok(['cancelled', 'completed', 'failed'].includes(res.jobStatus.status), `cancel of ${job.id}: ${res.jobStatus.status}`)
        }
      }
      rec.ok = true
    } catch (err) {
      rec.ok = false
      rec.error = err
    }
    rec.ms = performance.now() - t0
  })
  return { records, expected, scheduled }
}

/** Per-id PUT counts from the request log: those that reached the handler (not faulted, or dropped after doing the work). */
function handlerPuts(requests) {
  const counts = new Map()
  for (const r of requests) {
    if (r.method !== 'PUT') continue
    if (r.fault !== null && r.fault !== 'drop') continue
    const id = decodeURIComponent(r.path.replace('/jobs/v2/', ''))
    counts.set(id, (counts.get(id) ?? 0) + 1)
  }
  return counts
}

function summarize(records) {
  const by = {}
  for (const r of records) {
    by[r.op] ??= { ok: 0, failed: 0 }
    by[r.op][r.ok ? 'ok' : 'failed']++
  }
  return by
}

function percentile(values, p) {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}

describe('faults: 2,000 operations at concurrency 32 under injected faults', { timeout: 120_000 }, () => {
  let hub
  let ca
  before(async () => {
    hub = await startEmulator({ devices: 4, faults: FAULTS })
    ca = readFileSync(hub.caPath, 'utf8')
  })
  after(() => hub?.stop())

  test('every call resolves, every job exists exactly once, one Request-Id per call', { timeout: 90_000 }, async (t) => {
    assert.equal((await hub.control('GET', 'faults')).spec, FAULTS)
    const client = JobClient.fromConnectionString(hub.connectionString, { ca, retry: FAST_RETRY })
    const log = drainRequests(hub)
    const t0 = performance.now()
    const { result, unhandled } = await withUnhandledRejections(() =>
      runWorkload(client, { operations: OPERATIONS, concurrency: CONCURRENCY, seed: SEED, prefix: 'f' }),
    )
    const wallMs = performance.now() - t0
    const { requests, dropped } = await log.stop()
    const { records, expected, scheduled } = result

    // -- figures (reported whatever the outcome)
    const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, requests.filter((r) => r.fault === k).length]))
    const groups = byRequestId(requests.filter((r) => r.path.startsWith('/jobs/')))
    const confirmIds = [...expected.keys()].filter((id) => {
      const puts = requests.filter((r) => r.method === 'PUT' && r.path === `/jobs/v2/${id}`)
      return puts.some((r) => r.status === 409 && r.fault === null)
    })
    const latencies = records.map((r) => r.ms)
    t.diagnostic(
      `seed ${SEED}: ${records.length} calls in ${Math.round(wallMs)} ms; outcomes ${JSON.stringify(summarize(records))}; ` +
        `${requests.length} requests on the hub, injected ${JSON.stringify(faults)}; ` +
        `${scheduled.length} jobs scheduled, ${confirmIds.length} via the 409-confirm path; ` +
        `call latency p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms`,
    )

    // -- every call settled, with success
    assert.equal(records.length, OPERATIONS)
    const failed = records.filter((r) => !r.ok)
    assert.deepEqual(
      failed.slice(0, 10).map((r) => `#${r.i} ${r.op} ${r.id}: ${r.error?.name}: ${r.error?.message}`),
      [],
      `${failed.length} of ${OPERATIONS} calls failed`,
    )
    assert.deepEqual(unhandled.map(String), [], 'unhandled rejections')

    // -- the faults really were injected, and retried
    assert.equal(dropped, 0, 'request log overflowed between drains; the evidence is incomplete')
    for (const k of FAULT_KINDS) assert.ok(faults[k] > 0, `no '${k}' fault injected in ${requests.length} requests`)
    assert.ok(requests.length > OPERATIONS, 'no request was retried')

    // -- every scheduled id exists exactly once, nothing lost, nothing extra
    const state = await hub.control('GET', 'jobs')
    const ids = state.jobs.map((j) => j.jobId)
    assert.equal(new Set(ids).size, ids.length, 'the hub lists a job id twice')
    assert.deepEqual([...ids].sort(), [...expected.keys()].sort(), 'jobs on the hub ≠ jobs scheduled')
    const puts = handlerPuts(requests)
    for (const id of expected.keys()) {
      const c = state.counters[id]
      assert.ok(c, `no counters for ${id}`)
      assert.equal(c.creates, 1, `${id} created ${c.creates} times`)
      assert.equal(c.attempts, puts.get(id), `${id}: emulator counted ${c.attempts} PUTs, the request log ${puts.get(id)}`)
      const job = state.jobs.find((j) => j.jobId === id)
      assert.equal(job.type, expected.get(id).type, `${id} has the wrong type`)
    }

    // -- one Request-Id per call, kept across its attempts: every attempt but the last was a
    //    fault, the last one answered; calls = groups minus the confirm GETs of the 409 path.
    let confirmGroups = 0 // 409-final PUT calls whose confirm GET carries a Request-Id of its own
    const checkAttempts = (rid, attempts) => {
      assert.ok(attempts.length <= FAST_RETRY.maxRetries + 1, `Request-Id ${rid}: ${attempts.length} attempts`)
      for (const a of attempts.slice(0, -1)) assert.ok(a.fault !== null, `Request-Id ${rid}: retried after an unfaulted ${a.status}`)
      const last = attempts.at(-1)
      assert.equal(last.fault, null, `Request-Id ${rid} (${last.method} ${last.path}): last attempt was a '${last.fault}' fault, yet the call resolved`)
      return last
    }
    for (const [rid, attempts] of groups) {
      assert.ok(rid, 'a request without Request-Id')
      const { method, path } = attempts[0]
      assert.ok(attempts.every((a) => a.path === path), `Request-Id ${rid} reused across jobs`)
      const firstGet = attempts.findIndex((a) => a.method === 'GET')
      if (method === 'PUT' && firstGet > 0) {
        // The confirm GET may share the PUT's Request-Id: PUT attempts ending in 409, then GET attempts ending in 200.
        const putPart = attempts.slice(0, firstGet)
        const getPart = attempts.slice(firstGet)
        assert.ok(getPart.every((a) => a.method === 'GET'), `Request-Id ${rid}: PUT after the confirm GET`)
        assert.equal(checkAttempts(rid, putPart).status, 409)
        assert.ok(putPart.some((a) => a.fault === 'drop'), `${path}: 409 without an earlier dropped attempt`)
        assert.equal(checkAttempts(rid, getPart).status, 200)
        continue
      }
      assert.ok(attempts.every((a) => a.method === method), `Request-Id ${rid} reused across operations`)
      const last = checkAttempts(rid, attempts)
      if (last.status === 409) {
        assert.equal(method, 'PUT')
        assert.ok(attempts.some((a) => a.fault === 'drop'), `${path}: 409 without an earlier dropped attempt`)
        confirmGroups++
      } else {
        assert.equal(last.status, 200, `Request-Id ${rid}: ${method} ${path} ended with ${last.status}`)
      }
    }
    assert.equal(groups.size, OPERATIONS + confirmGroups, 'calls ≠ Request-Id groups (a Request-Id changed between attempts?)')
    assert.ok(confirmGroups <= confirmIds.length)
    assert.ok(confirmIds.length > 0, 'the 409-confirm path was never exercised (drop on PUT)')

    // -- errors (none expected) and the emulator's log never show a secret
    const secrets = new SecretSet().addConnectionString(hub.connectionString).addFromRequestLog({ requests })
    for (const r of failed) secrets.assertClean(errorTexts(r.error), `fault-suite error #${r.i}`)
    secrets.assertClean([['emulator stderr', hub.stderr()]], 'fault suite')

    assert.ok(wallMs < 60_000, `took ${Math.round(wallMs)} ms`)
  })

  test('default retry policy (no options) absorbs the same faults', { timeout: 90_000 }, async (t) => {
    // The defaults wait longer (2 s base after a 429), so this run is short. With 25% of requests
    // faulted, a call could in principle exhaust its 11 attempts (p ≈ 0.25^11): such a failure is
    // accepted only if it is a transient-class error and the log shows a Request-Id whose 11
    // attempts were all faults. Anything else fails.
    await hub.control('POST', 'reset')
    await hub.control('PUT', 'faults', { spec: FAULTS })
    const client = JobClient.fromConnectionString(hub.connectionString, { ca })
    const log = drainRequests(hub)
    const t0 = performance.now()
    const { result, unhandled } = await withUnhandledRejections(() =>
      runWorkload(client, { operations: 96, concurrency: 32, seed: SEED + 1, prefix: 'd' }),
    )
    const wallMs = performance.now() - t0
    const { requests } = await log.stop()
    const { records, expected, scheduled } = result
    const groups = byRequestId(requests)
    const exhausted = [...groups.values()].filter((g) => g.length === DEFAULT_MAX_RETRIES + 1 && g.every((a) => a.fault !== null))
    const failed = records.filter((r) => !r.ok)
    t.diagnostic(
      `defaults: ${records.length} calls in ${Math.round(wallMs)} ms, ${JSON.stringify(summarize(records))}, ` +
        `${requests.length} requests, ${exhausted.length} calls exhausted their retries, ` +
        `max attempts for one call ${Math.max(...[...groups.values()].map((g) => g.length))}`,
    )
    assert.deepEqual(unhandled.map(String), [])
    for (const r of failed) {
      assert.ok(
        ['ThrottlingError', 'ServiceUnavailableError', 'Error'].includes(r.error?.name),
        `#${r.i} ${r.op} ${r.id}: ${r.error?.name}: ${r.error?.message}`,
      )
    }
    assert.ok(failed.length <= exhausted.length, `${failed.length} failures but only ${exhausted.length} exhausted Request-Ids`)
    for (const g of groups.values()) assert.ok(g.length <= DEFAULT_MAX_RETRIES + 1, `${g.length} attempts with defaults`)
    assert.ok(requests.length > records.length, 'nothing was retried')

    const state = await hub.control('GET', 'jobs')
    for (const { id } of scheduled) assert.equal(state.counters[id]?.creates, 1, `${id}`)
    for (const id of expected.keys()) assert.ok((state.counters[id]?.creates ?? 0) <= 1, `${id} created twice`)
    assert.equal(new Set(state.jobs.map((j) => j.jobId)).size, state.jobs.length)
  })
})
