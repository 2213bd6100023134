// Timeouts end to end: a silent server can no longer hang a caller (TimeoutError with a
// clear message within `timeoutMs`), a refused or resetting port rejects after its retries
// instead of hanging, and `retry: false` restores the reference's single attempt (one request in
// the emulator's request log, whatever the fault).
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { readFileSync } from 'node:fs'

import { startEmulator } from './helpers/emulator.mjs'
import { RecordingServer, CA_PEM } from './helpers/recording-server.mjs'
import { pkg, refusedPort } from './helpers/reliability.mjs'
import { SecretSet, errorTexts } from './helpers/secrets.mjs'

const { JobClient, errors } = pkg
const CA = CA_PEM
const KEY_B64 = Buffer.from('timeouts-suite-key-0123456789abcdef').toString('base64')
const csFor = (port) => `HostName=127.0.0.1:${port};SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY_B64}`
const FAST = { maxRetries: 3, initialDelayMs: 20, maxDelayMs: 50 }
const SLACK_MS = 500 // scheduling slack on a loaded 2-core machine
const secrets = new SecretSet().addConnectionString(csFor(1))

async function elapsed(promise) {
  const t0 = performance.now()
  try {
    const value = await promise
    return { ms: performance.now() - t0, value }
  } catch (error) {
    return { ms: performance.now() - t0, error }
  }
}

/** Servers that misbehave at the socket level, counting what reaches them. */
async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return server.address().port
}

describe('timeouts: a silent server', () => {
  const sockets = new Set()
  let httpsPort
  let tcpPort
  let tcpConnections = 0
  // Completes the TLS handshake, reads the request, never answers.
  const httpsServer = new RecordingServer({ fallback: { hang: true } })
  let tcpServer

  before(async () => {
    httpsPort = (await httpsServer.start()).port
    // Accepts TCP and never says a word (the TLS handshake never completes).
    tcpServer = net.createServer((s) => {
      tcpConnections++
      sockets.add(s)
    })
    tcpPort = await listen(tcpServer)
  })
  after(async () => {
    for (const s of sockets) s.destroy()
    await Promise.all([httpsServer.close(), new Promise((r) => tcpServer.close(r))])
  })

  for (const [label, retry] of [
    ['default retry', undefined],
    ['retry: false', false],
  ]) {
    test(`no response → TimeoutError within timeoutMs (${label})`, async () => {
      httpsServer.reset()
      const timeoutMs = 1200
      const client = JobClient.fromConnectionString(csFor(httpsPort), { ca: CA, timeoutMs, retry })
      const { ms, error } = await elapsed(client.getJob('never-answered'))
      assert.ok(error, 'the call resolved against a server that never answers')
      assert.ok(error instanceof errors.TimeoutError, `expected TimeoutError, got ${error.name}: ${error.message}`)
      assert.equal(error.name, 'TimeoutError')
      assert.match(error.message, /time(d)? ?out/i)
      assert.match(error.message, /1200 ms/, 'the message names the configured limit')
      assert.ok(ms >= timeoutMs - 50, `rejected after ${ms.toFixed(0)} ms, before the ${timeoutMs} ms limit`)
      assert.ok(ms <= timeoutMs + SLACK_MS, `rejected after ${ms.toFixed(0)} ms (limit ${timeoutMs})`)
      assert.equal(httpsServer.requests.length, 1, 'the request reached the server once')
      secrets.assertClean(errorTexts(error), 'timeout error')
    })
  }

  test('TLS handshake never completes → TimeoutError within timeoutMs', async () => {
    const timeoutMs = 800
    const client = JobClient.fromConnectionString(csFor(tcpPort), { ca: CA, timeoutMs })
    const { ms, error } = await elapsed(client.getJob('x'))
    assert.ok(error instanceof errors.TimeoutError, `got ${error?.name}: ${error?.message}`)
    assert.ok(ms <= timeoutMs + SLACK_MS && ms >= timeoutMs - 50, `${ms.toFixed(0)} ms`)
    assert.ok(tcpConnections >= 1)
  })

  test('every operation and the callback form time out (schedule, cancel, callback getJob)', async () => {
    const timeoutMs = 600
    const client = JobClient.fromConnectionString(csFor(httpsPort), { ca: CA, timeoutMs })
    const results = await Promise.all([
      elapsed(client.scheduleDeviceMethod('t-1', '*', { methodName: 'm' })),
      elapsed(client.scheduleTwinUpdate('t-2', '*', { etag: '*', tags: { a: 1 } })),
      elapsed(client.cancelJob('t-3')),
      elapsed(
        new Promise((resolve, reject) =>
          client.getJob('t-4', (err, job) => (err ? reject(err) : resolve(job))),
        ),
      ),
    ])
    for (const { ms, error } of results) {
      assert.ok(error instanceof errors.TimeoutError, `got ${error?.name}: ${error?.message}`)
      assert.ok(ms <= timeoutMs + SLACK_MS, `${ms.toFixed(0)} ms`)
    }
  })
})

describe('timeouts: refused and resetting ports reject after retries, never hang', () => {
  test('refused port, fast retry policy → rejects with a connection error', async () => {
    const port = await refusedPort()
    const client = JobClient.fromConnectionString(csFor(port), { ca: CA, retry: FAST })
    const { ms, error } = await elapsed(client.getJob('x'))
    assert.ok(error, 'resolved against a refused port')
    assert.ok(error instanceof Error)
    assert.ok(!(error instanceof errors.TimeoutError), 'a refusal is not a timeout')
    assert.match(error.message, /connect/i)
    assert.match(error.message, /refused/i)
    assert.ok(error.message.includes(String(port)), error.message)
    // at most 3 waits of ≤ 50 ms
    assert.ok(ms < 1000, `${ms.toFixed(0)} ms`)
    secrets.assertClean(errorTexts(error), 'refused-port error')
  })

  test('refused port, default retry policy: bounded by timeoutMs, reports the connection error', async () => {
    // Defaults (crates/core/README.md): 10 retries, 200 ms base doubling to 30 s, full jitter —
    // up to ~111 s of waits against a dead port, within the 5 min call timeout. With a 2 s call
    // budget the call must end inside it, and with the real cause rather than a TimeoutError
    // (a wait that would outlive the budget ends the call with the last error).
    const port = await refusedPort()
    const client = JobClient.fromConnectionString(csFor(port), { ca: CA, timeoutMs: 2000 })
    const { ms, error } = await elapsed(client.getJob('x'))
    assert.ok(error, 'resolved against a refused port')
    assert.match(error.message, /refused/i)
    assert.ok(!(error instanceof errors.TimeoutError), `a TimeoutError hides the cause: ${error.message}`)
    assert.ok(ms < 2000 + SLACK_MS, `${ms.toFixed(0)} ms`)
  })

  test('refused port, retry: false → rejects at once', async () => {
    const port = await refusedPort()
    const client = JobClient.fromConnectionString(csFor(port), { ca: CA, retry: false })
    const { ms, error } = await elapsed(client.getJob('x'))
    assert.match(error?.message ?? '', /refused/i)
    assert.ok(ms < 500, `${ms.toFixed(0)} ms`)
  })

  test('a port that resets every connection: maxRetries + 1 connections, then rejects', async () => {
    let connections = 0
    const server = net.createServer((s) => {
      connections++
      s.resetAndDestroy()
    })
    const port = await listen(server)
    try {
      const client = JobClient.fromConnectionString(csFor(port), { ca: CA, retry: FAST })
      const { error } = await elapsed(client.getJob('x'))
      assert.ok(error, 'resolved against a resetting server')
      assert.match(error.message, /reset|closed|connect/i)
      assert.equal(connections, FAST.maxRetries + 1)

      connections = 0
      const single = JobClient.fromConnectionString(csFor(port), { ca: CA, retry: false })
      const second = await elapsed(single.getJob('x'))
      assert.ok(second.error)
      assert.equal(connections, 1, 'retry: false made more than one connection')
    } finally {
      await new Promise((r) => server.close(r))
    }
  })
})

describe('retry: false is the reference: exactly one request, whatever the fault', () => {
  let hub
  let ca
  before(async () => {
    hub = await startEmulator({ devices: 2 })
    ca = readFileSync(hub.caPath, 'utf8')
  })
  after(() => hub?.stop())

  const cases = [
    ['503:1', 'getJob', errors.ServiceUnavailableError],
    ['429:1', 'getJob', errors.ThrottlingError],
    ['500:1', 'cancelJob', errors.InternalServerError],
    ['reset:1', 'getJob', Error],
    ['drop:1', 'getJob', Error],
    ['drop:1', 'scheduleDeviceMethod', Error],
    ['429:1', 'scheduleTwinUpdate', errors.ThrottlingError],
  ]
  for (const [spec, op, Class] of cases) {
    test(`${spec} on ${op} → one request, ${Class.name}`, async () => {
      await hub.control('POST', 'reset')
      const client = JobClient.fromConnectionString(hub.connectionString, { ca, retry: false })
      const id = `nr-${op}`
      if (op !== 'scheduleDeviceMethod' && op !== 'scheduleTwinUpdate') await client.scheduleDeviceMethod(id, '*', { methodName: 'm' })
      await hub.control('DELETE', 'requests')
      await hub.control('PUT', 'faults', { spec })
      const call =
        op === 'scheduleDeviceMethod'
          ? client.scheduleDeviceMethod(id, '*', { methodName: 'm' })
          : op === 'scheduleTwinUpdate'
            ? client.scheduleTwinUpdate(id, '*', { etag: '*', tags: { x: 1 } })
            : client[op](id)
      const { error } = await elapsed(call)
      await hub.control('DELETE', 'faults')
      assert.ok(error, `${op} resolved despite ${spec} and retry: false`)
      assert.ok(error instanceof Class, `expected ${Class.name}, got ${error.name}: ${error.message}`)
      const { requests } = await hub.control('GET', 'requests')
      assert.equal(requests.length, 1, `retry: false sent ${requests.length} requests`)
      assert.equal(requests[0].fault, spec.split(':')[0])
      if (spec === 'drop:1' && op === 'scheduleDeviceMethod') {
        // The reference's outcome: the job exists, the caller got an error (what retries fix).
        const state = await hub.control('GET', 'jobs')
        assert.equal(state.counters[id]?.creates, 1)
      }
      new SecretSet().addConnectionString(hub.connectionString).addFromRequestLog({ requests }).assertClean(errorTexts(error), `${spec} ${op}`)
    })
  }
})
