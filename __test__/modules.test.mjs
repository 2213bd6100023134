// IoT Edge modules against iothub-emulator with Microsoft's SDKs, pinned and unmodified:
// azure-iothub's Registry manages module identities and module twins, azure-iot-device's
// ModuleClient (over azure-iot-device-mqtt's Mqtt, port in HostName) takes module methods
// invoked through azure-iothub's Client and desired patches from Registry.updateModuleTwin, and
// its reported properties show in a `devices.modules` query. A job whose condition is
// `FROM devices.modules WHERE …` (Azure/iotedge#719) reaches the module.
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { body, rejectsWith, shimAzureIothub } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const { JobClient } = require('..')
const iothub = require('azure-iothub')
const { ModuleClient, Message } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')
const { NoRetry } = require('azure-iot-common')

let hub
let ca

before(async () => {
  hub = await startEmulator({ devices: 0 })
  ca = readFileSync(hub.caPath, 'utf8')
  shimAzureIothub(ca)
})

after(async () => {
  assert.equal(await hub.stop(), 0, 'the emulator exits 0 on SIGTERM')
})

const registry = () => iothub.Registry.fromConnectionString(hub.connectionString)

function moduleConnectionString(deviceId, moduleId, key) {
  return `HostName=${hub.hostName};DeviceId=${deviceId};ModuleId=${moduleId};SharedAccessKey=${key}`
}

async function openModule(cs) {
  const client = ModuleClient.fromConnectionString(cs, Mqtt)
  client.setRetryPolicy(new NoRetry())
  await client.setOptions({ ca })
  await client.open()
  return client
}

async function until(check, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const connectionState = async (deviceId, moduleId) =>
  (await body(registry().getModule(deviceId, moduleId))).connectionState

test('module identities: add, get, list, update with If-Match, remove; removing the device removes its modules', async () => {
  const reg = registry()
  await reg.create({ deviceId: 'edge-a' })
  const created = await body(reg.addModule({ deviceId: 'edge-a', moduleId: 'filter' }))
  assert.equal(created.moduleId, 'filter')
  assert.equal(created.deviceId, 'edge-a')
  assert.equal(created.connectionState, 'Disconnected')
  assert.equal(created.authentication.type, 'sas')
  const { primaryKey, secondaryKey } = created.authentication.symmetricKey
  assert.ok(primaryKey.length >= 40 && secondaryKey.length >= 40 && primaryKey !== secondaryKey, 'the hub generated two keys')
  assert.deepEqual(await body(reg.getModule('edge-a', 'filter')), created)

  await rejectsWith(reg.addModule({ deviceId: 'edge-a', moduleId: 'filter' }), 409, 'ModuleAlreadyExistsOnDevice')
  await rejectsWith(reg.addModule({ deviceId: 'no-such-device', moduleId: 'filter' }), 404, 'DeviceNotFound')
  await rejectsWith(reg.getModule('edge-a', 'nope'), 404, 'ModuleNotFound')

  const updated = await body(reg.updateModule({ ...created, managedBy: 'IotEdge' }))
  assert.equal(updated.managedBy, 'IotEdge')
  assert.notEqual(updated.etag, created.etag)
  assert.equal(updated.authentication.symmetricKey.primaryKey, primaryKey, 'keys are kept')
  // The etag the module had before the update no longer matches.
  await rejectsWith(reg.updateModule({ ...created, managedBy: 'someone' }), 412, 'PreconditionFailed')
  // removeModule(module) has no promise form in azure-iothub 1.16 ('done' cannot be falsy).
  await rejectsWith(new Promise((resolve, reject) => reg.removeModule(created, (e) => (e ? reject(e) : resolve()))), 412, 'PreconditionFailed')

  await reg.addModule({ deviceId: 'edge-a', moduleId: 'aggregator', authentication: { symmetricKey: { primaryKey: Buffer.alloc(32, 1).toString('base64'), secondaryKey: '' } } })
  const listed = await body(reg.getModulesOnDevice('edge-a'))
  assert.deepEqual(listed.map((m) => m.moduleId), ['aggregator', 'filter'])
  assert.equal(listed[0].authentication.symmetricKey.primaryKey, Buffer.alloc(32, 1).toString('base64'), 'a given key is kept')

  await reg.removeModule('edge-a', 'aggregator')
  await rejectsWith(reg.getModule('edge-a', 'aggregator'), 404, 'ModuleNotFound')

  await reg.delete('edge-a')
  await reg.create({ deviceId: 'edge-a' })
  assert.deepEqual(await body(reg.getModulesOnDevice('edge-a')), [], 'a re-created device starts without modules')
  await reg.delete('edge-a')
})

test('ModuleClient over Mqtt: module method via Client.invokeDeviceMethod, desired patch via updateModuleTwin, reported in a devices.modules query, connection state', async () => {
  const reg = registry()
  await reg.create({ deviceId: 'edge-b' })
  const mod = await body(reg.addModule({ deviceId: 'edge-b', moduleId: 'sensor' }))
  const client = await openModule(moduleConnectionString('edge-b', 'sensor', mod.authentication.symmetricKey.primaryKey))
  try {
    const calls = []
    client.onMethod('reset', (request, response) => {
      calls.push(request.payload)
      response.send(200, { reset: true, got: request.payload }, () => {})
    })
    const twin = await client.getTwin()
    const seen = []
    twin.on('properties.desired', (delta) => seen.push(delta))
    assert.equal(await connectionState('edge-b', 'sensor'), 'Connected')
    const device = await body(reg.get('edge-b'))
    assert.equal(device.connectionState, 'Disconnected', 'a module session does not connect its device')

    const service = iothub.Client.fromConnectionString(hub.connectionString)
    const params = { methodName: 'reset', payload: { level: 2 }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 }
    const { result } = await service.invokeDeviceMethod('edge-b', 'sensor', params)
    assert.deepEqual(result, { status: 200, payload: { reset: true, got: { level: 2 } } })
    assert.deepEqual(calls, [{ level: 2 }])
    // The device itself has no session: a method for it does not reach the module.
    await assert.rejects(service.invokeDeviceMethod('edge-b', { ...params, connectTimeoutInSeconds: 0 }), (err) => {
      assert.match(err.responseBody, /ErrorCode:DeviceNotOnline;/)
      return true
    })

    const before = await body(reg.getModuleTwin('edge-b', 'sensor'))
    await reg.updateModuleTwin('edge-b', 'sensor', { tags: { site: 'north' }, properties: { desired: { interval: 5 } } }, before.etag)
    await until(() => seen.some((d) => d.interval === 5), 'the desired patch')
    const after = await body(reg.getModuleTwin('edge-b', 'sensor'))
    assert.equal(seen.find((d) => d.interval === 5).$version, after.properties.desired.$version)
    assert.equal(after.moduleId, 'sensor')
    assert.deepEqual(after.tags, { site: 'north' })
    await rejectsWith(reg.updateModuleTwin('edge-b', 'sensor', { tags: { site: 'south' } }, before.etag), 412, 'PreconditionFailed')

    await client.sendEvent(new Message('{"t":21}'))
    const { messages } = await hub.control('GET', 'telemetry')
    const sent = messages.find((m) => m.body === '{"t":21}')
    assert.deepEqual([sent.deviceId, sent.moduleId], ['edge-b', 'sensor'])
    assert.match(sent.topic, /^devices\/edge-b\/modules\/sensor\/messages\/events\//)

    await new Promise((resolve, reject) => twin.properties.reported.update({ firmware: '3.1' }, (e) => (e ? reject(e) : resolve())))
    const query = reg.createQuery("SELECT * FROM devices.modules WHERE properties.reported.firmware = '3.1' AND tags.site = 'north'")
    const { result: twins } = await query.nextAsTwin()
    assert.deepEqual(twins.map((t) => [t.deviceId, t.moduleId]), [['edge-b', 'sensor']])
    assert.equal(twins[0].connectionState, 'Connected')
    assert.equal(twins[0].properties.reported.firmware, '3.1')
    const { result: deviceTwins } = await reg.createQuery("SELECT * FROM devices WHERE properties.reported.firmware = '3.1'").nextAsTwin()
    assert.deepEqual(deviceTwins, [], 'module reports stay in the module twin')
  } finally {
    await client.close()
  }
  await until(async () => (await connectionState('edge-b', 'sensor')) === 'Disconnected', 'the module to show disconnected')
})

test('a job with a FROM devices.modules condition calls the module method and updates module twins', async () => {
  const reg = registry()
  await reg.create({ deviceId: 'edge-c' })
  const mod = await body(reg.addModule({ deviceId: 'edge-c', moduleId: 'pump' }))
  await reg.addModule({ deviceId: 'edge-c', moduleId: 'other' })
  const client = await openModule(moduleConnectionString('edge-c', 'pump', mod.authentication.symmetricKey.primaryKey))
  try {
    client.onMethod('stop', (request, response) => response.send(202, { stopped: request.payload }, () => {}))
    const twin = await client.getTwin()
    const seen = []
    twin.on('properties.desired', (delta) => seen.push(delta))
    const jobs = iothub.JobClient.fromConnectionString(hub.connectionString)
    const condition = "FROM devices.modules WHERE moduleId = 'pump'"
    await jobs.scheduleDeviceMethod('stop-pumps', condition, { methodName: 'stop', payload: 7, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 })
    const finished = async (jobId) => {
      await until(async () => (await jobs.getJob(jobId)).jobStatus.status === 'completed', `job ${jobId}`)
      return (await jobs.getJob(jobId)).jobStatus
    }
    const job = await finished('stop-pumps')
    assert.equal(job.queryCondition, condition)
    assert.deepEqual(job.deviceJobStatistics, { deviceCount: 1, failedCount: 0, succeededCount: 1, runningCount: 0, pendingCount: 0 })
    const { result: rows } = await reg.createQuery("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'stop-pumps'").next()
    assert.equal(rows.length, 1)
    assert.equal(rows[0].deviceId, 'edge-c')
    assert.equal(rows[0].moduleId, 'pump')
    assert.deepEqual(rows[0].outcome.deviceMethodResponse, { status: 202, payload: { stopped: 7 } })

    // The same condition through iothub-jobs' native JobClient: its rows carry the module too.
    const native = JobClient.fromConnectionString(hub.connectionString, { ca })
    await native.scheduleDeviceMethod('stop-pumps-native', condition, { methodName: 'stop', payload: 8, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 })
    const nativeJob = await native.waitForJob('stop-pumps-native', { pollIntervalMs: 50, timeoutMs: 30_000 })
    assert.equal(nativeJob.deviceJobStatistics.succeededCount, 1)
    const nativeRows = []
    for await (const row of native.listDeviceJobs('stop-pumps-native')) nativeRows.push(row)
    assert.deepEqual(nativeRows.map((r) => [r.deviceId, r.moduleId, r.outcome.deviceMethodResponse.payload]), [['edge-c', 'pump', { stopped: 8 }]])

    await jobs.scheduleTwinUpdate('pump-twins', condition, { etag: '*', properties: { desired: { rpm: 900 } } })
    await finished('pump-twins')
    await until(() => seen.some((d) => d.rpm === 900), 'the job\'s desired patch')
    assert.equal((await body(reg.getModuleTwin('edge-c', 'other'))).properties.desired.rpm, undefined, 'other modules are untouched')
  } finally {
    await client.close()
  }
})

test('module auth: a wrong key, another module\'s key and the parent device\'s key are refused', async () => {
  const reg = registry()
  const device = await body(reg.create({ deviceId: 'edge-d' }))
  const one = await body(reg.addModule({ deviceId: 'edge-d', moduleId: 'one' }))
  await reg.addModule({ deviceId: 'edge-d', moduleId: 'two' })
  const keyOfOne = one.authentication.symmetricKey.primaryKey
  const refused = async (cs) =>
    assert.rejects(openModule(cs), (err) => {
      assert.equal(err.constructor.name, 'UnauthorizedError', `${err.constructor.name}: ${err.message}`)
      return true
    })
  await refused(moduleConnectionString('edge-d', 'one', Buffer.alloc(32, 7).toString('base64')))
  await refused(moduleConnectionString('edge-d', 'two', keyOfOne))
  await refused(moduleConnectionString('edge-d', 'three', keyOfOne))
  // The service checks a module's token against the module's keys only (Azure/iotedge#5155).
  await refused(moduleConnectionString('edge-d', 'one', device.authentication.symmetricKey.primaryKey))
  assert.equal(await connectionState('edge-d', 'one'), 'Disconnected')
  const opened = await openModule(moduleConnectionString('edge-d', 'one', one.authentication.symmetricKey.secondaryKey))
  try {
    assert.equal(await connectionState('edge-d', 'one'), 'Connected', 'the secondary key works too')
  } finally {
    await opened.close()
  }
})
