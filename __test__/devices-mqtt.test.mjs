// Real device code against iothub-emulator: Microsoft's device SDK (azure-iot-device +
// azure-iot-device-mqtt, pinned, unmodified) connects over MQTT on the emulator's TLS port, and
// jobs scheduled through iothub-jobs and through azure-iothub reach its handlers.
//
// azure-iothub passes HostName straight to https.request as `host` and has no CA option, so
// the harness (`shimAzureIothub`) splits the port off and adds the emulator's CA to azure-iothub's
// HTTPS requests. The device SDK gets the CA the
// documented way, `client.setOptions({ ca })`. node_modules is never modified.
import tls from 'node:tls'
import { createHmac } from 'node:crypto'
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { shimAzureIothub, until } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const { JobClient } = require('..')
const iothub = require('azure-iothub')
const { Client: DeviceClient } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')
const { NoRetry } = require('azure-iot-common')
// The MQTT codec the SDK itself is built on (via mqtt), for a raw CONNECT in the keep-alive test.
const mqttPacket = require('mqtt-packet')

let hub
let ca
let jobs

before(async () => {
  hub = await startEmulator({ devices: 2 })
  ca = readFileSync(hub.caPath, 'utf8')
  shimAzureIothub(ca)
  jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
})

after(async () => {
  assert.equal(await hub.stop(), 0, 'the emulator exits 0 on SIGTERM')
})

const registry = () => iothub.Registry.fromConnectionString(hub.connectionString)

/** Creates a device over REST with azure-iothub and returns its connection string. */
async function createDevice(deviceId) {
  const { responseBody: device } = await registry().create({ deviceId })
  const key = device.authentication.symmetricKey.primaryKey
  assert.ok(key && key.length >= 40, 'the hub generated a key')
  const { responseBody: got } = await registry().get(deviceId)
  assert.equal(got.authentication.symmetricKey.primaryKey, key)
  return `HostName=${hub.hostName};DeviceId=${deviceId};SharedAccessKey=${key}`
}

/** Opens a device client with the SDK's Mqtt transport and a reboot handler. */
async function connect(connectionString, { onReboot } = {}) {
  const client = DeviceClient.fromConnectionString(connectionString, Mqtt)
  await client.setOptions({ ca })
  await client.open()
  const calls = []
  client.onDeviceMethod('reboot', (request, response) => {
    calls.push(request.payload)
    const answer = onReboot ? onReboot(request) : { status: 200, payload: { rebooted: true } }
    response.send(answer.status, answer.payload, () => {})
  })
  // onDeviceMethod subscribes asynchronously; callers give connectTimeoutInSeconds for it.
  assert.ok(await isConnected(connectionString), 'the hub shows the device connected')
  return { client, calls }
}

function deviceIdOf(cs) {
  return /DeviceId=([^;]+)/.exec(cs)[1]
}

async function isConnected(cs) {
  const { devices } = await hub.control('GET', 'devices')
  return devices.find((d) => d.deviceId === deviceIdOf(cs))?.connectionState === 'Connected'
}

const finished = (jobId) => jobs.waitForJob(jobId, { pollIntervalMs: 100, timeoutMs: 60_000 })

async function deviceRows(jobId) {
  const rows = []
  for await (const row of jobs.listDeviceJobs(jobId)) rows.push(row)
  return rows
}

test('a method job from iothub-jobs and from azure-iothub reaches every real handler; answers land in the rows', async () => {
  const devices = []
  for (let i = 0; i < 8; i++) {
    const cs = await createDevice(`real-${i}`)
    devices.push(await connect(cs, { onReboot: (req) => ({ status: 200 + i, payload: { id: i, got: req.payload } }) }))
  }
  try {
    const condition = "deviceId IN ['real-0','real-1','real-2','real-3','real-4','real-5','real-6','real-7']"
    await jobs.scheduleDeviceMethod('reboot-native', condition, { methodName: 'reboot', payload: { n: 1 }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 })
    const done = await finished('reboot-native')
    assert.equal(done.deviceJobStatistics.succeededCount, 8)
    const rows = await deviceRows('reboot-native')
    assert.equal(rows.length, 8)
    for (const row of rows) {
      const i = Number(row.deviceId.split('-')[1])
      assert.deepEqual(row.outcome.deviceMethodResponse, { status: 200 + i, payload: { id: i, got: { n: 1 } } })
    }

    const reference = iothub.JobClient.fromConnectionString(hub.connectionString)
    await reference.scheduleDeviceMethod('reboot-reference', condition, { methodName: 'reboot', payload: { n: 2 }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 })
    assert.equal((await finished('reboot-reference')).deviceJobStatistics.succeededCount, 8)
    for (const d of devices) assert.deepEqual(d.calls, [{ n: 1 }, { n: 2 }])
  } finally {
    await Promise.all(devices.map((d) => d.client.close()))
  }
})

test('Client.invokeDeviceMethod round-trips through the device; an offline real device is DeviceNotOnline', async () => {
  const cs = await createDevice('invoke-1')
  const service = iothub.Client.fromConnectionString(hub.connectionString)
  const invoke = (deviceId, params) =>
    new Promise((resolve, reject) => service.invokeDeviceMethod(deviceId, params, (err, result) => (err ? reject(err) : resolve(result))))
  await assert.rejects(invoke('invoke-1', { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 5 }), (err) => {
    // azure-iothub turns a 404 other than DeviceNotFound into a plain Error('Not found').
    assert.equal(err.message, 'Not found')
    assert.equal(err.response.statusCode, 404)
    assert.match(err.responseBody, /ErrorCode:DeviceNotOnline;/)
    return true
  })
  const { client } = await connect(cs, { onReboot: (req) => ({ status: 201, payload: { echo: req.payload } }) })
  try {
    const result = await invoke('invoke-1', { methodName: 'reboot', payload: { x: 'y' }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 })
    assert.deepEqual(result, { status: 201, payload: { echo: { x: 'y' } } })
  } finally {
    await client.close()
  }
  await until(async () => !(await isConnected(cs)), 30_000, 'disconnect')
  await jobs.scheduleDeviceMethod('offline-job', "deviceId = 'invoke-1'", { methodName: 'reboot', responseTimeoutInSeconds: 5 })
  await finished('offline-job')
  const [row] = await deviceRows('offline-job')
  assert.equal(row.status, 'failed')
  assert.equal(row.error.code, 'DeviceNotOnline')
})

test('a twin job fires the desired-property event with the right $version; reported properties reach queries', async () => {
  const cs = await createDevice('twin-1')
  const { client } = await connect(cs)
  try {
    const twin = await client.getTwin()
    const seen = []
    twin.on('properties.desired', (delta) => seen.push(delta))
    await new Promise((resolve, reject) => twin.properties.reported.update({ firmware: '1.0.0' }, (e) => (e ? reject(e) : resolve())))
    const query = registry().createQuery("SELECT * FROM devices WHERE properties.reported.firmware = '1.0.0'")
    const { result } = await new Promise((resolve, reject) => query.nextAsTwin((e, result) => (e ? reject(e) : resolve({ result }))))
    assert.deepEqual(result.map((t) => t.deviceId), ['twin-1'])
    assert.equal(result[0].connectionState, 'Connected')

    await jobs.scheduleTwinUpdate('fw-job', "deviceId = 'twin-1'", { etag: '*', properties: { desired: { firmware: '2.0.0' } } })
    await finished('fw-job')
    await until(() => seen.some((d) => d.firmware === '2.0.0'), 30_000, 'desired event')
    const twinNow = await new Promise((resolve, reject) => registry().getTwin('twin-1', (e, t) => (e ? reject(e) : resolve(t))))
    const delta = seen.find((d) => d.firmware === '2.0.0')
    assert.equal(delta.$version, twinNow.properties.desired.$version)
  } finally {
    await client.close()
  }
})

test('a second connection with the same id drops the first; a wrong key is UnauthorizedError', async () => {
  const cs = await createDevice('dup-1')
  const first = DeviceClient.fromConnectionString(cs, Mqtt)
  // Without retries the SDK reports the drop instead of reconnecting (and dropping the second).
  first.setRetryPolicy(new NoRetry())
  await first.setOptions({ ca })
  const disconnected = new Promise((resolve) => first.on('disconnect', resolve))
  await first.open()
  const second = await connect(cs)
  try {
    await disconnected
    assert.ok(await isConnected(cs), 'the second session holds the device')
  } finally {
    await second.client.close()
    await first.close().catch(() => {})
  }

  const wrong = DeviceClient.fromConnectionString(cs.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`), Mqtt)
  await wrong.setOptions({ ca })
  await assert.rejects(wrong.open(), (err) => {
    assert.equal(err.constructor.name, 'UnauthorizedError')
    return true
  })
})

test('connectionState selects devices in queries and job conditions', async () => {
  const online = await createDevice('state-on')
  await createDevice('state-off')
  const { client, calls } = await connect(online)
  try {
    const query = registry().createQuery("SELECT * FROM devices WHERE connectionState = 'Connected' AND deviceId IN ['state-on', 'state-off']")
    const { result } = await new Promise((resolve, reject) => query.nextAsTwin((e, result) => (e ? reject(e) : resolve({ result }))))
    assert.deepEqual(result.map((t) => t.deviceId), ['state-on'])

    const condition = "connectionState = 'Connected' AND deviceId IN ['state-on', 'state-off']"
    await jobs.scheduleDeviceMethod('state-job', condition, { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 })
    const done = await finished('state-job')
    assert.equal(done.deviceJobStatistics.deviceCount, 1)
    assert.equal(done.deviceJobStatistics.succeededCount, 1)
    assert.deepEqual((await deviceRows('state-job')).map((r) => r.deviceId), ['state-on'])
    assert.equal(calls.length, 1)
  } finally {
    await client.close()
  }
  await until(async () => !(await isConnected(online)), 30_000, 'disconnect')
  const { result } = await new Promise((resolve, reject) =>
    registry().createQuery("SELECT * FROM devices WHERE connectionState = 'Disconnected' AND deviceId = 'state-on'").nextAsTwin((e, result) => (e ? reject(e) : resolve({ result }))))
  assert.equal(result.length, 1, 'a closed client leaves the device Disconnected')
})

test('device faults: swallowed and delayed method answers, a dropped connection, refused CONNACKs', async () => {
  const cs = await createDevice('fault-1')
  const faults = (body) => hub.control('PUT', 'devices/fault-1/faults', body)
  const dev = await connect(cs, { onReboot: () => ({ status: 200, payload: { ok: 1 } }) })
  try {
    // Swallowed: the handler runs, the caller never hears back and the row is GatewayTimeout.
    await faults({ swallowMethodResponses: true })
    assert.equal((await hub.control('GET', 'devices/fault-1/faults')).swallowMethodResponses, true)
    await jobs.scheduleDeviceMethod('swallowed', "deviceId = 'fault-1'", { methodName: 'reboot', responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 10 })
    await finished('swallowed')
    const [lost] = await deviceRows('swallowed')
    assert.equal(lost.status, 'failed')
    assert.equal(lost.error.code, 'GatewayTimeout')
    assert.equal(dev.calls.length, 1, 'the handler was called')

    // Delayed: the answer still arrives within the response timeout, no sooner than the delay.
    await faults({ methodResponseDelayMs: 1500 })
    const started = Date.now()
    await jobs.scheduleDeviceMethod('delayed', "deviceId = 'fault-1'", { methodName: 'reboot', responseTimeoutInSeconds: 20, connectTimeoutInSeconds: 10 })
    await finished('delayed')
    const [late] = await deviceRows('delayed')
    assert.equal(late.status, 'completed')
    assert.deepEqual(late.outcome.deviceMethodResponse, { status: 200, payload: { ok: 1 } })
    assert.ok(Date.now() - started >= 1500, 'the answer was held back')
    await faults({})
  } finally {
    await dev.client.close()
  }

  // Dropped by the hub: the SDK (without retries) sees the disconnect, the hub shows Disconnected.
  const victim = DeviceClient.fromConnectionString(cs, Mqtt)
  victim.setRetryPolicy(new NoRetry())
  await victim.setOptions({ ca })
  const disconnected = new Promise((resolve) => victim.on('disconnect', resolve))
  await victim.open()
  await until(() => isConnected(cs), 30_000, 'connect')
  assert.deepEqual(await hub.control('DELETE', 'devices/fault-1/connection'), { dropped: true })
  await disconnected
  await until(async () => !(await isConnected(cs)), 30_000, 'disconnect after the drop')
  assert.deepEqual(await hub.control('DELETE', 'devices/fault-1/connection'), { dropped: false })
  await victim.close().catch(() => {})

  // The next CONNACK refused, then admitted again.
  await faults({ refuseConnects: 1 })
  const refused = DeviceClient.fromConnectionString(cs, Mqtt)
  refused.setRetryPolicy(new NoRetry())
  await refused.setOptions({ ca })
  await assert.rejects(refused.open())
  assert.equal(await isConnected(cs), false)
  const again = await connect(cs)
  await again.client.close()
})

test('keep-alive: a device silent for 1.5 × its keep-alive is disconnected', async () => {
  const cs = await createDevice('silent-1')
  const key = /SharedAccessKey=([^;]+)/.exec(cs)[1]
  const sr = encodeURIComponent(`${hub.hostName}/devices/silent-1`)
  const se = Math.floor(Date.now() / 1000) + 3600
  const sig = createHmac('sha256', Buffer.from(key, 'base64')).update(`${sr}\n${se}`).digest('base64')
  // mqtt-packet (the codec of the SDK's mqtt package) encodes one CONNECT; after it the
  // socket says nothing, not even PINGREQ.
  const connectPacket = mqttPacket.generate({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, keepalive: 1,
    clientId: 'silent-1',
    username: `${hub.hostName}/silent-1/?api-version=2021-04-12`,
    password: Buffer.from(`SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}`),
  })
  const socket = tls.connect({ host: '127.0.0.1', port: hub.port, ca, servername: '127.0.0.1' })
  const closed = new Promise((resolve) => socket.on('close', resolve))
  const connack = new Promise((resolve) => socket.once('data', resolve))
  socket.on('error', () => {})
  socket.write(connectPacket)
  const ack = await connack
  assert.deepEqual([...ack], [0x20, 0x02, 0x00, 0x00], 'CONNACK accepted')
  assert.ok(await isConnected(cs))
  const start = Date.now()
  await closed
  const silentFor = Date.now() - start
  assert.ok(silentFor >= 1000 && silentFor < 15_000, `closed after ${silentFor} ms of silence`)
  await until(async () => !(await isConnected(cs)), 30_000, 'Disconnected after keep-alive expiry')
})
