// Microsoft's own azure-iothub@1.16.6, unmodified, end to end against iothub-emulator.
//
// azure-iothub has no CA option, so the emulator's CA is trusted through NODE_EXTRA_CA_CERTS,
// which Node reads only at start: each scenario runs in a child `node` process (this same file,
// started with IOTHUB_EMULATOR_SCENARIO set). azure-iothub also passes HostName straight to
// https.request as `host`, so `127.0.0.1:PORT` would be looked up as a DNS name; the child
// installs a harness-only shim that splits the port off before the request is made.
// node_modules is never modified.
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { shimAzureIothub } from './helpers/device-sdks.mjs'

const SELF = fileURLToPath(import.meta.url)
const SCENARIO = process.env.IOTHUB_EMULATOR_SCENARIO

// ---------------------------------------------------------------------------------------------
// Child side: run one scenario with azure-iothub and print its result as the last stdout line.
// ---------------------------------------------------------------------------------------------

/** Wraps azure-iothub's (err, result, response) callbacks. */
function call(fn) {
  return new Promise((resolve, reject) => fn((err, result, response) => (err ? reject(err) : resolve({ result, response }))))
}

async function pollJob(client, jobId, until, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { result } = await call((cb) => client.getJob(jobId, cb))
    if (until.includes(result.status) || Date.now() > deadline) return result
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function runScenario(name, connectionString) {
  shimAzureIothub()
  const require = createRequire(import.meta.url)
  const { JobClient, Registry } = require('azure-iothub')
  const client = JobClient.fromConnectionString(connectionString)
  const method = { methodName: 'reboot', payload: { delay: 0 }, responseTimeoutInSeconds: 30 }
  switch (name) {
    case 'method-even': {
      const { result: created } = await call((cb) => client.scheduleDeviceMethod('method-even', "tags.group = 'even'", method, cb))
      const done = await pollJob(client, 'method-even', ['completed', 'failed', 'cancelled'])
      return { created, done }
    }
    case 'twin-tags': {
      const patch = { etag: '*', tags: { site: 'north', group: null }, properties: { desired: { telemetryInterval: 30 } } }
      await call((cb) => client.scheduleTwinUpdate('twin-tags', "deviceId IN ['device-0003', 'device-0004']", patch, cb))
      const done = await pollJob(client, 'twin-tags', ['completed', 'failed', 'cancelled'])
      const registry = Registry.fromConnectionString(connectionString)
      const { result: twin } = await call((cb) => registry.getTwin('device-0003', cb))
      const { result: untouched } = await call((cb) => registry.getTwin('device-0005', cb))
      return { done, tags: twin.tags, desired: twin.properties.desired, untouchedTags: untouched.tags }
    }
    case 'schedule-cancel': {
      const inAnHour = new Date(Date.now() + 3_600_000)
      const { result: created } = await call((cb) => client.scheduleDeviceMethod('later', '*', method, inAnHour, 7200, cb))
      const { result: before } = await call((cb) => client.getJob('later', cb))
      const { result: cancelled } = await call((cb) => client.cancelJob('later', cb))
      const { result: after } = await call((cb) => client.getJob('later', cb))
      return { created, before, cancelled, after }
    }
    case 'paging': {
      const inAnHour = new Date(Date.now() + 3_600_000)
      for (let i = 1; i <= 5; i++) {
        await call((cb) => client.scheduleDeviceMethod(`page-${i}`, '*', method, inAnHour, 7200, cb))
      }
      const query = client.createQuery('scheduleDeviceMethod', null, 2)
      const pages = []
      // The callback form of next() follows the stored continuation token (the promise form with
      // no argument does not: a known azure-iothub bug).
      while (query.hasMoreResults && pages.length < 10) {
        const { result, response } = await call((cb) => query.next(cb))
        pages.push({ ids: result.map((j) => j.jobId), continuation: response.headers['x-ms-continuation'] ?? null, itemType: response.headers['x-ms-item-type'] })
      }
      return { pages }
    }
    case 'unauthorized': {
      const wrong = connectionString.replace(/SharedAccessKey=[^;]+/, 'SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=')
      const bad = JobClient.fromConnectionString(wrong)
      try {
        await call((cb) => bad.getJob('anything', cb))
        return { error: null }
      } catch (err) {
        return { error: { name: err.name, status: err.response?.statusCode, message: err.message } }
      }
    }
    default:
      throw new Error(`unknown scenario ${name}`)
  }
}

if (SCENARIO) {
  runScenario(SCENARIO, process.env.IOTHUB_CONNECTION_STRING).then(
    (result) => process.stdout.write(`\n${JSON.stringify(result)}\n`),
    (err) => {
      process.stderr.write(`scenario ${SCENARIO} failed: ${err?.stack ?? err}\n`)
      process.exitCode = 1
    },
  )
}

// ---------------------------------------------------------------------------------------------
// Parent side: the tests.
// ---------------------------------------------------------------------------------------------

/** Runs a scenario in a child node trusting the emulator's CA; resolves with its result. */
function scenario(hub, name) {
  return new Promise((resolve, reject) => {
    // The child is a plain script, not a test file: drop the runner's marker so it prints plainly.
    const env = { ...process.env }
    delete env.NODE_TEST_CONTEXT
    const child = spawn(process.execPath, [SELF], {
      env: {
        ...env,
        NODE_EXTRA_CA_CERTS: hub.caPath,
        IOTHUB_EMULATOR_SCENARIO: name,
        IOTHUB_CONNECTION_STRING: hub.connectionString,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      const last = out.trim().split('\n').pop()
      if (code !== 0 || !last) return reject(new Error(`scenario ${name} exited ${code}\n${err}\n--- emulator ---\n${hub.stderr()}`))
      resolve(JSON.parse(last))
    })
  })
}

async function withHub(options, fn) {
  const hub = await startEmulator(options)
  try {
    await fn(hub)
  } finally {
    assert.equal(await hub.stop(), 0, 'the emulator exits 0 on SIGTERM')
  }
}

if (!SCENARIO) {
  test('a method job on tags.group = even over 20 devices completes with 10 successes', async () => {
    await withHub({ devices: 20 }, async (hub) => {
      const { created, done } = await scenario(hub, 'method-even')
      assert.equal(created.jobId, 'method-even')
      assert.equal(created.type, 'scheduleDeviceMethod')
      assert.equal(created.status, 'queued')
      assert.equal(done.status, 'completed')
      assert.equal(done.deviceJobStatistics.deviceCount, 10)
      assert.equal(done.deviceJobStatistics.succeededCount, 10)
      assert.equal(done.deviceJobStatistics.failedCount, 0)
      const { devices } = await hub.control('GET', 'devices')
      for (const d of devices) {
        const even = d.tags.group === 'even'
        assert.equal(d.methodCalls, even ? 1 : 0, d.deviceId)
        if (even) assert.deepEqual(d.lastMethod, { methodName: 'reboot', payload: { delay: 0 } })
      }
      // What azure-iothub put on the wire, as the emulator recorded it.
      const { requests } = await hub.control('GET', 'requests')
      const put = requests.find((r) => r.method === 'PUT')
      assert.equal(put.path, '/jobs/v2/method-even')
      assert.match(put.query, /^api-version=2021-04-12$/)
      assert.match(put.headers.authorization, /^SharedAccessSignature sr=127\.0\.0\.1:\d+&sig=[^&]+&skn=iothubowner&se=\d+$/)
      assert.equal(JSON.parse(put.body).maxExecutionTimeInSeconds, 3600)
      const { jobs } = await hub.control('GET', 'jobs')
      assert.deepEqual(jobs.map((j) => [j.jobId, j.creates]), [['method-even', 1]])
    })
  })

  test("a twin job's tags and desired properties show up in GET /twins/{id}", async () => {
    await withHub({ devices: 20 }, async (hub) => {
      const { done, tags, desired, untouchedTags } = await scenario(hub, 'twin-tags')
      assert.equal(done.status, 'completed')
      assert.equal(done.deviceJobStatistics.succeededCount, 2)
      assert.deepEqual(tags, { index: 3, site: 'north' })
      assert.equal(desired.telemetryInterval, 30)
      assert.ok(desired.$version >= 2)
      assert.deepEqual(untouchedTags, { group: 'odd', index: 5 })
    })
  })

  test('a job scheduled an hour ahead is queued, then cancelled', async () => {
    await withHub({ devices: 4 }, async (hub) => {
      const { created, before, cancelled, after } = await scenario(hub, 'schedule-cancel')
      assert.equal(created.status, 'queued')
      assert.ok(['queued', 'scheduled'].includes(before.status), before.status)
      assert.equal(cancelled.status, 'cancelled')
      assert.equal(after.status, 'cancelled')
      assert.equal(after.deviceJobStatistics.deviceCount, 0)
      // Even once its start time has passed, a cancelled job touches no device.
      await hub.control('POST', 'time/advance', { seconds: 7200 })
      await new Promise((r) => setTimeout(r, 100))
      const { devices } = await hub.control('GET', 'devices')
      assert.ok(devices.every((d) => d.methodCalls === 0))
    })
  })

  test('five jobs page two at a time through createQuery', async () => {
    await withHub({ devices: 2 }, async (hub) => {
      const { pages } = await scenario(hub, 'paging')
      assert.deepEqual(pages.map((p) => p.ids), [['page-1', 'page-2'], ['page-3', 'page-4'], ['page-5']])
      assert.equal(pages[2].continuation, null, 'no continuation token on the last page')
      assert.ok(pages[0].continuation && pages[1].continuation)
      assert.ok(pages.every((p) => p.itemType === 'jobResponse'))
      const { requests } = await hub.control('GET', 'requests')
      const queries = requests.filter((r) => r.path === '/jobs/v2/query')
      assert.equal(queries.length, 3)
      assert.ok(queries.every((r) => r.headers['x-ms-max-item-count'] === '2'))
      assert.equal(queries[0].headers['x-ms-continuation'], undefined)
      assert.equal(queries[1].headers['x-ms-continuation'], pages[0].continuation)
    })
  })

  test('a token signed with the wrong key is refused with 401 IotHubUnauthorizedAccess', async () => {
    await withHub({ devices: 1 }, async (hub) => {
      const { error } = await scenario(hub, 'unauthorized')
      assert.equal(error?.name, 'UnauthorizedError')
      assert.equal(error.status, 401)
      const { requests } = await hub.control('GET', 'requests')
      assert.equal(requests.at(-1).status, 401)
    })
  })

  test('the control API: faults, time, devices and reset', async () => {
    await withHub({ devices: 3, faults: '500:1' }, async (hub) => {
      assert.equal((await hub.control('GET', 'faults')).spec, '500:1')
      assert.equal((await hub.control('GET', 'health')).status, 'ok', 'faults never apply to the control API')
      await hub.control('PUT', 'faults', { spec: 'latency:1-2ms' })
      const t = await hub.control('PUT', 'time', { scale: 0 })
      assert.equal(t.scale, 0)
      const later = await hub.control('POST', 'time/advance', { seconds: 60 })
      assert.ok(later.nowMs - t.nowMs >= 60_000)
      await hub.control('PUT', 'devices/device-0001/method', { status: 500, offline: true })
      const { devices } = await hub.control('GET', 'devices')
      assert.deepEqual(devices[1].method, { status: 500, payload: { ok: true }, delayMs: 0, offline: true })
      await hub.control('PUT', 'devices', { devices: [{ deviceId: 'solo', tags: { a: 1 } }] })
      assert.deepEqual((await hub.control('GET', 'devices')).devices.map((d) => d.deviceId), ['solo'])
      await hub.control('POST', 'reset')
      assert.equal((await hub.control('GET', 'devices')).devices.length, 3)
      assert.equal((await hub.control('GET', 'faults')).spec, '')
      assert.equal((await hub.control('GET', 'time')).scale, 1)
    })
  })
}
