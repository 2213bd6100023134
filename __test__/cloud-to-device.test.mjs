// Cloud-to-device messages end to end against iothub-emulator, with Microsoft's clients pinned
// and unmodified: azure-iothub's `Client` (AMQP: a policy token on $cbs, `/messages/devicebound`,
// the feedback receiver) sends; Node devices on `Mqtt` and `Amqp` receive (the `message` event)
// and complete, reject or abandon; the feedback receiver gets IoT Hub's feedback records. The
// queue's rules (50 deep, TTL on the emulator's clock, refusals) and its persistence across a
// restart with a data dir are checked through the same clients.
import { createRequire } from 'node:module'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { createSasDevice, shimAzureIothub, until } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')
const { Client: DeviceClient, Message } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')
const { Amqp } = require('azure-iot-device-amqp')
const { Http } = require('azure-iot-device-http')

let hub
let ca
let service
/** The CAs of the emulators this suite starts (each data dir has its own). */
const trusted = []
const feedback = []

/**
 * azure-iothub's AMQP transport connects `amqps://{HostName}` (the port in the host name is
 * honoured) but has no CA option: this (harness only) adds the emulator's CA to TLS connections
 * to the loopback that name none. node_modules is never modified.
 */
function shimTlsCa(caPem) {
  const original = tls.connect
  // rhea calls tls.connect(port, host, options, callback).
  tls.connect = function connectWithCa(port, host, options, ...rest) {
    if (typeof host === 'string' && /^127\./.test(host) && options && !options.ca) {
      options = { ...options, ca: caPem }
    }
    return original.call(this, port, host, options, ...rest)
  }
}

const call = (fn) => new Promise((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r))))

async function openService(connectionString) {
  const client = iothub.Client.fromConnectionString(connectionString)
  await call((cb) => client.open(cb))
  return client
}

/** A feedback receiver collecting every record into `into`, completing each batch. */
async function collectFeedback(client, into) {
  const receiver = await call((cb) => client.getFeedbackReceiver(cb))
  receiver.on('message', (msg) => {
    assert.equal(msg.contentType ?? msg.transportObj?.content_type, 'application/vnd.microsoft.iothub.feedback.json')
    into.push(...JSON.parse(msg.data.toString()))
    receiver.complete(msg, () => {})
  })
}

const feedbackFor = (messageId, records = feedback) =>
  until(() => records.some((r) => r.originalMessageId === messageId), 20_000, `feedback for ${messageId}`)
    .then(() => records.find((r) => r.originalMessageId === messageId))

/** A connected device of `transport` whose received messages land in the returned array. */
async function device(cs, transport, { onMessage, deviceCa = ca } = {}) {
  const client = DeviceClient.fromConnectionString(cs, transport)
  // The Http transport answers setOptions only when a receive policy is among the options.
  await client.setOptions({ ca: deviceCa, ...(transport === Http && { http: { receivePolicy: { interval: 1 } } }) })
  const received = []
  client.on('message', (msg) => {
    received.push(msg)
    ;(onMessage ?? ((m) => client.complete(m, () => {})))(msg)
  })
  await client.open()
  return { client, received }
}

/**
 * A new device of `transport` whose handler settles each message as `decide(messageId, n)` says
 * ('complete', 'reject' or 'abandon'; `n`: how many times that message came); `seen` counts them.
 */
async function settlingDevice(deviceId, transport, decide) {
  const seen = new Map()
  let client
  const opened = await device(await createSasDevice(hub, deviceId), transport, {
    onMessage: (m) => {
      const n = (seen.get(m.messageId) ?? 0) + 1
      seen.set(m.messageId, n)
      client[decide(m.messageId, n)](m, () => {})
    },
  })
  client = opened.client
  return { ...opened, seen }
}

function message(text, props = {}) {
  const m = new Message(text)
  Object.assign(m, props)
  return m
}

before(async () => {
  hub = await startEmulator({ devices: 0 })
  ca = readFileSync(hub.caPath, 'utf8')
  trusted.push(ca)
  shimAzureIothub(trusted)
  shimTlsCa(trusted)
  service = await openService(hub.connectionString)
  await collectFeedback(service, feedback)
})

after(async () => {
  await call((cb) => service.close(cb))
  assert.equal(await hub.stop(), 0, 'the emulator exits 0 on SIGTERM')
})

for (const [name, transport] of [['Mqtt', Mqtt], ['Amqp', Amqp]]) {
  test(`Client.send reaches an ${name} device with its properties; complete gives Success feedback`, async () => {
    const deviceId = `c2d-${name.toLowerCase()}`
    const { client, received } = await device(await createSasDevice(hub, deviceId), transport)
    try {
      const m = message('{"cmd":"reboot"}', { messageId: `${name}-1`, correlationId: 'corr-1', ack: 'full' })
      m.properties.add('color', 'blue & green/=?')
      // The SDK subscribes in the background after open: send until the device listens is
      // not needed, the queue holds the message until then.
      await call((cb) => service.send(deviceId, m, cb))
      await until(() => received.length === 1, 20_000, 'the message event')
      const got = received[0]
      assert.equal(got.data.toString(), '{"cmd":"reboot"}')
      assert.equal(got.messageId, `${name}-1`)
      assert.equal(got.correlationId, 'corr-1')
      assert.equal(got.to, `/devices/${deviceId}/messages/devicebound`)
      assert.equal(got.properties.getValue('color'), 'blue & green/=?')
      const record = await feedbackFor(`${name}-1`)
      assert.equal(record.statusCode, 'Success')
      assert.equal(record.description, 'Success')
      assert.equal(record.deviceId, deviceId)
      assert.match(record.deviceGenerationId, /^\d+$/)
      assert.ok(!Number.isNaN(Date.parse(record.enqueuedTimeUtc)))
    } finally {
      await client.close()
    }
  })
}

test('an Amqp device rejects (Rejected feedback) and abandons (delivered again)', async () => {
  const { client, received, seen } = await settlingDevice('c2d-settle', Amqp, (id, n) =>
    id === 'reject-me' ? 'reject' : n === 1 ? 'abandon' : 'complete')
  try {
    await call((cb) => service.send('c2d-settle', message('r', { messageId: 'reject-me', ack: 'negative' }), cb))
    assert.equal((await feedbackFor('reject-me')).statusCode, 'Rejected')
    await call((cb) => service.send('c2d-settle', message('a', { messageId: 'abandon-me', ack: 'positive' }), cb))
    assert.equal((await feedbackFor('abandon-me')).statusCode, 'Success')
    assert.equal(seen.get('abandon-me'), 2, 'abandoned once, then delivered again and completed')
    assert.equal(received.length, 3)
  } finally {
    await client.close()
  }
})

test('an Http device polls its queue (interval 1 s): complete, reject (Rejected feedback) and abandon (received again)', async () => {
  const { client, received, seen } = await settlingDevice('c2d-http', Http, (id, n) =>
    id === 'http-reject' ? 'reject' : id === 'http-abandon' && n === 1 ? 'abandon' : 'complete')
  try {
    const first = message('over http', { messageId: 'http-complete', correlationId: 'h', ack: 'full' })
    first.properties.add('color', 'red')
    await call((cb) => service.send('c2d-http', first, cb))
    await call((cb) => service.send('c2d-http', message('no', { messageId: 'http-reject', ack: 'full' }), cb))
    await call((cb) => service.send('c2d-http', message('later', { messageId: 'http-abandon', ack: 'full' }), cb))
    assert.equal((await feedbackFor('http-complete')).statusCode, 'Success')
    assert.equal((await feedbackFor('http-reject')).statusCode, 'Rejected')
    assert.equal((await feedbackFor('http-abandon')).statusCode, 'Success')
    assert.equal(seen.get('http-abandon'), 2, 'abandoned once, then received again')
    const got = received.find((m) => m.messageId === 'http-complete')
    assert.equal(got.data.toString(), 'over http')
    assert.equal(got.correlationId, 'h')
    assert.equal(got.to, '/devices/c2d-http/messages/devicebound')
    // HTTP carries application properties as iothub-app-* headers; the SDK keeps the prefix.
    assert.equal(got.properties.getValue('iothub-app-color'), 'red')
  } finally {
    await client.close()
  }
})

test('a message waits in the queue while the device is offline and arrives when it connects', async () => {
  const cs = await createSasDevice(hub, 'c2d-offline')
  await call((cb) => service.send('c2d-offline', message('later', { messageId: 'offline-1' }), cb))
  const { client, received } = await device(cs, Mqtt)
  try {
    await until(() => received.length === 1, 20_000, 'the queued message')
    assert.equal(received[0].messageId, 'offline-1')
    assert.equal(received[0].data.toString(), 'later')
  } finally {
    await client.close()
  }
})

test('refusals: unknown device (DeviceNotFoundError), the 51st queued message (DeviceMaximumQueueDepthExceededError, until a purge), a wrong service key', async () => {
  await assert.rejects(call((cb) => service.send('no-such-device', message('x'), cb)), (e) => {
    assert.equal(e.constructor.name, 'DeviceNotFoundError')
    return true
  })
  await createSasDevice(hub, 'c2d-full')
  for (let i = 0; i < 50; i++) await call((cb) => service.send('c2d-full', message(`m${i}`), cb))
  await assert.rejects(call((cb) => service.send('c2d-full', message('one too many'), cb)), (e) => {
    assert.equal(e.constructor.name, 'DeviceMaximumQueueDepthExceededError')
    return true
  })
  // Purge (REST `DELETE /devices/{id}/commands`; azure-iothub has no method for it, its own
  // REST client sends it) empties the queue.
  const rest = iothub.Registry.fromConnectionString(hub.connectionString)._restApiClient
  const purged = await call((cb) => rest.executeApiCall('DELETE', '/devices/c2d-full/commands?api-version=2021-04-12', {}, null, cb))
  assert.deepEqual(purged, { totalMessagesPurged: 50, deviceId: 'c2d-full' })
  await call((cb) => service.send('c2d-full', message('room again'), cb))
  const wrongKey = hub.connectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.from('wrong key').toString('base64')}`)
  // The put-token answer is 401: azure-iothub wraps the UnauthorizedError it makes of it.
  await assert.rejects(openService(wrongKey), (e) => {
    assert.equal(e.amqpError?.constructor.name, 'UnauthorizedError')
    assert.match(e.amqpError.message, /signature does not match/)
    return true
  })
})

test('a delivered message the device never settles is delivered again when its 1-minute lock times out (emulator clock)', async () => {
  const { client, received } = await device(await createSasDevice(hub, 'c2d-lock'), Amqp, { onMessage: () => {} })
  try {
    await call((cb) => service.send('c2d-lock', message('once more', { messageId: 'lock-1', ack: 'positive' }), cb))
    await until(() => received.length === 1, 20_000, 'the first delivery')
    await hub.control('POST', 'time/advance', { seconds: 59 })
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(received.length, 1, 'still locked')
    await hub.control('POST', 'time/advance', { seconds: 2 })
    await until(() => received.length === 2, 20_000, 'the delivery after the lock timed out')
    await call((cb) => client.complete(received[1], cb))
    assert.equal((await feedbackFor('lock-1')).statusCode, 'Success')
  } finally {
    await client.close()
  }
})

test('a message not delivered within its TTL expires (emulator clock): Expired feedback', async () => {
  await createSasDevice(hub, 'c2d-ttl')
  await call((cb) => service.send('c2d-ttl', message('stale', { messageId: 'ttl-1', ack: 'negative' }), cb))
  // The default time to live is one hour.
  await hub.control('POST', 'time/advance', { seconds: 3601 })
  const record = await feedbackFor('ttl-1')
  assert.equal(record.statusCode, 'Expired')
  assert.equal(record.deviceId, 'c2d-ttl')
})

test('queued messages survive a restart with a data dir', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-emulator-c2d-'))
  try {
    const first = await startEmulator({ devices: 0, args: ['--data-dir', dir] })
    // The CA is kept in the data dir: the second start has the same.
    const storedCa = readFileSync(first.caPath, 'utf8')
    trusted.push(storedCa)
    const firstService = await openService(first.connectionString)
    await createSasDevice(first, 'c2d-kept')
    await call((cb) => firstService.send('c2d-kept', message('kept', { messageId: 'kept-1', correlationId: 'k' }), cb))
    await call((cb) => firstService.close(cb))
    assert.equal(await first.stop(), 0)

    const second = await startEmulator({ devices: 0, args: ['--data-dir', dir] })
    try {
      const registry = iothub.Registry.fromConnectionString(second.connectionString)
      const { responseBody } = await registry.get('c2d-kept')
      const cs = `HostName=${second.hostName};DeviceId=c2d-kept;SharedAccessKey=${responseBody.authentication.symmetricKey.primaryKey}`
      const { client, received } = await device(cs, Mqtt, { deviceCa: storedCa })
      try {
        await until(() => received.length === 1, 20_000, 'the stored message')
        assert.equal(received[0].messageId, 'kept-1')
        assert.equal(received[0].correlationId, 'k')
      } finally {
        await client.close()
      }
    } finally {
      assert.equal(await second.stop(), 0)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
