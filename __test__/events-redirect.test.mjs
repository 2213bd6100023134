// The IoT Hub endpoint's redirect to the built-in Event Hubs-compatible endpoint, as the service
// does it: a reader attached at `messages/events/…` with a shared access policy's login (SASL
// PLAIN `<policy>@sas.root.<hub>`, or a CBS put-token of the policy for the hub) is detached with
// `amqp:link:redirect`, whose info (`hostname`, `network-host`, `port`, `address`) names the
// events endpoint. Microsoft's sample (@azure/event-hubs' iothubConnectionString, in
// fixtures/iothub-connection-string-sample.cjs) runs unchanged but for where it reads the
// connection string, on --standard-ports (127.0.0.81, root) in a child process with
// NODE_EXTRA_CA_CERTS, and reads a device's telemetry with the EventHubConsumerClient it builds
// from the redirect; so does azure-eventhub's iot_hub_connection_string_receive_async.py (uamqp
// follows the redirect, pyamqp reads; python/iot_hub_connection_string_receive.py). Off the
// standard ports the redirect names the events port (the sample's steps with that hub's port),
// also over WebSockets and after a CBS put-token; refusals: a wrong key, an unknown policy,
// another policy's token, the policy's token for a device, an expired token, a device's token,
// a device's login.
//
// Clients: rhea-promise 3.0.3 (the sample's), @azure/event-hubs 6.0.4, azure-iot-device-mqtt
// (pinned in package.json; ws, @azure/event-hubs' own, as events.test.mjs uses it); uamqp 1.6.11
// and azure-eventhub 5.15.1 (__test__/python/requirements.txt).
import { execFile } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { trustOverTls } from './helpers/device-sdks.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'
import { hasPython3, pythonSdk } from '../scripts/python-sdk.mjs'

const require = createRequire(import.meta.url)
const { Connection, ReceiverEvents, parseConnectionString } = require('rhea-promise')
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs')
const { Client: DeviceClient, Message } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')

const HERE = path.dirname(fileURLToPath(import.meta.url))
const SAMPLE = path.join(HERE, 'fixtures', 'iothub-connection-string-sample.cjs')
const PYTHON_SAMPLE = path.join(HERE, 'python', 'iot_hub_connection_string_receive.py')
const STANDARD_HOST = '127.0.0.81'

let hub

before(async () => {
  hub = await startEmulator({ devices: 0 })
  trustOverTls(hub.ca)
})

after(async () => {
  assert.equal(await hub.stop(), 0, 'the emulator exits 0 on SIGTERM')
})

/** A SAS token as IoT Hub signs it (HMAC with the key's base64-decoded bytes); `policy` is its skn. */
function sasToken(resource, key, policy, expirySecs = Math.ceil(Date.now() / 1000) + 300) {
  const sr = encodeURIComponent(resource)
  const sig = encodeURIComponent(createHmac('sha256', Buffer.from(key, 'base64')).update(`${sr}\n${expirySecs}`).digest('base64'))
  return `SharedAccessSignature sr=${sr}&sig=${sig}&se=${expirySecs}${policy ? `&skn=${policy}` : ''}`
}

const policyOf = (connectionString) => parseConnectionString(connectionString)

/** An AMQP connection to `hub`'s AMQP listener over TLS (SASL PLAIN when `username` is given). */
async function open(target, { username, password } = {}) {
  const connection = new Connection({
    transport: 'tls',
    host: target.host,
    hostname: target.host,
    port: target.ready.amqpPort ?? target.port,
    ca: target.ca,
    reconnect: false,
    ...(username ? { username, password } : {}),
  })
  await connection.open()
  return connection
}

/**
 * Attaches a receiver at `address` and resolves with the error it is detached with (its handler
 * given with the attach, so a detach right after the attach is not missed).
 */
function detachedWith(connection, address) {
  return new Promise((resolve, reject) => {
    connection.createReceiver({
      source: { address },
      onMessage: () => reject(new Error(`a message on ${address}`)),
      onError: (context) => resolve(context.receiver.error),
    }).catch(reject)
  })
}

/** Sends `body` as telemetry from a new device over MQTT. */
async function sendTelemetry(target, deviceId, body) {
  const { connectionString } = await target.createDevice(deviceId)
  const client = DeviceClient.fromConnectionString(connectionString, Mqtt)
  await client.setOptions({ ca: target.ca })
  await client.open()
  try {
    await client.sendEvent(new Message(JSON.stringify(body)))
  } finally {
    await client.close()
  }
}

/** Reads events from every partition until one has `body`. */
async function readUntil(eventHubsConnectionString, body) {
  const client = new EventHubConsumerClient('$Default', eventHubsConnectionString)
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no event within 20 s')), 20_000)
      const subscription = client.subscribe({
        async processEvents(events) {
          const found = events.find((e) => JSON.stringify(e.body) === JSON.stringify(body) || String(e.body) === JSON.stringify(body))
          if (found) {
            clearTimeout(timer)
            await subscription.close()
            resolve(found)
          }
        },
        async processError() {},
      }, { startPosition: earliestEventPosition })
    })
  } finally {
    await client.close()
  }
}

/**
 * A device of `std` sends `{ sample }`, then the sample (`file` with `args` and `env` added) runs;
 * it must exit 0 having read that event. Resolves with the Event Hubs `{ endpoint, entityPath }`
 * it built from the redirect.
 */
async function sampleReads(std, sample, file, args, env) {
  await sendTelemetry(std, `redirect-${sample}`, { sample })
  const { stdout, stderr, code } = await new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: 90_000 }, (error, stdout, stderr) =>
      resolve({ stdout, stderr, code: error ? error.code ?? error.signal : 0 }))
  })
  assert.equal(code, 0, `the sample exits 0; stderr: ${stderr}`)
  const [converted, ...events] = stdout.trim().split('\n').map((line) => JSON.parse(line))
  assert.ok(events.some((e) => e.body?.sample === sample), stdout)
  return converted
}

const standardSkip = prerequisite(process.getuid?.() !== 0 && 'port 5671 with --standard-ports needs root (CI runs as root)')
test('Microsoft\'s iothubConnectionString sample (@azure/event-hubs) reads a device\'s telemetry from the IoT Hub connection string on --standard-ports', { skip: standardSkip }, async () => {
  const std = await startEmulator({ devices: 0, args: ['--standard-ports', '--host', STANDARD_HOST] })
  try {
    const env = { IOTHUB_CONNECTION_STRING: std.connectionString, NODE_EXTRA_CA_CERTS: std.caPath }
    const converted = await sampleReads(std, 'node', process.execPath, [SAMPLE], env)
    // The service's form: the plain host (its 5671), the entity cut out of the redirect's address.
    assert.deepEqual(converted, { endpoint: `sb://${STANDARD_HOST}/`, entityPath: 'iothub-emulator' })
  } finally {
    assert.equal(await std.stop(), 0)
  }
})

const pythonSkip = standardSkip || prerequisite(!hasPython3() && 'python3 is not installed')
test('Microsoft\'s iot_hub_connection_string_receive_async.py sample (azure-eventhub, uamqp) reads a device\'s telemetry on --standard-ports', { skip: pythonSkip }, async () => {
  const python = pythonSdk()
  const std = await startEmulator({ devices: 0, args: ['--standard-ports', '--host', STANDARD_HOST, '--hostname', 'pyhub.azure-devices.net'] })
  try {
    const converted = await sampleReads(std, 'python', python, [PYTHON_SAMPLE, std.caPath], { IOTHUB_CONN_STR: std.connectionString })
    // The entity cut out of the redirect's `…:5671/<name>/ConsumerGroups/…`.
    assert.deepEqual(converted, { endpoint: `sb://${STANDARD_HOST}/`, entityPath: 'pyhub' })
  } finally {
    assert.equal(await std.stop(), 0)
  }
})

test('on --standard-ports the redirect\'s info is the service\'s: hostname, network-host, port 5671, amqps address', { skip: standardSkip }, async () => {
  const std = await startEmulator({ devices: 0, args: ['--standard-ports', '--host', STANDARD_HOST, '--hostname', 'myhub.azure-devices.net'] })
  try {
    const { HostName, SharedAccessKeyName, SharedAccessKey } = policyOf(std.connectionString)
    const connection = await open(std, {
      username: `${SharedAccessKeyName}@sas.root.myhub`,
      password: sasToken(HostName, SharedAccessKey, SharedAccessKeyName),
    })
    try {
      const error = await detachedWith(connection, '/messages/events/ConsumerGroups/$Default/Partitions/0')
      assert.equal(error.condition, 'amqp:link:redirect')
      assert.deepEqual({ ...error.info }, {
        hostname: STANDARD_HOST,
        'network-host': STANDARD_HOST,
        port: 5671,
        address: `amqps://${STANDARD_HOST}:5671/myhub/ConsumerGroups/$Default/Partitions/0`,
      })
    } finally {
      await connection.close()
    }
  } finally {
    assert.equal(await std.stop(), 0)
  }
})

test('off the standard ports a policy\'s SASL PLAIN login is redirected to the events port, where an EventHubConsumerClient built from the info reads', async () => {
  const { HostName, SharedAccessKeyName, SharedAccessKey } = policyOf(hub.connectionString)
  const eventsPort = hub.ready.eventsPort
  const connection = await open(hub, {
    // The sample's steps: hub name = first label of HostName (`127` here), token for HostName/messages/events.
    username: `${SharedAccessKeyName}@sas.root.${HostName.split('.')[0]}`,
    password: sasToken(`${HostName}/messages/events`, SharedAccessKey, SharedAccessKeyName),
  })
  let error
  try {
    error = await detachedWith(connection, `amqps://${HostName}/messages/events/$management`)
    const bare = await detachedWith(connection, 'messages/events/')
    assert.equal(bare.info.address, `amqps://127.0.0.1:${eventsPort}/iothub-emulator/`)
  } finally {
    await connection.close()
  }
  assert.equal(error.condition, 'amqp:link:redirect')
  assert.deepEqual({ ...error.info }, {
    hostname: `127.0.0.1:${eventsPort}`,
    'network-host': '127.0.0.1',
    port: eventsPort,
    address: `amqps://127.0.0.1:${eventsPort}/iothub-emulator/$management`,
  })
  const [, entity] = /:\d+\/(.*)\/\$management/i.exec(error.info.address)
  await sendTelemetry(hub, 'redirect-off-standard', { off: 'standard' })
  const eventHubsConnectionString = `Endpoint=sb://${error.info.hostname}/;EntityPath=${entity};SharedAccessKeyName=${SharedAccessKeyName};SharedAccessKey=${SharedAccessKey}`
  const event = await readUntil(eventHubsConnectionString, { off: 'standard' })
  assert.equal(event.systemProperties['iothub-connection-device-id'], 'redirect-off-standard')
})

test('over WebSockets (the websockets sample\'s /$servicebus/websocket, and /$iothub/websocket) the same redirect', async () => {
  const WebSocket = require('ws')
  const { HostName, SharedAccessKeyName, SharedAccessKey } = policyOf(hub.connectionString)
  for (const wsPath of ['/$servicebus/websocket', '/$iothub/websocket']) {
    const connection = new Connection({
      transport: 'tls',
      host: hub.host,
      hostname: hub.host,
      port: hub.port,
      reconnect: false,
      username: `${SharedAccessKeyName}@sas.root.127`,
      password: sasToken(`${HostName}/messages/events`, SharedAccessKey, SharedAccessKeyName),
      webSocketOptions: {
        webSocket: WebSocket,
        protocol: ['AMQPWSB10'],
        url: `wss://${HostName}${wsPath}`,
        options: { ca: hub.ca },
      },
    })
    await connection.open()
    try {
      const error = await detachedWith(connection, `amqps://${HostName}/messages/events/$management`)
      assert.equal(error.condition, 'amqp:link:redirect', wsPath)
      assert.equal(error.info.hostname, `127.0.0.1:${hub.ready.eventsPort}`, wsPath)
    } finally {
      await connection.close()
    }
  }
})

test('a CBS put-token of the policy for the hub, then a reader at messages/events: the same redirect', async () => {
  const { HostName, SharedAccessKeyName, SharedAccessKey } = policyOf(hub.connectionString)
  const connection = await open(hub)
  try {
    const { sender, receiver } = await connection.createRequestResponseLink({ target: { address: '$cbs' } }, { source: { address: '$cbs' } })
    const reply = new Promise((resolve) => receiver.once(ReceiverEvents.message, (context) => resolve(context.message)))
    await sender.send({
      body: sasToken(HostName, SharedAccessKey, SharedAccessKeyName),
      message_id: 'put-1',
      reply_to: receiver.address,
      application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: `${HostName}/messages/events` },
    })
    assert.equal((await reply).application_properties['status-code'], 200)
    const error = await detachedWith(connection, 'messages/events/')
    assert.equal(error.condition, 'amqp:link:redirect')
    assert.equal(error.info.hostname, `127.0.0.1:${hub.ready.eventsPort}`)
  } finally {
    await connection.close()
  }
})

test('refused at SASL: a wrong key, an unknown policy, another policy\'s token, a token for a device, an expired token, a device\'s token; a device\'s login may not read', async () => {
  const { HostName, SharedAccessKeyName, SharedAccessKey } = policyOf(hub.connectionString)
  const user = `${SharedAccessKeyName}@sas.root.127`
  const otherKey = Buffer.alloc(32, 7).toString('base64')
  const device = await hub.createDevice('redirect-device')
  const deviceToken = sasToken(`${HostName}/devices/redirect-device`, device.primaryKey)
  const refused = {
    'a wrong key': { username: user, password: sasToken(HostName, otherKey, SharedAccessKeyName) },
    'an unknown policy': { username: 'nosuchpolicy@sas.root.127', password: sasToken(HostName, SharedAccessKey, 'nosuchpolicy') },
    'another policy than the username\'s': { username: 'service@sas.root.127', password: sasToken(HostName, SharedAccessKey, SharedAccessKeyName) },
    'the policy\'s token for a device': { username: user, password: sasToken(`${HostName}/devices/redirect-device`, SharedAccessKey, SharedAccessKeyName) },
    'an expired token': { username: user, password: sasToken(HostName, SharedAccessKey, SharedAccessKeyName, Math.floor(Date.now() / 1000) - 60) },
    'a device\'s token': { username: user, password: deviceToken },
  }
  for (const [what, login] of Object.entries(refused)) {
    // rhea reports the SASL outcome `auth` (code 1).
    await assert.rejects(open(hub, login), { condition: 'amqp:unauthorized-access', message: 'Failed to authenticate: 1' }, what)
  }
  // A device's own login (`{deviceId}@sas.{hub}`) holds no policy's right to read events.
  const connection = await open(hub, { username: 'redirect-device@sas.127', password: deviceToken })
  try {
    const error = await detachedWith(connection, 'messages/events/')
    assert.equal(error.condition, 'amqp:unauthorized-access')
  } finally {
    await connection.close()
  }
})
