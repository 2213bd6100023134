// The emulator's end-to-end flows (the same four as emulator-reference.test.mjs, which runs them
// through azure-iothub) run through iothub-jobs: in-process, trusting the emulator's CA through the
// `ca` option, HostName with a port.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { test } from 'node:test'
import { startEmulator } from './helpers/emulator.mjs'

const { JobClient } = createRequire(import.meta.url)('..')

const FINAL = new Set(['completed', 'failed', 'cancelled'])

async function withHub(options, fn) {
  const hub = await startEmulator(options)
  try {
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') })
    await fn(hub, client)
  } finally {
    assert.equal(await hub.stop(), 0, 'the emulator exits 0 on SIGTERM')
  }
}

/** Polls `getJob` until the job reaches a final status (bounded). */
async function untilFinal(client, jobId, limitMs = 20_000) {
  const deadline = Date.now() + limitMs
  for (;;) {
    const { jobStatus } = await client.getJob(jobId)
    if (FINAL.has(jobStatus.status)) return jobStatus
    if (Date.now() > deadline) throw new Error(`${jobId} still ${jobStatus.status} after ${limitMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

test('a method job on tags.group = even over 20 devices completes with 10 successes', async () => {
  await withHub({ devices: 20 }, async (hub, client) => {
    const { jobStatus: created, response } = await client.scheduleDeviceMethod('method-even', "tags.group = 'even'", {
      methodName: 'reboot',
      payload: { delay: 0 },
    })
    assert.equal(response.statusCode, 200)
    assert.equal(created.status, 'queued')
    const done = await untilFinal(client, 'method-even')
    assert.equal(done.status, 'completed')
    assert.deepEqual(
      [done.deviceJobStatistics.deviceCount, done.deviceJobStatistics.succeededCount, done.deviceJobStatistics.failedCount],
      [10, 10, 0],
    )
    const { devices } = await hub.control('GET', 'devices')
    for (const d of devices) assert.equal(d.methodCalls, d.tags.group === 'even' ? 1 : 0, d.deviceId)
    const { jobs } = await hub.control('GET', 'jobs')
    assert.deepEqual(jobs.map((j) => [j.jobId, j.creates]), [['method-even', 1]])
  })
})

test("a twin job's tags and desired properties show up in the device twins", async () => {
  await withHub({ devices: 20 }, async (hub, client) => {
    await new Promise((resolve, reject) =>
      client.scheduleTwinUpdate(
        'twin-tags',
        "tags.index IN [3, 7]",
        { etag: '*', tags: { site: 'north', group: null }, properties: { desired: { telemetryInterval: 30 } } },
        (err, job) => (err ? reject(err) : resolve(job)),
      ),
    )
    const done = await untilFinal(client, 'twin-tags')
    assert.equal(done.status, 'completed')
    assert.equal(done.deviceJobStatistics.succeededCount, 2)
    const { devices } = await hub.control('GET', 'devices')
    const byId = Object.fromEntries(devices.map((d) => [d.deviceId, d]))
    assert.deepEqual(byId['device-0003'].tags, { index: 3, site: 'north' }, 'merge patch: null removes group')
    assert.equal(byId['device-0007'].desired.telemetryInterval, 30)
    assert.deepEqual(byId['device-0005'].tags, { group: 'odd', index: 5 }, 'devices outside the condition untouched')
  })
})

test('a job scheduled an hour ahead is queued, then cancelled', async () => {
  await withHub({ devices: 4 }, async (hub, client) => {
    const inAnHour = new Date(Date.now() + 3_600_000)
    const { jobStatus: created } = await client.scheduleDeviceMethod('later', '*', { methodName: 'm' }, inAnHour)
    assert.equal(created.status, 'queued')
    assert.equal(created.startTime, inAnHour.toISOString())
    const { jobStatus: before } = await client.getJob('later')
    assert.ok(['queued', 'scheduled'].includes(before.status), before.status)
    const { jobStatus: cancelled } = await client.cancelJob('later')
    assert.equal(cancelled.status, 'cancelled')
    await hub.control('POST', 'time/advance', { seconds: 7200 })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const { jobStatus: after } = await client.getJob('later')
    assert.equal(after.status, 'cancelled')
    const { devices } = await hub.control('GET', 'devices')
    assert.ok(devices.every((d) => d.methodCalls === 0), 'a cancelled job touches no device')
  })
})

test('five jobs page two at a time through createQuery (the stored continuation token is followed)', async () => {
  await withHub({ devices: 2 }, async (hub, client) => {
    for (let i = 1; i <= 5; i++) await client.scheduleDeviceMethod(`page-${i}`, '*', { methodName: 'm' })
    const query = client.createQuery('scheduleDeviceMethod', undefined, 2)
    const pages = []
    while (query.hasMoreResults) {
      const { result, message } = await query.next()
      assert.equal(message.headers['x-ms-item-type'], 'jobResponse')
      pages.push(result.map((j) => j.jobId))
      assert.ok(pages.length <= 3, 'paging ends')
    }
    assert.deepEqual(pages, [['page-1', 'page-2'], ['page-3', 'page-4'], ['page-5']])
    assert.equal(query.continuationToken, undefined)
  })
})
