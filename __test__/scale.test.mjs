// Paging at fleet scale, kept cheap enough for every `npm test` (a few seconds): the device-job
// rows of a 20,000-device twin job, listed through listDeviceJobs, arrive exactly once, in the
// hub's order, at a cost per page that does not grow with the position; tokens are opaque, and
// a forged or stale one is refused with a clear error; the emulator's memory stays in budget. The big runs are `npm run bench -- --scale`.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

import { startEmulator } from './helpers/emulator.mjs'

const require = createRequire(import.meta.url)
const { JobClient } = require('..')
const DEVICES = 20_000

let hub
let client

before(async () => {
  hub = await startEmulator({ devices: DEVICES })
  client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') })
  await client.scheduleTwinUpdate('fleet', '*', { etag: '*', properties: { desired: { firmware: '2.0' } } })
  const job = await client.waitForJob('fleet', { pollIntervalMs: 50, timeoutMs: 60_000 })
  assert.equal(job.deviceJobStatistics.succeededCount, DEVICES)
})
after(() => hub?.stop())

test('every row of a 20,000-device job exactly once, in order, at a flat cost per page', { timeout: 60_000 }, async () => {
  const pageMs = []
  const tokens = new Set()
  let previous = ''
  let rows = 0
  let t = performance.now()
  for await (const page of client.listDeviceJobs('fleet', { maxPageSize: 1000 }).byPage()) {
    pageMs.push(performance.now() - t)
    for (const row of page) {
      assert.ok(row.deviceId > previous, `${row.deviceId} after ${previous}`)
      assert.equal(row.status, 'completed')
      previous = row.deviceId
      rows++
    }
    if (page.continuationToken !== undefined) {
      assert.equal(typeof page.continuationToken, 'string')
      tokens.add(page.continuationToken)
    }
    t = performance.now()
  }
  assert.equal(rows, DEVICES)
  assert.equal(pageMs.length, DEVICES / 1000, 'no empty trailing page')
  assert.equal(tokens.size, pageMs.length - 1)
  // With offset tokens the last pages cost about 20× the first ones (every earlier row was
  // rendered and filtered again); now every page costs the same. 5× leaves room for noise.
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
  const first = median(pageMs.slice(1, 6))
  const last = median(pageMs.slice(-5))
  assert.ok(last < Math.max(first, 2) * 5, `first pages ${first.toFixed(1)} ms, last pages ${last.toFixed(1)} ms`)
})

test('the emulator stays within 2 KB per device plus 1 KB per device-job row', () => {
  // Measured after the job and a full listing: peak RSS (VmHWM) of the whole process, with
  // 16 MiB for the runtime, TLS and the allocator's own. The old JSON-map rows and the
  // listing's full re-render per page peaked at about 15 KB per device here.
  const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${hub.pid}/status`, 'utf8'))[1])
  const budgetKb = 2 * DEVICES + 1 * DEVICES + 16 * 1024
  assert.ok(kb('VmHWM') <= budgetKb, `peak RSS ${kb('VmHWM')} KiB, budget ${budgetKb} KiB`)
})

test('a resumed listing continues exactly after its token', async () => {
  const pages = client.listDeviceJobs('fleet').byPage({ maxPageSize: 700 })
  const { value: first } = await pages.next()
  await pages.return()
  const rest = client.listDeviceJobs('fleet').byPage({ continuationToken: first.continuationToken, maxPageSize: 300 })
  const { value: second } = await rest.next()
  await rest.return()
  assert.equal(first.at(-1).deviceId, 'device-0699')
  assert.equal(second[0].deviceId, 'device-0700')
  assert.equal(second.length, 300)
})

test('forged, foreign and stale tokens are refused with a clear 400', async () => {
  const firstToken = async (jobId) => {
    const pages = client.listDeviceJobs(jobId).byPage({ maxPageSize: 10 })
    const { value } = await pages.next()
    await pages.return()
    return value.continuationToken
  }
  const fleetToken = await firstToken('fleet')
  const refused = async (jobId, continuationToken, why) => {
    const err = await client
      .listDeviceJobs(jobId)
      .byPage({ continuationToken })
      .next()
      .then(() => assert.fail('expected a rejection'), (e) => e)
    assert.match(err.message, /x-ms-continuation is not a valid continuation token/)
    assert.match(err.message, why)
    assert.equal(err.name, 'ArgumentError')
    assert.equal(err.response.statusCode, 400)
  }
  await refused('fleet', 'bm90IGEgdG9rZW4', /not issued by this hub/)
  await refused('other', fleetToken, /different query/)
  await hub.control('POST', 'reset')
  await client.scheduleTwinUpdate('fleet', '*', { etag: '*', tags: { again: true } })
  await refused('fleet', fleetToken, /no longer exists/)
})
