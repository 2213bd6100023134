// The retry policy end to end: through the emulator's fault injection
// (`PUT /_emulator/faults`) and request log, and a small local server for statuses and headers the
// emulator does not inject (408, 504, Retry-After). Every 429 is retried, the Request-Id stays the
// same across the attempts of one call, other 4xx are never retried, and a PUT whose response
// was dropped ends with exactly one job and a resolved call (the 409-confirm path) — while a 409
// for a *different* existing job still fails like the reference.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'

import { startEmulator } from './helpers/emulator.mjs'
import { RecordingServer, CA_PEM } from './helpers/recording-server.mjs'
import { pkg, byRequestId, pool } from './helpers/reliability.mjs'
import { SecretSet, errorTexts } from './helpers/secrets.mjs'

const { JobClient, errors } = pkg
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const FAST = { maxRetries: 3, initialDelayMs: 5, maxDelayMs: 30 }
const PATIENT = { maxRetries: 15, initialDelayMs: 5, maxDelayMs: 30 }

describe('retry policy through the emulator', () => {
  let hub
  let ca
  before(async () => {
    hub = await startEmulator({ devices: 4 })
    ca = readFileSync(hub.caPath, 'utf8')
  })
  after(() => hub?.stop())

  async function fresh(spec) {
    await hub.control('POST', 'reset')
    if (spec) await hub.control('PUT', 'faults', { spec })
  }
  const requests = async () => (await hub.control('GET', 'requests')).requests
  const client = (retry = FAST) => JobClient.fromConnectionString(hub.connectionString, { ca, retry })
  function clean(err, context, log) {
    const s = new SecretSet().addConnectionString(hub.connectionString).addFromRequestLog({ requests: log })
    s.assertClean(errorTexts(err), context)
  }

  test('429 on every attempt: maxRetries + 1 attempts, one Request-Id, then ThrottlingError', async () => {
    await fresh()
    const c = client()
    await c.scheduleDeviceMethod('j429', '*', { methodName: 'm' })
    await hub.control('DELETE', 'requests')
    await hub.control('PUT', 'faults', { spec: '429:1' })
    const err = await c.getJob('j429').then(() => null, (e) => e)
    const log = await requests()
    assert.ok(err instanceof errors.ThrottlingError, `got ${err?.name}`)
    assert.equal(log.length, FAST.maxRetries + 1)
    assert.ok(log.every((r) => r.status === 429 && r.fault === '429'))
    const ids = new Set(log.map((r) => r.headers['request-id']))
    assert.equal(ids.size, 1, `Request-Ids across attempts: ${[...ids]}`)
    assert.match([...ids][0], UUID_V4)
    clean(err, '429 error', log)
  })

  for (const [spec, Class] of [
    ['503:1', errors.ServiceUnavailableError],
    ['500:1', errors.InternalServerError],
    ['reset:1', Error],
    ['drop:1', Error],
  ]) {
    test(`${spec}: retried maxRetries times with one Request-Id, then ${Class.name}`, async () => {
      await fresh()
      const c = client()
      await c.scheduleDeviceMethod('jx', '*', { methodName: 'm' })
      await hub.control('DELETE', 'requests')
      await hub.control('PUT', 'faults', { spec })
      const err = await c.cancelJob('jx').then(() => null, (e) => e)
      const log = await requests()
      assert.ok(err instanceof Class, `got ${err?.name}: ${err?.message}`)
      assert.equal(log.length, FAST.maxRetries + 1)
      assert.equal(new Set(log.map((r) => r.headers['request-id'])).size, 1)
      clean(err, spec, log)
    })
  }

  test('429:0.5 on 40 calls: every 429 is followed by an attempt of the same call; all resolve', async () => {
    await fresh()
    const c = client(PATIENT)
    for (let i = 0; i < 4; i++) await c.scheduleDeviceMethod(`t${i}`, '*', { methodName: 'm' })
    await hub.control('DELETE', 'requests')
    await hub.control('PUT', 'faults', { spec: '429:0.5' })
    const results = []
    await pool(40, 8, async (i) => {
      results.push(await c.getJob(`t${i % 4}`).then((r) => r.jobStatus.jobId, (e) => e))
    })
    const log = await requests()
    assert.deepEqual(results.filter((r) => typeof r !== 'string'), [], 'calls failed')
    const groups = byRequestId(log)
    assert.equal(groups.size, 40, 'one Request-Id per call')
    let throttled = 0
    for (const [rid, attempts] of groups) {
      assert.match(rid, UUID_V4)
      assert.ok(attempts.every((a) => a.path === attempts[0].path))
      for (const a of attempts.slice(0, -1)) assert.equal(a.status, 429, `${rid}: retried after ${a.status}`)
      assert.equal(attempts.at(-1).status, 200, `${rid}: a 429 was not retried`)
      throttled += attempts.length - 1
    }
    assert.ok(throttled > 0, 'no 429 injected')
  })

  test('400, 401, 404 and 409 are never retried (even with retries on)', async () => {
    await fresh()
    const c = client(PATIENT)
    await c.scheduleDeviceMethod('dup', '*', { methodName: 'm' })
    const checks = [
      ['400 ArgumentInvalid', () => c.scheduleDeviceMethod('bad', '*', { methodName: 'm', responseTimeoutInSeconds: 1 }), errors.ArgumentError, 400],
      ['404 JobNotFound (get)', () => c.getJob('missing'), errors.JobNotFoundError, 404],
      ['404 JobNotFound (cancel)', () => c.cancelJob('missing'), errors.JobNotFoundError, 404],
      ['409 JobAlreadyExists (no earlier attempt)', () => c.scheduleDeviceMethod('dup', '*', { methodName: 'm' }), errors.DeviceAlreadyExistsError, 409],
      [
        '401 wrong key',
        () =>
          JobClient.fromConnectionString(hub.connectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`), {
            ca,
            retry: PATIENT,
          }).getJob('dup'),
        errors.UnauthorizedError,
        401,
      ],
    ]
    for (const [label, call, Class, status] of checks) {
      await hub.control('DELETE', 'requests')
      const err = await call().then(() => null, (e) => e)
      const log = await requests()
      assert.ok(err instanceof Class, `${label}: got ${err?.name}: ${err?.message}`)
      assert.equal(err.response?.statusCode, status, label)
      assert.equal(log.length, 1, `${label}: ${log.length} requests`)
      assert.equal(log[0].status, status)
      clean(err, label, log)
    }
  })

  test('429 then 404: retried through the throttling, stops at the 404', async () => {
    await fresh('429:0.6')
    const c = client(PATIENT)
    await pool(10, 5, async (i) => {
      const err = await c.getJob(`nope-${i}`).then(() => null, (e) => e)
      assert.ok(err instanceof errors.JobNotFoundError, `got ${err?.name}: ${err?.message}`)
    })
    for (const [rid, attempts] of byRequestId(await requests())) {
      assert.ok(attempts.slice(0, -1).every((a) => a.status === 429), rid)
      assert.equal(attempts.at(-1).status, 404, rid)
    }
  })

  test("drop on PUT: the retry's 409 is confirmed with a GET; exactly one job, the call resolves with it", async () => {
    await fresh('drop:0.5')
    const c = client(PATIENT)
    const jobs = []
    for (let i = 0; i < 24; i++) {
      const start = i % 3 === 0 ? new Date(Date.now() + 3600_000) : undefined
      jobs.push(
        i % 2
          ? { id: `dm-${i}`, type: 'scheduleDeviceMethod', call: () => c.scheduleDeviceMethod(`dm-${i}`, '*', { methodName: 'reboot', payload: { i, nested: [1, 2.5, 'x'] } }, ...(start ? [start] : [])) }
          : { id: `dt-${i}`, type: 'scheduleUpdateTwin', call: () => c.scheduleTwinUpdate(`dt-${i}`, "tags.group = 'odd'", { etag: '*', tags: { i }, properties: { desired: { i } } }, ...(start ? [start, 600] : [])) },
      )
    }
    const outcomes = await Promise.all(jobs.map((j) => j.call().then((r) => r, (e) => e)))
    const log = await requests()
    const state = await hub.control('GET', 'jobs')
    let confirmed = 0
    jobs.forEach((j, k) => {
      const out = outcomes[k]
      assert.ok(!(out instanceof Error), `${j.id}: ${out?.name}: ${out?.message}`)
      assert.equal(out.jobStatus.jobId, j.id)
      assert.equal(out.jobStatus.type, j.type)
      assert.equal(state.counters[j.id]?.creates, 1, `${j.id} creates`)
      const mine = log.filter((r) => r.path === `/jobs/v2/${j.id}`)
      const conflict = mine.findIndex((r) => r.method === 'PUT' && r.status === 409 && r.fault === null)
      if (conflict >= 0) {
        confirmed++
        assert.ok(mine.slice(0, conflict).some((r) => r.method === 'PUT' && r.fault === 'drop'), `${j.id}: 409 before any dropped PUT`)
        const get = mine.slice(conflict + 1).find((r) => r.method === 'GET' && r.fault === null)
        assert.ok(get, `${j.id}: the 409 was not confirmed with a GET`)
        assert.equal(out.response.statusCode, 200)
      }
    })
    assert.equal(state.jobs.length, jobs.length)
    assert.ok(confirmed > 0, 'no PUT went through the drop → 409 → GET path')
  })

  test('409 for a different existing job is not confirmed: the reference error, the job untouched', async () => {
    await fresh()
    const c = client(PATIENT)
    const later = new Date(Date.now() + 7200_000)
    const variants = [
      ['other method', (id) => c.scheduleDeviceMethod(id, '*', { methodName: 'other', payload: { a: 1 } }, later)],
      ['other payload', (id) => c.scheduleDeviceMethod(id, '*', { methodName: 'orig', payload: { a: 2 } }, later)],
      ['other condition', (id) => c.scheduleDeviceMethod(id, "tags.group = 'even'", { methodName: 'orig', payload: { a: 1 } }, later)],
      ['other start time', (id) => c.scheduleDeviceMethod(id, '*', { methodName: 'orig', payload: { a: 1 } }, new Date(later.getTime() + 60_000))],
      ['other type', (id) => c.scheduleTwinUpdate(id, '*', { etag: '*', tags: { a: 1 } }, later)],
    ]
    const ids = []
    for (const [v] of variants) for (let k = 0; k < 3; k++) ids.push(`${v.replace(/ /g, '-')}-${k}`)
    for (const id of ids) await c.scheduleDeviceMethod(id, '*', { methodName: 'orig', payload: { a: 1 } }, later)
    // 503 answers count as "maybe sent", so a later 409 takes the confirm path and must refuse.
    await hub.control('DELETE', 'requests')
    await hub.control('PUT', 'faults', { spec: '503:0.5' })
    const outcomes = await Promise.all(
      ids.map((id, n) => variants[Math.floor(n / 3)][1](id).then((r) => r, (e) => e)),
    )
    const log = await requests()
    await hub.control('DELETE', 'faults')
    ids.forEach((id, n) => {
      const out = outcomes[n]
      assert.ok(out instanceof errors.DeviceAlreadyExistsError, `${variants[Math.floor(n / 3)][0]} ${id}: ${out?.name ?? 'resolved'} ${out?.message ?? JSON.stringify(out?.jobStatus)}`)
      assert.equal(out.response?.statusCode, 409)
    })
    const state = await hub.control('GET', 'jobs')
    for (const id of ids) {
      assert.equal(state.counters[id].creates, 1)
      const job = state.jobs.find((j) => j.jobId === id)
      assert.equal(job.type, 'scheduleDeviceMethod')
      assert.equal(job.cloudToDeviceMethod.methodName, 'orig')
    }
    const confirmGets = log.filter((r) => r.method === 'GET' && r.fault === null)
    assert.ok(confirmGets.length > 0, 'no call took the confirm path (no 503 before a 409?)')
  })
})

describe('retry policy against a real throttle (emulator --tier S1: one active job)', () => {
  let hub
  let ca
  before(async () => {
    hub = await startEmulator({ devices: 2, args: ['--tier', 'S1'] })
    ca = readFileSync(hub.caPath, 'utf8')
  })
  after(() => hub?.stop())

  test('429 ThrottlingMaxActiveJobCountExceeded is retried until the slot frees up', async () => {
    const c = JobClient.fromConnectionString(hub.connectionString, { ca, retry: { maxRetries: 40, initialDelayMs: 20, maxDelayMs: 50 } })
    const later = new Date(Date.now() + 3600_000)
    await c.scheduleDeviceMethod('slot-a', '*', { methodName: 'm' }, later)
    await hub.control('DELETE', 'requests')
    const pending = c.scheduleDeviceMethod('slot-b', '*', { methodName: 'm' }, later).then((r) => r, (e) => e)
    // wait until slot-b has been refused at least once, then free the slot
    let throttled = []
    for (let k = 0; k < 100 && throttled.length === 0; k++) {
      await new Promise((r) => setTimeout(r, 10))
      throttled = (await hub.control('GET', 'requests')).requests.filter((r) => r.path === '/jobs/v2/slot-b' && r.status === 429)
    }
    assert.ok(throttled.length > 0, 'slot-b was never throttled')
    await c.cancelJob('slot-a')
    const out = await pending
    assert.ok(!(out instanceof Error), `${out?.name}: ${out?.message}`)
    assert.equal(out.jobStatus.jobId, 'slot-b')
    const puts = (await hub.control('GET', 'requests')).requests.filter((r) => r.path === '/jobs/v2/slot-b')
    assert.equal(new Set(puts.map((r) => r.headers['request-id'])).size, 1, 'one Request-Id across the throttled attempts')
    assert.ok(puts.slice(0, -1).every((r) => r.status === 429 && r.fault === null), 'real (not injected) 429s before the success')
    assert.equal(puts.at(-1).status, 200)
    assert.equal((await hub.control('GET', 'jobs')).counters['slot-b'].creates, 1)
  })
})

describe('retry policy against a scripted server (statuses and headers the emulator does not inject)', () => {
  const KEY_B64 = Buffer.from('retry-policy-suite-key-0123456789').toString('base64')
  let cs
  let script = () => ({ status: 200 })
  const seen = []
  const server = new RecordingServer({
    respond: (req) => {
      seen.push({ at: req.at, id: req.headers['request-id'], method: req.method, url: req.url })
      const { status, headers = {}, code = 'X' } = script(seen.length)
      const body =
        status < 300
          ? JSON.stringify({ jobId: 'j', type: 'scheduleDeviceMethod', status: 'completed' })
          : JSON.stringify({ Message: `ErrorCode:${code};scripted`, ExceptionMessage: 'Tracking ID:0-G:0-TimeStamp:01/01/2026 00:00:00' })
      return { status, headers: { 'content-type': 'application/json', ...headers }, body }
    },
  })
  before(async () => {
    await server.start()
    cs = server.connectionString(KEY_B64)
  })
  after(() => server.close())
  const ca = () => CA_PEM

  const table = [
    [408, 3],
    [429, 3],
    [500, 3],
    [503, 3],
    [504, 3],
    [400, 1],
    [401, 1],
    [403, 1],
    [404, 1],
    [409, 1],
    [412, 1],
    [413, 1],
  ]
  for (const [status, attempts] of table) {
    test(`${status} → ${attempts} attempt(s) with maxRetries 2`, async () => {
      seen.length = 0
      script = () => ({ status, code: status === 429 ? 'ThrottlingMaxActiveJobCountExceeded' : 'X' })
      const c = JobClient.fromConnectionString(cs, { ca: ca(), retry: { maxRetries: 2, initialDelayMs: 1, maxDelayMs: 5 } })
      const err = await c.getJob('j').then(() => null, (e) => e)
      assert.ok(err, 'resolved')
      assert.equal(err.response?.statusCode, status)
      assert.equal(seen.length, attempts)
      assert.equal(new Set(seen.map((s) => s.id)).size, 1, 'Request-Id changed between attempts')
    })
  }

  for (const [label, headers, minGapMs] of [
    ['Retry-After: 1 (seconds)', { 'retry-after': '1' }, 950],
    ['retry-after-ms: 400', { 'retry-after-ms': '400' }, 380],
    ['Retry-After as an HTTP date', null, 700],
  ]) {
    test(`429 with ${label} is honoured`, async () => {
      seen.length = 0
      script = (n) =>
        n === 1
          ? { status: 429, headers: headers ?? { 'retry-after': new Date(Date.now() + 2000).toUTCString() } }
          : { status: 200 }
      const c = JobClient.fromConnectionString(cs, { ca: ca() })
      const { jobStatus } = await c.getJob('j')
      assert.equal(jobStatus.jobId, 'j')
      assert.equal(seen.length, 2)
      const gap = seen[1].at - seen[0].at
      assert.ok(gap >= minGapMs, `retried after ${gap.toFixed(0)} ms`)
      assert.ok(gap < 3000, `retried after ${gap.toFixed(0)} ms`)
      assert.equal(seen[0].id, seen[1].id)
    })
  }
})
