// Soak: 100,000 getJob calls through one client against the emulator (no faults).
// RSS after the first 10,000 calls vs at the end must grow by less than 10%, and the number of
// open file descriptors must not grow (the connection pool is reused, nothing leaks). Runs in a
// child process with --expose-gc so the figures are the client's alone and taken after a GC.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { startEmulator } from './helpers/emulator.mjs'
import { pkg } from './helpers/reliability.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const CALLS = 100_000
const WARMUP = 10_000
const CONCURRENCY = 16
const MAX_RSS_GROWTH = 0.1
const FD_TOLERANCE = 2
const MB = 1024 * 1024

function runChild(env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', path.join(here, 'helpers', 'soak-child.mjs')], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (err = (err + d).slice(-8192)))
    child.once('error', reject)
    child.once('exit', (code, signal) => {
      if (code !== 0) return reject(new Error(`soak child exited with ${code ?? signal}\n${err}`))
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)))
      } catch (e) {
        reject(new Error(`soak child printed no result: ${e.message}\n${out}\n${err}`))
      }
    })
  })
}

describe('soak: 100,000 getJob calls through one client', { timeout: 150_000 }, () => {
  let hub
  before(async () => {
    hub = await startEmulator({ devices: 2 })
  })
  after(() => hub?.stop())

  test('RSS grows < 10% after the first 10,000 calls; no file descriptor leaks', { timeout: 140_000 }, async (t) => {
    const setup = pkg.JobClient.fromConnectionString(hub.connectionString, {
      ca: readFileSync(hub.caPath, 'utf8'),
    })
    await setup.scheduleDeviceMethod('soak', '*', { methodName: 'ping' })

    const r = await runChild({
      SOAK_CS: hub.connectionString,
      SOAK_CA: hub.caPath,
      SOAK_JOB: 'soak',
      SOAK_CALLS: String(CALLS),
      SOAK_WARMUP: String(WARMUP),
      SOAK_CONCURRENCY: String(CONCURRENCY),
    })
    const growth = (r.end.rss - r.afterWarmup.rss) / r.afterWarmup.rss
    t.diagnostic(
      `${r.calls} calls at concurrency ${r.concurrency} in ${Math.round(r.totalMs)} ms ` +
        `(${Math.round((r.calls / r.totalMs) * 1000)} calls/s); RSS start ${(r.start.rss / MB).toFixed(1)} MB, ` +
        `after ${r.warmup} ${(r.afterWarmup.rss / MB).toFixed(1)} MB, end ${(r.end.rss / MB).toFixed(1)} MB ` +
        `(growth ${(growth * 100).toFixed(2)}%); heapUsed ${(r.afterWarmup.heapUsed / MB).toFixed(1)} → ${(r.end.heapUsed / MB).toFixed(1)} MB; ` +
        `fds start ${r.start.fds}, after warm-up ${r.afterWarmup.fds}, end ${r.end.fds}`,
    )
    assert.ok(r.gc, 'the child ran without --expose-gc')
    assert.equal(r.failures, 0, `calls failed: ${r.firstError}`)
    assert.ok(growth < MAX_RSS_GROWTH, `RSS grew ${(growth * 100).toFixed(1)}% between call ${WARMUP} and ${CALLS}`)
    assert.ok(
      r.end.fds <= r.afterWarmup.fds + FD_TOLERANCE,
      `file descriptors grew from ${r.afterWarmup.fds} to ${r.end.fds}`,
    )
    // The pool holds at most one connection per in-flight call (plus epoll/eventfd/stdio).
    assert.ok(
      r.end.fds <= r.start.fds + CONCURRENCY + 8,
      `${r.end.fds - r.start.fds} descriptors opened for ${CONCURRENCY} concurrent calls`,
    )

    // The hub answered every one of them (the ring keeps the last 1,000).
    const log = await hub.control('GET', 'requests')
    assert.ok(log.requests.every((q) => q.status === 200), 'a soak request was not answered 200')
  })
})
