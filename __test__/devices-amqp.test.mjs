// Real device code over AMQP against iothub-emulator: Microsoft's device SDK (azure-iot-device +
// azure-iot-device-amqp, pinned, unmodified) connects with its `Amqp` transport on the emulator's
// TLS port (`HostName=127.0.0.1:PORT`; the emulator tells AMQP from HTTPS and MQTT by the first
// byte), authenticates with a CBS put-token, and jobs reach its method and twin links through
// the same device-session core as MQTT devices.
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { createSasDevice, nodeDeviceScenario, refusal, shimAzureIothub, until } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const { JobClient } = require('..')
const iothub = require('azure-iothub')
const { Client: DeviceClient, ModuleClient, Message, SharedAccessSignature: DeviceSAS } = require('azure-iot-device')
const { Amqp } = require('azure-iot-device-amqp')
const { NoRetry } = require('azure-iot-common')

let hub
let ca
let jobs

before(async () => {
  hub = await startEmulator({ devices: 0, args: ['--amqp-port', '0'] })
  ca = readFileSync(hub.caPath, 'utf8')
  shimAzureIothub(ca)
  jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
})

after(async () => {
  assert.equal(await hub.stop(), 0, 'the emulator exits 0 on SIGTERM')
})

const registry = () => iothub.Registry.fromConnectionString(hub.connectionString)
const createDevice = (deviceId) => createSasDevice(hub, deviceId)

async function open(connectionString) {
  const client = DeviceClient.fromConnectionString(connectionString, Amqp)
  await client.setOptions({ ca })
  await client.open()
  return client
}

async function connectionState(deviceId) {
  const { devices } = await hub.control('GET', 'devices')
  return devices.find((d) => d.deviceId === deviceId)?.connectionState
}

test('an Amqp device plays the scenario every SDK and transport passes (method job and its device-job row, twin job, reported property in a query)', async () => {
  const client = DeviceClient.fromConnectionString(await createDevice('amqp-scenario'), Amqp)
  await client.setOptions({ ca })
  await nodeDeviceScenario(client, { hub, jobs, deviceId: 'amqp-scenario' })
})

test('an Amqp device: invokeDeviceMethod round-trips; twin GET; a desired patch arrives with the twin\'s $version; connection state follows the link', async () => {
  const client = await open(await createDevice('amqp-m1'))
  try {
    client.onDeviceMethod('reboot', (request, response) => response.send(201, { got: request.payload }, () => {}))
    // The SDK attaches the method links in the background; the device is connected from its
    // first link on.
    await until(async () => (await connectionState('amqp-m1')) === 'Connected', 10_000, 'the method links')
    const service = iothub.Client.fromConnectionString(hub.connectionString)
    const result = await new Promise((resolve, reject) =>
      service.invokeDeviceMethod('amqp-m1', { methodName: 'reboot', payload: 'x', responseTimeoutInSeconds: 10 }, (e, r) => (e ? reject(e) : resolve(r))))
    assert.deepEqual(result, { status: 201, payload: { got: 'x' } })

    const twin = await client.getTwin()
    assert.deepEqual(twin.properties.reported.$version, 1)
    const seen = []
    twin.on('properties.desired', (delta) => seen.push(delta))
    const before = await new Promise((resolve, reject) => registry().getTwin('amqp-m1', (e, t) => (e ? reject(e) : resolve(t))))
    await new Promise((resolve, reject) => before.update({ properties: { desired: { firmware: 'amqp-2' } } }, (e) => (e ? reject(e) : resolve())))
    await until(() => seen.some((d) => d.firmware === 'amqp-2'), 30_000, 'desired event')
    const after = await new Promise((resolve, reject) => registry().getTwin('amqp-m1', (e, t) => (e ? reject(e) : resolve(t))))
    assert.equal(seen.find((d) => d.firmware === 'amqp-2').$version, after.properties.desired.$version)
  } finally {
    await client.close()
  }
  await until(async () => (await connectionState('amqp-m1')) === 'Disconnected', 10_000, 'disconnect')
})

test('an Amqp device: telemetry is acknowledged and kept by the hub, on the HTTPS port and --amqp-port; a wrong key is UnauthorizedError', async () => {
  const cs = await createDevice('amqp-e1')
  const client = await open(cs)
  try {
    const result = await client.sendEvent(new Message(JSON.stringify({ temperature: 21.5 })))
    assert.equal(result.constructor.name, 'MessageEnqueued')
    const { messages } = await hub.control('GET', 'telemetry')
    const mine = messages.filter((m) => m.deviceId === 'amqp-e1')
    assert.deepEqual(mine.map((m) => JSON.parse(m.body)), [{ temperature: 21.5 }])
  } finally {
    await client.close()
  }

  // The same device on the AMQP port of its own (`--amqp-port`): the host it dials is in its token.
  assert.ok(hub.ready.amqpPort > 0 && hub.ready.amqpPort !== hub.port, 'the ready line has amqpPort')
  const onAmqpPort = await open(cs.replace(/HostName=[^;]+/, `HostName=127.0.0.1:${hub.ready.amqpPort}`))
  try {
    await onAmqpPort.sendEvent(new Message('via-amqp-port'))
    const { messages } = await hub.control('GET', 'telemetry')
    assert.ok(messages.some((m) => m.deviceId === 'amqp-e1' && m.body === 'via-amqp-port'))
  } finally {
    await onAmqpPort.close()
  }

  const wrong = DeviceClient.fromConnectionString(cs.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`), Amqp)
  await wrong.setOptions({ ca })
  const err = await refusal(wrong)
  assert.equal(err.constructor.name, 'UnauthorizedError', String(err))
  await until(async () => (await connectionState('amqp-e1')) === 'Disconnected', 10_000, 'disconnect')
})

test('a ModuleClient over Amqp: module method, desired patch and reported properties through the module links', async () => {
  const reg = registry()
  await reg.create({ deviceId: 'amqp-edge' })
  const { responseBody: mod } = await reg.addModule({ deviceId: 'amqp-edge', moduleId: 'sensor' })
  const cs = `HostName=${hub.hostName};DeviceId=amqp-edge;ModuleId=sensor;SharedAccessKey=${mod.authentication.symmetricKey.primaryKey}`
  const client = ModuleClient.fromConnectionString(cs, Amqp)
  await client.setOptions({ ca })
  await client.open()
  try {
    client.onMethod('reset', (request, response) => response.send(200, { reset: request.payload }, () => {}))
    const twin = await client.getTwin()
    const seen = []
    twin.on('properties.desired', (delta) => seen.push(delta))
    const service = iothub.Client.fromConnectionString(hub.connectionString)
    const params = { methodName: 'reset', payload: { level: 2 }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 }
    const { result } = await service.invokeDeviceMethod('amqp-edge', 'sensor', params)
    assert.deepEqual(result, { status: 200, payload: { reset: { level: 2 } } })

    const { responseBody: before } = await reg.getModuleTwin('amqp-edge', 'sensor')
    await reg.updateModuleTwin('amqp-edge', 'sensor', { properties: { desired: { interval: 5 } } }, before.etag)
    await until(() => seen.some((d) => d.interval === 5), 30_000, 'the desired patch')

    await new Promise((resolve, reject) => twin.properties.reported.update({ firmware: 'amqp-m' }, (e) => (e ? reject(e) : resolve())))
    const { result: twins } = await reg.createQuery("SELECT * FROM devices.modules WHERE properties.reported.firmware = 'amqp-m'").nextAsTwin()
    assert.deepEqual(twins.map((t) => [t.deviceId, t.moduleId, t.connectionState]), [['amqp-edge', 'sensor', 'Connected']])
  } finally {
    await client.close()
  }
})

test('an Amqp device loses its connection to the control API\'s drop and to a newer connection of the same device', async () => {
  const cs = await createDevice('amqp-d1')
  const openWatched = async () => {
    const client = DeviceClient.fromConnectionString(cs, Amqp)
    // Without retries the SDK reports the drop instead of reconnecting.
    client.setRetryPolicy(new NoRetry())
    await client.setOptions({ ca })
    const disconnected = new Promise((resolve) => client.on('disconnect', resolve))
    await client.open()
    await client.sendEvent(new Message('hello')) // attaches a device link: the device is connected
    return { client, disconnected }
  }
  const first = await openWatched()
  assert.equal(await connectionState('amqp-d1'), 'Connected')
  assert.deepEqual(await hub.control('DELETE', 'devices/amqp-d1/connection'), { dropped: true })
  await first.disconnected
  await until(async () => (await connectionState('amqp-d1')) === 'Disconnected', 10_000, 'disconnect')
  await first.client.close().catch(() => {})

  const older = await openWatched()
  const newer = await openWatched()
  try {
    await older.disconnected
    assert.equal(await connectionState('amqp-d1'), 'Connected', 'the newer connection holds the device')
  } finally {
    await newer.client.close()
    await older.client.close().catch(() => {})
  }
})

test('an Amqp device is refused with UnauthorizedError as IoT Hub refuses it (Microsoft\'s e2e authentication cases): invalid key, expired token, malformed and unknown device id', { timeout: 60_000 }, async () => {
  const cs = await createDevice('amqp-auth')
  const key = /SharedAccessKey=([^;]+)/.exec(cs)[1]
  const yesterday = Math.ceil(Date.now() / 1000) - 86400
  const cases = {
    'an invalid primary key': DeviceClient.fromConnectionString(cs.replace(key, Buffer.from('invalidPrimaryKey').toString('base64')), Amqp),
    'an expired token': DeviceClient.fromSharedAccessSignature(DeviceSAS.create(hub.hostName, 'amqp-auth', key, yesterday).toString(), Amqp),
    'an improperly formed device id': DeviceClient.fromConnectionString(cs.replace('DeviceId=amqp-auth', 'DeviceId=amqp-auth#+foo'), Amqp),
    'a device id that does not exist': DeviceClient.fromConnectionString(cs.replace('DeviceId=amqp-auth', 'DeviceId=amqp-authfoo'), Amqp),
  }
  await Promise.all(Object.entries(cases).map(async ([why, client]) => {
    await client.setOptions({ ca })
    try {
      // What the e2e suite does: sendEvent opens the connection, the CBS put-token answers 401.
      const err = await new Promise((resolve) => client.sendEvent(new Message('x'), resolve))
      assert.equal(err?.constructor.name, 'UnauthorizedError', `${why}: ${err}`)
    } finally {
      await client.close().catch(() => {})
    }
  }))
  const log = hub.stderr()
  for (const why of ["the token's signature does not match", 'the token has expired', 'the device or module is unknown']) {
    assert.ok(log.includes(`AMQP put-token refused: ${why}`), why)
  }
  assert.ok(!log.includes(key), 'no key in the log')
})

test('token lifetime over Amqp: a token that lapses closes the connection with UnauthorizedError; the SDK\'s renewed put-tokens keep it open', { timeout: 60_000 }, async () => {
  const cs = await createDevice('amqp-life')
  const key = /SharedAccessKey=([^;]+)/.exec(cs)[1]
  const lapsing = DeviceClient.fromSharedAccessSignature(DeviceSAS.create(hub.hostName, 'amqp-life', key, Math.ceil(Date.now() / 1000) + 2).toString(), Amqp)
  lapsing.setRetryPolicy(new NoRetry())
  const renewing = DeviceClient.fromConnectionString(cs, Amqp)
  renewing.setRetryPolicy(new NoRetry())
  // The SDK renews a token 2 s before its 3 s lifetime ends: a put-token every second.
  await renewing.setOptions({ ca, tokenRenewal: { tokenValidTimeInSeconds: 3, tokenRenewalMarginInSeconds: 2 } })
  await lapsing.setOptions({ ca })
  let renewingDropped = false
  renewing.on('disconnect', () => { renewingDropped = true })
  const lapsed = new Promise((resolve) => lapsing.on('disconnect', resolve))
  try {
    await Promise.all([lapsing.open(), renewing.open()])
    const opened = Date.now()
    const { transportObj: err } = await lapsed
    assert.equal(err?.constructor.name, 'UnauthorizedError', String(err))
    await until(() => hub.stderr().includes('AMQP connection closed: the token for amqp-life expired'), 5_000, 'the log line')
    // Past the end of the renewing client's first token (3 s) and more.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 4_500 - (Date.now() - opened))))
    assert.equal(renewingDropped, false, 'renewed tokens keep the connection')
    assert.equal((await renewing.sendEvent(new Message('still here'))).constructor.name, 'MessageEnqueued')
  } finally {
    await Promise.all([lapsing.close().catch(() => {}), renewing.close()])
  }
})

test('an Amqp connect refused by the control API\'s refuseConnects fault is retried by the SDK (a transient error, not UnauthorizedError)', { timeout: 60_000 }, async () => {
  const cs = await createDevice('amqp-refused')
  await hub.control('PUT', 'devices/amqp-refused/faults', { refuseConnects: 1 })
  const once = DeviceClient.fromConnectionString(cs, Amqp)
  once.setRetryPolicy(new NoRetry())
  await once.setOptions({ ca })
  const err = await refusal(once)
  assert.equal(err.constructor.name, 'InternalServerError', String(err))
  assert.equal((await hub.control('GET', 'devices/amqp-refused/faults')).refuseConnects, 0)

  // With its default retry policy the SDK tries again and gets in.
  await hub.control('PUT', 'devices/amqp-refused/faults', { refuseConnects: 2 })
  const retrying = await open(cs)
  try {
    assert.equal((await hub.control('GET', 'devices/amqp-refused/faults')).refuseConnects, 0)
    assert.equal((await retrying.sendEvent(new Message('in'))).constructor.name, 'MessageEnqueued')
  } finally {
    await retrying.close()
  }
})

test('after the control API drops its connection an Amqp device reconnects by itself (default retry policy) and takes method calls again', { timeout: 60_000 }, async () => {
  const cs = await createDevice('amqp-back')
  const client = await open(cs)
  try {
    client.onDeviceMethod('ping', (request, response) => response.send(200, 'pong', () => {}))
    const service = iothub.Client.fromConnectionString(hub.connectionString)
    // The call waits for the device's method links (connectTimeoutInSeconds).
    const ping = () => new Promise((resolve, reject) =>
      service.invokeDeviceMethod('amqp-back', { methodName: 'ping', payload: null, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 20 }, (e, r) => (e ? reject(e) : resolve(r))))
    // Answered once: both method links are attached (the SDK mishandles a connection lost while
    // it is still attaching one: it waits 45 s, then throws in azure-iot-amqp-base).
    assert.deepEqual(await ping(), { status: 200, payload: 'pong' })
    assert.deepEqual(await hub.control('DELETE', 'devices/amqp-back/connection'), { dropped: true })
    // This call is not lost on the dropped connection: it waits for the device to come back.
    assert.deepEqual(await ping(), { status: 200, payload: 'pong' })
  } finally {
    await client.close()
  }
})
