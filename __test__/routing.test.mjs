// Message routing read with the real client, @azure/event-hubs 6 (pinned): routes on each
// source (twin changes written by azure-iothub's Registry and reported by a Node device,
// device and module lifecycle, MQTT connection state, the device jobs of azure-iothub's
// JobClient) bring IoT Hub's events to the built-in endpoint with their documented bodies and
// properties; conditions on `$body` and on an
// application property; enrichments; the fallback route; refusals.
import { createRequire } from 'node:module'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { createSasDevice, shimAzureIothub, trustOverTls, until } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs')
const iothub = require('azure-iothub')
const { Client: DeviceClient, Message } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')

let hub
let ca
let registry
const consumers = []

const route = (name, source, condition) => ({ name, source, condition, endpointNames: ['events'], isEnabled: true })

before(async () => {
  // The seed's routing, through startEmulator({ routing }): what a new hub has (the fallback
  // route only) plus one route the first test checks is in force.
  hub = await startEmulator({ devices: 0, routing: { routes: [route('seeded', 'DeviceMessages', "seeded = 'yes'")] } })
  ca = hub.ca
  shimAzureIothub(ca)
  trustOverTls(ca)
  registry = iothub.Registry.fromConnectionString(hub.connectionString)
})

after(async () => {
  await Promise.all(consumers.map((c) => c.close()))
  assert.equal(await hub.stop(), 0)
})

/** Every event of `deviceId` from the start of every partition, once `done(events)` holds. */
function readDevice(deviceId, done, timeoutMs = 20_000) {
  const client = new EventHubConsumerClient('$Default', hub.eventHubConnectionString, { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } })
  consumers.push(client)
  return new Promise((resolve, reject) => {
    const events = []
    const timer = setTimeout(() => finish(new Error(`timed out with ${JSON.stringify(events.map(summary))}`)), timeoutMs)
    let subscription
    const finish = (err) => {
      clearTimeout(timer)
      subscription.close().then(() => (err ? reject(err) : resolve(events)), reject)
    }
    subscription = client.subscribe(
      {
        async processEvents(batch) {
          for (const e of batch) if (e.systemProperties['iothub-connection-device-id'] === deviceId) events.push(e)
          if (done(events)) finish()
        },
        async processError(err) {
          finish(err)
        },
      },
      { startPosition: earliestEventPosition, maxBatchSize: 100, maxWaitTimeInSeconds: 1 },
    )
  })
}

const bodyOf = (e) => (Buffer.isBuffer(e.body) ? JSON.parse(e.body) : e.body)
const source = (e) => e.systemProperties['iothub-message-source']
const summary = (e) => ({ source: source(e), opType: e.properties?.opType, body: bodyOf(e) })

async function deviceClient(deviceId) {
  const client = DeviceClient.fromConnectionString(await createSasDevice(hub, deviceId), Mqtt)
  await client.setOptions({ ca })
  return client
}

function telemetry(body, props = {}, json = true) {
  const m = new Message(JSON.stringify(body))
  for (const [k, v] of Object.entries(props)) m.properties.add(k, v)
  if (json) {
    m.contentType = 'application/json'
    m.contentEncoding = 'utf-8'
  }
  return m
}

async function sendAll(client, messages) {
  await client.open()
  try {
    for (const m of messages) await client.sendEvent(m)
  } finally {
    await client.close()
  }
}

/** The properties every one of IoT Hub's own events carries. */
function assertEventOf(e, { deviceId, moduleId, messageSource, opType, schema }) {
  assert.equal(source(e), messageSource)
  assert.equal(e.systemProperties['iothub-connection-device-id'], deviceId)
  assert.equal(e.systemProperties['iothub-connection-module-id'], moduleId)
  assert.equal(e.contentType, 'application/json')
  assert.equal(e.properties.hubName, hub.eventHubConnectionString.match(/EntityPath=([^;]+)/)[1])
  assert.equal(e.properties.deviceId, deviceId)
  assert.equal(e.properties.moduleId, moduleId)
  assert.equal(e.properties.opType, opType)
  assert.equal(e.properties['iothub-message-schema'], schema)
  assert.ok(Math.abs(new Date(e.properties.operationTimestamp).getTime() - Date.now()) < 60_000, 'operationTimestamp: now')
}

test('the seed routing is in force; with only the fallback route device messages arrive and twin changes do not', async () => {
  assert.deepEqual((await hub.routing()).routes.map((r) => r.name), ['seeded'])
  await hub.setRouting({})
  assert.deepEqual(await hub.routing(), { routes: [], enrichments: [] })
  const client = await deviceClient('rt-plain')
  await registry.updateTwin('rt-plain', { properties: { desired: { x: 1 } } }, '*')
  await sendAll(client, [telemetry({ n: 1 })])
  const events = await readDevice('rt-plain', (evs) => evs.length >= 1)
  // A twin change or connection event would sit before the telemetry in the device's partition.
  assert.deepEqual(events.map(summary), [{ source: 'Telemetry', opType: undefined, body: { n: 1 } }])
})

test('routes on each source bring twin-change, lifecycle and connection-state events with their documented bodies and properties', async () => {
  await hub.setRouting({
    routes: [
      route('twins', 'TwinChangeEvents'),
      route('lifecycle', 'DeviceLifecycleEvents'),
      route('connections', 'DeviceConnectionStateEvents', 'true'),
    ],
  })
  const deviceId = 'rt-sources'
  const client = await deviceClient(deviceId)
  await registry.addModule({ deviceId, moduleId: 'filter' })
  await registry.updateTwin(deviceId, { tags: { site: 'north' }, properties: { desired: { color: 'red' } } }, '*')
  await client.open()
  const twin = await client.getTwin()
  await new Promise((resolve, reject) => twin.properties.reported.update({ temperature: 21 }, (e) => (e ? reject(e) : resolve())))
  await client.close()
  // The hub sees the MQTT connection end a moment after the client closed it.
  await until(async () => (await hub.health()).connectedDevices === 0, 10_000, 'the device disconnected')
  await registry.removeModule(deviceId, 'filter')
  await registry.delete(deviceId)

  const events = await readDevice(deviceId, (evs) => evs.filter((e) => e.properties?.opType === 'deleteDeviceIdentity').length === 2)
  assert.deepEqual(
    events.map((e) => [e.properties.opType, e.properties.moduleId ?? null]),
    [
      ['createDeviceIdentity', null],
      ['createDeviceIdentity', 'filter'],
      ['updateTwin', null],
      ['deviceConnected', null],
      ['updateTwin', null],
      ['deviceDisconnected', null],
      ['deleteDeviceIdentity', 'filter'],
      ['deleteDeviceIdentity', null],
    ],
  )
  const [created, moduleCreated, desired, connected, reported, disconnected, moduleDeleted, deleted] = events
  const lifecycle = { messageSource: 'deviceLifecycleEvents', schema: 'deviceLifecycleNotification' }
  assertEventOf(created, { deviceId, ...lifecycle, opType: 'createDeviceIdentity' })
  assert.equal(bodyOf(created).deviceId, deviceId, 'a lifecycle body is the twin')
  assert.equal(typeof bodyOf(created).properties.desired.$version, 'number')
  assertEventOf(moduleCreated, { deviceId, moduleId: 'filter', ...lifecycle, opType: 'createDeviceIdentity' })
  assert.equal(bodyOf(moduleCreated).moduleId, 'filter')
  assertEventOf(deleted, { deviceId, ...lifecycle, opType: 'deleteDeviceIdentity' })
  assert.deepEqual(bodyOf(deleted).tags, { site: 'north' }, 'a deleted identity: the twin it had')
  assertEventOf(moduleDeleted, { deviceId, moduleId: 'filter', ...lifecycle, opType: 'deleteDeviceIdentity' })

  const twinChange = { messageSource: 'twinChangeEvents', schema: 'twinChangeNotification', opType: 'updateTwin' }
  assertEventOf(desired, { deviceId, ...twinChange })
  const desiredBody = bodyOf(desired)
  assert.deepEqual(desiredBody.tags, { site: 'north' })
  assert.equal(desiredBody.properties.desired.color, 'red')
  assert.equal(typeof desiredBody.properties.desired.$version, 'number')
  assert.equal(typeof desiredBody.version, 'number')
  assertEventOf(reported, { deviceId, ...twinChange })
  const reportedBody = bodyOf(reported)
  assert.equal(reportedBody.properties.reported.temperature, 21)
  assert.equal(typeof reportedBody.properties.reported.$version, 'number')
  assert.ok(reportedBody.version > desiredBody.version, 'the twin version grows')
  assert.equal(reportedBody.properties.desired, undefined, 'only what changed')

  const state = { messageSource: 'deviceConnectionStateEvents', schema: 'deviceConnectionStateNotification' }
  assertEventOf(connected, { deviceId, ...state, opType: 'deviceConnected' })
  assertEventOf(disconnected, { deviceId, ...state, opType: 'deviceDisconnected' })
  const [a, b] = [bodyOf(connected).sequenceNumber, bodyOf(disconnected).sequenceNumber]
  assert.match(a, /^[0-9A-F]{64}$/)
  assert.ok(b > a, 'sequence numbers order the connection events')

  // A full replacement is a replaceTwin.
  const replaced = 'rt-replace'
  await createSasDevice(hub, replaced)
  const current = await registry.getTwin(replaced)
  await new Promise((resolve, reject) =>
    registry._restApiClient.executeApiCall('PUT', `/twins/${replaced}?api-version=2021-04-12`, { 'Content-Type': 'application/json; charset=utf-8', 'If-Match': current.responseBody.etag }, { tags: { a: 1 }, properties: { desired: { b: 2 } } }, (e) => (e ? reject(e) : resolve())),
  )
  const [, replace] = await readDevice(replaced, (evs) => evs.length >= 2)
  assertEventOf(replace, { deviceId: replaced, ...twinChange, opType: 'replaceTwin' })
  assert.deepEqual(bodyOf(replace).tags, { a: 1 })
})

test('bulk creates and deletes (Registry.addDevices, removeDevices) raise lifecycle events', async () => {
  await hub.setRouting({ routes: [route('lifecycle', 'DeviceLifecycleEvents')] })
  await registry.addDevices([{ deviceId: 'rt-bulk-1' }, { deviceId: 'rt-bulk-2' }])
  await registry.removeDevices([{ deviceId: 'rt-bulk-1' }], true)
  const lifecycle = { messageSource: 'deviceLifecycleEvents', schema: 'deviceLifecycleNotification' }
  const one = await readDevice('rt-bulk-1', (evs) => evs.length >= 2)
  assert.deepEqual(one.map((e) => e.properties.opType), ['createDeviceIdentity', 'deleteDeviceIdentity'])
  assertEventOf(one[1], { deviceId: 'rt-bulk-1', ...lifecycle, opType: 'deleteDeviceIdentity' })
  assert.equal(bodyOf(one[1]).deviceId, 'rt-bulk-1')
  const two = await readDevice('rt-bulk-2', (evs) => evs.length >= 1)
  assert.deepEqual(two.map((e) => e.properties.opType), ['createDeviceIdentity'])
})

test("a twin job's writes raise twin-change events as REST writes do", async () => {
  await hub.setRouting({ routes: [route('twins', 'TwinChangeEvents')] })
  await registry.create({ deviceId: 'rt-job' })
  const jobs = iothub.JobClient.fromConnectionString(hub.connectionString)
  const patch = { etag: '*', tags: { fleet: 'b' }, properties: { desired: { mode: 'eco' } } }
  await jobs.scheduleTwinUpdate('rt-twin-job', "deviceId = 'rt-job'", patch, new Date(), 60)
  const [change] = await readDevice('rt-job', (evs) => evs.length >= 1)
  assertEventOf(change, { deviceId: 'rt-job', messageSource: 'twinChangeEvents', schema: 'twinChangeNotification', opType: 'updateTwin' })
  const body = bodyOf(change)
  assert.deepEqual(body.tags, { fleet: 'b' })
  assert.equal(body.properties.desired.mode, 'eco')
  assert.equal(typeof body.properties.desired.$version, 'number')
  assert.equal(body.etag, undefined)
})

/** Runs `schedule(jobs)` (a JobClient call) and waits for the job to end. */
async function runJob(jobId, schedule, ending = 'completed') {
  const jobs = iothub.JobClient.fromConnectionString(hub.connectionString)
  await schedule(jobs)
  await until(async () => (await jobs.getJob(jobId)).jobStatus.status === ending, 20_000, `job ${jobId} ${ending}`)
  return jobs
}

test('a route on DeviceJobLifecycleEvents brings each ended device job (method and twin jobs, failed, cancelled) as its devices.jobs row', async () => {
  await hub.setRouting({ routes: [route('jobs', 'DeviceJobLifecycleEvents')] })
  const answering = await deviceClient('rt-jobs-on')
  await answering.open()
  answering.onDeviceMethod('reboot', (request, response) => response.send(200, { rebooted: request.payload.n }, () => {}))
  const silent = await deviceClient('rt-jobs-slow')
  await silent.open()
  silent.onDeviceMethod('reboot', () => {}) // never answers: the job is cancelled meanwhile
  await registry.create({ deviceId: 'rt-jobs-off' }) // not connected: its call fails
  const method = { methodName: 'reboot', payload: { n: 7 }, responseTimeoutInSeconds: 5 }
  try {
    await runJob('rt-lc-method', (jobs) => jobs.scheduleDeviceMethod('rt-lc-method', "deviceId IN ['rt-jobs-on', 'rt-jobs-off']", method, new Date(), 60))
    const patch = { etag: '*', tags: { fleet: 'c' }, properties: { desired: { mode: 'lc' } } }
    await runJob('rt-lc-twin', (jobs) => jobs.scheduleTwinUpdate('rt-lc-twin', "deviceId = 'rt-jobs-on'", patch, new Date(), 60))
    await runJob(
      'rt-lc-cancel',
      async (jobs) => {
        await jobs.scheduleDeviceMethod('rt-lc-cancel', "deviceId = 'rt-jobs-slow'", { ...method, responseTimeoutInSeconds: 60 }, new Date(), 120)
        await until(async () => (await jobs.getJob('rt-lc-cancel')).jobStatus.deviceJobStatistics.runningCount === 1, 10_000, 'the call is running')
        await jobs.cancelJob('rt-lc-cancel')
      },
      'cancelled',
    )
  } finally {
    await Promise.all([answering.close(), silent.close()])
  }

  const jobEvent = { messageSource: 'deviceJobLifecycleEvents', schema: 'deviceJobLifecycleNotification' }
  const [methodDone, twinDone] = await readDevice('rt-jobs-on', (evs) => evs.length >= 2)
  assertEventOf(methodDone, { deviceId: 'rt-jobs-on', ...jobEvent, opType: 'deviceJobCompleted' })
  const methodRow = bodyOf(methodDone)
  assert.deepEqual(
    { ...methodRow, startTimeUtc: typeof methodRow.startTimeUtc, endTimeUtc: typeof methodRow.endTimeUtc, createdDateTimeUtc: typeof methodRow.createdDateTimeUtc, lastUpdatedDateTimeUtc: typeof methodRow.lastUpdatedDateTimeUtc },
    {
      deviceId: 'rt-jobs-on',
      jobId: 'rt-lc-method',
      jobType: 'scheduleDeviceMethod',
      status: 'completed',
      startTimeUtc: 'string',
      endTimeUtc: 'string',
      createdDateTimeUtc: 'string',
      lastUpdatedDateTimeUtc: 'string',
      outcome: { deviceMethodResponse: { status: 200, payload: { rebooted: 7 } } },
    },
  )
  // The body is the row the service's query shows.
  const { result: rows } = await registry.createQuery("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'rt-lc-method'").next()
  assert.deepEqual(rows.find((r) => r.deviceId === 'rt-jobs-on'), methodRow)
  assertEventOf(twinDone, { deviceId: 'rt-jobs-on', ...jobEvent, opType: 'deviceJobCompleted' })
  assert.deepEqual([bodyOf(twinDone).jobId, bodyOf(twinDone).jobType, bodyOf(twinDone).status], ['rt-lc-twin', 'scheduleUpdateTwin', 'completed'])

  const [failed] = await readDevice('rt-jobs-off', (evs) => evs.length >= 1)
  assertEventOf(failed, { deviceId: 'rt-jobs-off', ...jobEvent, opType: 'deviceJobFailed' })
  assert.equal(bodyOf(failed).status, 'failed')
  assert.equal(bodyOf(failed).error.code, 'DeviceNotOnline')

  const [cancelled] = await readDevice('rt-jobs-slow', (evs) => evs.length >= 1)
  assertEventOf(cancelled, { deviceId: 'rt-jobs-slow', ...jobEvent, opType: 'deviceJobCanceled' })
  assert.deepEqual([bodyOf(cancelled).jobId, bodyOf(cancelled).status], ['rt-lc-cancel', 'canceled'])

  // Without such a route a job's devices raise nothing: the device's partition holds only the
  // telemetry it sends after the job.
  await hub.setRouting({})
  const quiet = await deviceClient('rt-jobs-quiet')
  await quiet.open()
  quiet.onDeviceMethod('reboot', (request, response) => response.send(200, {}, () => {}))
  await runJob('rt-lc-unrouted', (jobs) => jobs.scheduleDeviceMethod('rt-lc-unrouted', "deviceId = 'rt-jobs-quiet'", method, new Date(), 60))
  await quiet.sendEvent(telemetry({ after: 'job' }))
  await quiet.close()
  const events = await readDevice('rt-jobs-quiet', (evs) => evs.length >= 1)
  assert.deepEqual(events.map(summary), [{ source: 'Telemetry', opType: undefined, body: { after: 'job' } }])
})

test('conditions on an application property and on $body, enrichments, and the fallback route', async () => {
  await registry.create({ deviceId: 'rt-cond' })
  await registry.updateTwin('rt-cond', { tags: { site: 'harbour' } }, '*')
  await hub.setRouting({
    routes: [route('critical', 'DeviceMessages', "level = 'critical'"), route('hot', 'DeviceMessages', '$body.reading.temperature > 30')],
    enrichments: [
      { key: 'env', value: 'test', endpointNames: ['events'] },
      { key: 'site', value: '$twin.tags.site', endpointNames: ['events'] },
    ],
  })
  const keys = (await registry.get('rt-cond')).responseBody.authentication.symmetricKey
  const cs = `HostName=${hub.hostName};DeviceId=rt-cond;SharedAccessKey=${keys.primaryKey}`
  const device = () => {
    const c = DeviceClient.fromConnectionString(cs, Mqtt)
    c.setOptions({ ca })
    return c
  }
  await sendAll(device(), [
    telemetry({ n: 1, reading: { temperature: 35 } }, { level: 'critical' }), // both routes: once
    telemetry({ n: 2, reading: { temperature: 10 } }, { level: 'info' }), // no route: the fallback
  ])
  const sent = (evs) => evs.filter((e) => source(e) === 'Telemetry')
  let events = sent(await readDevice('rt-cond', (evs) => evs.some((e) => bodyOf(e).n === 2)))
  assert.deepEqual(events.map((e) => bodyOf(e).n), [1, 2], 'delivered once each')
  for (const e of events) {
    assert.equal(e.properties.env, 'test', 'a static enrichment')
    assert.equal(e.properties.site, 'harbour', 'an enrichment from the twin')
  }
  assert.equal(events[0].properties.level, 'critical')

  // Without the fallback route only what a route matches arrives.
  await hub.setRouting({
    routes: [route('critical', 'DeviceMessages', "level = 'critical'"), route('hot', 'DeviceMessages', '$body.reading.temperature > 30')],
    fallbackRoute: { name: '$fallback', source: 'DeviceMessages', condition: 'true', endpointNames: ['events'], isEnabled: false },
  })
  await sendAll(device(), [
    telemetry({ n: 3, reading: { temperature: 10 } }, { level: 'info' }), // neither
    telemetry({ n: 4, reading: { temperature: 40 } }, {}, false), // not JSON by content type: no $body
    telemetry({ n: 5, reading: { temperature: 40 } }), // hot
    telemetry({ n: 6 }, { Level: 'critical' }), // property names are not case-sensitive (IoT Hub's rule)
    telemetry({ n: 7 }, { level: 'Critical' }), // values are
    telemetry({ n: 8 }, { level: 'critical' }),
  ])
  events = sent(await readDevice('rt-cond', (evs) => evs.some((e) => bodyOf(e).n === 8)))
  assert.deepEqual(events.map((e) => bodyOf(e).n), [1, 2, 5, 6, 8])
  assert.equal(events[2].properties.env, undefined, 'enrichments removed with the routing')
})

test('what the service refuses is refused in one line: custom endpoints, bad conditions and sources, the route limit', async () => {
  const refused = async (routing, expected) => {
    const err = await hub.setRouting(routing).then(() => null, (e) => e)
    assert.ok(err, `refused: ${JSON.stringify(routing)}`)
    assert.match(err.message, /^PUT \/_emulator\/routing: 400 /)
    assert.match(err.message, expected)
    assert.ok(!err.message.includes('\n'))
  }
  await refused({ routes: [{ ...route('r', 'DeviceMessages'), endpointNames: ['myqueue'] }] }, /endpoint \\"myqueue\\" is not supported: the emulator has only the built-in endpoint \\"events\\"/)
  await refused({ endpoints: { eventHubs: [{ name: 'eh', connectionString: 'Endpoint=sb://x/' }] } }, /custom endpoints are not supported/)
  await refused({ routes: [route('r', 'DeviceMessages', "level = 'critical' AND")] }, /route \\"r\\": invalid condition: .* at position \d+/)
  await refused({ routes: [route('r', 'Telemetry')] }, /unknown source \\"Telemetry\\" \(one of DeviceMessages, TwinChangeEvents/)
  await refused({ routes: [route('has space', 'DeviceMessages')] }, /route name \\"has space\\" is invalid/)
  await refused({ routes: Array.from({ length: 101 }, (_, i) => route(`r${i}`, 'DeviceMessages')) }, /101 routes, IoT Hub allows at most 100/)
  // The routing in force is unchanged by a refusal.
  assert.equal((await hub.routing()).routes.length, 2)
  // A bad seed routing stops the start with the same line.
  const err = await startEmulator({ devices: 0, routing: { routes: [route('r', 'Nope')] } }).then(
    (h) => h.stop().then(() => null),
    (e) => e,
  )
  assert.match(String(err?.message), /seed: route "r": unknown source "Nope"/)
})
