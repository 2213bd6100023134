// The hub behaviours Microsoft's own e2e suite (Azure/azure-iot-sdk-node e2etests, run by hand
// with scripts/e2e/run.mjs) relies on, checked here with the pinned, unmodified SDKs:
// azure-iothub 1.16.6, azure-iot-device 1.18.4 with azure-iot-device-mqtt 1.16.4 and
// azure-iot-device-http 1.14.4. Each test names the behaviour, not a Microsoft test.
import https from 'node:https'
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { shimAzureIothub } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')
const { Client: DeviceClient, SharedAccessSignature: DeviceSas } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')
const { Http } = require('azure-iot-device-http')
const { Message, errors, anHourFromNow } = require('azure-iot-common')

let hub
let ca

before(async () => {
  hub = await startEmulator()
  ca = readFileSync(hub.caPath, 'utf8')
  shimAzureIothub(ca)
})

after(async () => {
  assert.equal(await hub.stop(), 0)
})

const registry = () => iothub.Registry.fromConnectionString(hub.connectionString)
const service = () => iothub.Client.fromConnectionString(hub.connectionString)

async function createDevice(deviceId, extra = {}) {
  const { responseBody } = await registry().create({ deviceId, ...extra })
  return responseBody
}

function connectionString(device) {
  return `HostName=${hub.hostName};DeviceId=${device.deviceId};SharedAccessKey=${device.authentication.symmetricKey.primaryKey}`
}

async function openMqtt(device) {
  const client = DeviceClient.fromConnectionString(connectionString(device), Mqtt)
  await client.setOptions({ ca })
  await client.open()
  return client
}

/** Resolves with the first value `next()` gives that `accept` takes, within `ms`. */
function waitFor(events, accept, ms = 10_000, what = 'event') {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms: ${JSON.stringify(events)}`)), ms)
    const check = () => {
      const hit = events.find(accept)
      if (hit !== undefined) {
        clearTimeout(timer)
        resolve(hit)
      } else setTimeout(check, 20)
    }
    check()
  })
}

/** Desired properties without the `$` metadata, as a plain object. */
/** azure-iothub turns a 400 into ArgumentError; the service's code is in the body. */
const invalidScope = (e) => /ErrorCode:InvalidDeviceScope;/.test(e.responseBody)

const plain = (desired) => JSON.parse(JSON.stringify(desired, (k, v) => (k.startsWith('$') || typeof v === 'function' ? undefined : v)))

test('a device that renews its SAS token (the SDK reconnects with a persistent session) still gets direct methods', async () => {
  const device = await createDevice('renewing-device')
  const key = device.authentication.symmetricKey.primaryKey
  const sasToken = () => DeviceSas.create(hub.hostName, device.deviceId, key, anHourFromNow()).toString()
  // Renewal is for clients made from a token (as Microsoft's suite does).
  const client = DeviceClient.fromSharedAccessSignature(sasToken(), Mqtt)
  await client.setOptions({ ca })
  await client.open()
  client.onDeviceMethod('ping', (request, response) => response.send(200, { pong: request.payload }, () => {}))
  const call = () => service().invokeDeviceMethod(device.deviceId, { methodName: 'ping', payload: 1, connectTimeoutInSeconds: 10, responseTimeoutInSeconds: 10 })
  assert.deepEqual((await call()).result, { status: 200, payload: { pong: 1 } })

  await new Promise((resolve, reject) => client.updateSharedAccessSignature(sasToken(), (err) => (err ? reject(err) : resolve())))
  // The SDK reconnected without subscribing again: the hub kept the session's subscriptions.
  assert.deepEqual((await call()).result, { status: 200, payload: { pong: 1 } })
  await client.close()
})

test('desired-property notifications carry the patch as applied, with a new $version every time', async () => {
  const device = await createDevice('desired-device')
  const client = await openMqtt(device)
  const twin = await client.getTwin()
  const patches = []
  twin.on('properties.desired', (patch) => patches.push(JSON.parse(JSON.stringify(patch))))
  const start = twin.properties.desired.$version
  const update = (desired, etag = '*') => registry().updateTwin(device.deviceId, { properties: { desired } }, etag)

  await waitFor(patches, (p) => p.$version === start, 10_000, 'initial desired event')
  await update({ foo: 1, bar: { baz: 2, keep: 3 } })
  await waitFor(patches, (p) => p.$version === start + 1)
  // The same values again: the service still bumps $version and tells the device.
  await update({ foo: 1, bar: { baz: 2, keep: 3 } })
  await waitFor(patches, (p) => p.$version === start + 2, 10_000, 'notification of an unchanged patch')
  // A merge patch with a null deletion is sent as applied; the device merges it.
  const { responseBody: current } = await registry().getTwin(device.deviceId)
  await update({ bar: { baz: 9, keep: null } }, current.etag)
  const merged = await waitFor(patches, (p) => p.$version === start + 3)
  assert.deepEqual(merged, { bar: { baz: 9, keep: null }, $version: start + 3 })
  assert.deepEqual(plain(twin.properties.desired), { foo: 1, bar: { baz: 9 } })

  // `desired: null` removes every desired property: the device is told each key is gone.
  await update(null)
  const cleared = await waitFor(patches, (p) => p.$version === start + 4)
  assert.deepEqual(cleared, { foo: null, bar: null, $version: start + 4 })
  assert.deepEqual(plain(twin.properties.desired), {})
  const { responseBody: after } = await registry().getTwin(device.deviceId)
  assert.deepEqual(plain(after.properties.desired), {})
  assert.equal(after.properties.desired.$version, start + 4)
  await client.close()
})

test('a device that reconnects reads the twin as the service left it while it was away', async () => {
  const device = await createDevice('away-device')
  let client = await openMqtt(device)
  await registry().updateTwin(device.deviceId, { properties: { desired: { a: 1, b: { c: 2 } } } }, '*')
  await client.close()
  await registry().updateTwin(device.deviceId, { properties: { desired: { b: { c: 3 } } }, tags: { t: 1 } }, '*')
  client = await openMqtt(device)
  const twin = await client.getTwin()
  assert.deepEqual(plain(twin.properties.desired), { a: 1, b: { c: 3 } })
  assert.equal(twin.properties.desired.$version, 3)
  await client.close()
})

test('Registry.list and GET /devices?top=N list identities in id order', async () => {
  for (const id of ['list-b', 'list-a', 'list-c']) await createDevice(id)
  const { responseBody: all } = await registry().list()
  const ids = all.map((d) => d.deviceId)
  assert.ok(['list-a', 'list-b', 'list-c'].every((id) => ids.includes(id)), ids.join())
  assert.deepEqual(ids, [...ids].sort())
  assert.ok(all.every((d) => d.authentication?.symmetricKey?.primaryKey && d.etag))

  const [key] = /SharedAccessKey=([^;]+)/.exec(hub.connectionString).slice(1)
  const token = iothub.SharedAccessSignature.create(hub.hostName, 'iothubowner', key, anHourFromNow()).toString()
  const get = (query) => new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: hub.port, ca, path: `/devices?api-version=2021-04-12${query}`, headers: { authorization: token } }, (res) => {
      let body = ''
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }))
    }).on('error', reject)
  })
  const top = await get('&top=2')
  assert.equal(top.status, 200)
  assert.deepEqual(top.body.map((d) => d.deviceId), ids.slice(0, 2))
  // Outside 1-1000 counts as 1000, as the service documents.
  assert.equal((await get('&top=0')).body.length, ids.length)
  assert.equal((await get('&top=x')).status, 400)
})

test('IoT Edge devices get a generated, immutable scope; leaves and child Edges name a parent scope', async () => {
  const edge = await createDevice('edge-root', { capabilities: { iotEdge: true } })
  assert.equal(edge.capabilities.iotEdge, true)
  assert.match(edge.deviceScope, /^ms-azure-iot-edge:\/\/edge-root-\d+$/)
  const { responseBody: edgeTwin } = await registry().getTwin('edge-root')
  assert.equal(edgeTwin.capabilities.iotEdge, true)

  const leaf = await createDevice('edge-leaf', { deviceScope: edge.deviceScope })
  assert.equal(leaf.deviceScope, edge.deviceScope)
  assert.deepEqual(leaf.parentScopes, [edge.deviceScope])
  await assert.rejects(registry().update({ ...leaf, deviceScope: 'not-a-scope' }), invalidScope)
  await assert.rejects(createDevice('edge-orphan', { deviceScope: 'ms-azure-iot-edge://nobody-1' }), invalidScope)

  const child = await createDevice('edge-child', { capabilities: { iotEdge: true }, parentScopes: [edge.deviceScope] })
  assert.match(child.deviceScope, /^ms-azure-iot-edge:\/\/edge-child-\d+$/)
  assert.deepEqual(child.parentScopes, [edge.deviceScope])
  const grandLeaf = await createDevice('edge-grand-leaf', { deviceScope: child.deviceScope, parentScopes: [child.deviceScope] })
  assert.deepEqual(grandLeaf.parentScopes, [child.deviceScope])
  await assert.rejects(registry().update({ ...child, deviceScope: edge.deviceScope }), invalidScope)
  await assert.rejects(createDevice('edge-two-parents', { capabilities: { iotEdge: true }, parentScopes: [edge.deviceScope, child.deviceScope] }), invalidScope)
})

test('bulk identity operations: add, update, remove, and per-device errors', async () => {
  const ids = ['bulk-0', 'bulk-1', 'bulk-2']
  const added = await registry().addDevices(ids.map((deviceId) => ({ deviceId, status: 'disabled' })))
  assert.deepEqual(added.responseBody, { isSuccessful: true, errors: [], warnings: [] })
  for (const id of ids) assert.equal((await registry().get(id)).responseBody.status, 'disabled')

  await registry().updateDevices(ids.map((deviceId) => ({ deviceId, status: 'enabled' })), true)
  for (const id of ids) assert.equal((await registry().get(id)).responseBody.status, 'enabled')

  // One item fails alone: bulk-3 is created, bulk-0 is reported as already there.
  const err = await registry().addDevices([{ deviceId: 'bulk-0' }, { deviceId: 'bulk-3' }]).then(() => null, (e) => e)
  assert.ok(err, 'a partly failed bulk operation is an error')
  const result = JSON.parse(err.responseBody)
  assert.equal(result.isSuccessful, false)
  assert.deepEqual(result.errors.map((e) => [e.deviceId, e.errorCode]), [['bulk-0', 'DeviceAlreadyExists']])
  assert.equal((await registry().get('bulk-3')).responseBody.deviceId, 'bulk-3')

  // IfMatchETag: a stale etag fails that device only.
  const stale = await registry().removeDevices([{ deviceId: 'bulk-3', etag: 'stale' }], false).then(() => null, (e) => e)
  assert.deepEqual(JSON.parse(stale.responseBody).errors.map((e) => e.errorCode), ['PreconditionFailed'])

  await registry().removeDevices([...ids, 'bulk-3'].map((deviceId) => ({ deviceId })), true)
  for (const id of [...ids, 'bulk-3']) {
    await assert.rejects(registry().get(id), (e) => e.name === 'DeviceNotFoundError')
  }
})

test('the device HTTP transport sends telemetry and polls cloud-to-device messages with the device token', async () => {
  const device = await createDevice('http-device')
  const client = DeviceClient.fromConnectionString(connectionString(device), Http)
  await client.sendEvent(new Message('hello over https'))
  await client.sendEventBatch([new Message('one'), new Message('two')])
  const { messages } = await hub.control('GET', 'telemetry')
  assert.deepEqual(messages.filter((t) => t.deviceId === 'http-device').map((t) => t.body), ['hello over https', 'one', 'two'])

  // Polling for cloud-to-device messages finds none (the emulator queues none), without error.
  const polled = new Promise((resolve, reject) => {
    client.on('error', reject)
    setTimeout(resolve, 500)
  })
  client.on('message', () => assert.fail('no cloud-to-device message is ever queued'))
  await polled
  await client.close()

  // A client made from a connection string holds a token-renewal timer until it is closed.
  const refused = async (cs, check) => {
    const other = DeviceClient.fromConnectionString(cs, Http)
    await assert.rejects(other.sendEvent(new Message('x')), check)
    await other.close()
  }
  await refused(`HostName=${hub.hostName};DeviceId=http-device;SharedAccessKey=${Buffer.from('wrong').toString('base64')}`, (e) => e instanceof errors.UnauthorizedError)
  // Over HTTP an unknown device is DeviceNotFound (MQTT refuses the CONNECT as unauthorized).
  await refused(`HostName=${hub.hostName};DeviceId=nobody;SharedAccessKey=${device.authentication.symmetricKey.primaryKey}`, (e) => e instanceof errors.DeviceNotFoundError)
})
