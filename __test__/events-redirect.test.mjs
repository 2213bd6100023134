// The IoT Hub endpoint's redirect to the built-in Event Hubs-compatible endpoint, as the service
// does it: a reader attached at `messages/events/…` with a shared access policy's login (SASL
// PLAIN `<policy>@sas.root.<hub>`, or a CBS put-token of the policy for the hub) is detached with
// `amqp:link:redirect`, whose info (`hostname`, `network-host`, `port`, `address`) names the
// events endpoint. On --standard-ports (127.0.0.81, root): what the @azure/event-hubs README's
// "Use EventHubConsumerClient to work with IoT Hub" has a user do with an IoT Hub connection
// string (log in to its host's 5671 as the policy, build the Event Hubs connection string from
// the redirect, read a device's telemetry with EventHubConsumerClient), in this test's own code;
// and azure-eventhub's sample iot_hub_connection_string_receive_async.py, unmodified, from the
// pinned source archive (scripts/python-sdk.mjs's pythonSample; uamqp follows the redirect,
// pyamqp reads; run by python/run_eventhub_sample.py). Off the standard ports the redirect names
// the events port, also over WebSockets and after a CBS put-token; refusals: a wrong key, an
// unknown policy, another policy's token, the policy's token for a device, an expired token, a
// device's token, a device's login.
//
// Clients: rhea-promise 3.0.3, @azure/event-hubs 6.0.4, azure-iot-device-mqtt (pinned in
// package.json; ws, @azure/event-hubs' own, as events.test.mjs uses it); uamqp 1.6.11 and
// azure-eventhub 5.15.1 (__test__/python/requirements.txt, samples.txt).
import { spawn } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { trustOverTls } from './helpers/device-sdks.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'
import { hasPython3, pythonSample, pythonSdk } from '../scripts/python-sdk.mjs'

const require = createRequire(import.meta.url)
const { Connection, ReceiverEvents, parseConnectionString } = require('rhea-promise')
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs')
const { Client: DeviceClient, Message } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')

const HERE = path.dirname(fileURLToPath(import.meta.url))
const PYTHON_SAMPLE = 'samples/async_samples/iot_hub_connection_string_receive_async.py'
const RUN_PYTHON_SAMPLE = path.join(HERE, 'python', 'run_eventhub_sample.py')
const STANDARD_HOST = '127.0.0.81'

let hub
// The CAs a TLS connection without its own `ca` trusts: the shared hub's, and each --standard-ports
// hub's while its test runs (tls takes the array as it is when a connection opens).
const trustedCas = []

before(async () => {
  hub = await startEmulator({ devices: 0 })
  trustedCas.push(hub.ca)
  trustOverTls(trustedCas)
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

/**
 * An AMQP connection over TLS (SASL PLAIN when `username` is given) to `target`: an emulator's AMQP
 * listener, or `{ host, port }` (then trusting `trustedCas`).
 */
async function open(target, { username, password } = {}) {
  const connection = new Connection({
    transport: 'tls',
    host: target.host,
    hostname: target.host,
    port: target.ready?.amqpPort ?? target.port,
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
 * What the @azure/event-hubs README has a user do with an IoT Hub connection string: log in to the
 * hub's AMQP port (5671) as its policy, attach a reader at `messages/events/`, and make an Event Hubs
 * connection string of the redirect's host and entity (the first segment of its address's path).
 */
async function eventHubsConnectionStringOf(iotHubConnectionString) {
  const { HostName, SharedAccessKeyName, SharedAccessKey } = policyOf(iotHubConnectionString)
  const connection = await open({ host: HostName, port: 5671 }, {
    username: `${SharedAccessKeyName}@sas.root.${HostName.split('.')[0]}`,
    password: sasToken(`${HostName}/messages/events`, SharedAccessKey, SharedAccessKeyName),
  })
  try {
    // A user's code listens on the receiver once createReceiver has resolved on the attach (why
    // the hub detaches a moment after it: amqp/events.rs's REDIRECT_AFTER).
    const receiver = await connection.createReceiver({ source: { address: 'messages/events/' } })
    const { condition, info } = await new Promise((resolve) => receiver.once(ReceiverEvents.receiverError, (context) => resolve(context.receiver.error)))
    assert.equal(condition, 'amqp:link:redirect')
    const [, entityPath] = /^amqps:\/\/[^/]+\/([^/]+)/.exec(info.address)
    return `Endpoint=sb://${info.hostname}/;EntityPath=${entityPath};SharedAccessKeyName=${SharedAccessKeyName};SharedAccessKey=${SharedAccessKey}`
  } finally {
    await connection.close()
  }
}

/** A standard-ports hub (`args` added) whose CA is trusted while `body(std)` runs. */
async function withStandardHub(args, body) {
  const std = await startEmulator({ devices: 0, args: ['--standard-ports', '--host', STANDARD_HOST, ...args] })
  trustedCas.push(std.ca)
  try {
    await body(std)
  } finally {
    trustedCas.splice(trustedCas.indexOf(std.ca), 1)
    assert.equal(await std.stop(), 0)
  }
}

const standardSkip = prerequisite(process.getuid?.() !== 0 && 'port 5671 with --standard-ports needs root (CI runs as root)')
test('an IoT Hub connection string used as @azure/event-hubs\' README has it: the redirect gives the Event Hubs connection string with which EventHubConsumerClient reads a device\'s telemetry on --standard-ports', { skip: standardSkip }, async () => {
  await withStandardHub([], async (std) => {
    await sendTelemetry(std, 'redirect-node', { sample: 'node' })
    const eventHubsConnectionString = await eventHubsConnectionStringOf(std.connectionString)
    // The service's form: the plain host (its 5671), the entity cut out of the redirect's address.
    const { Endpoint, EntityPath } = policyOf(eventHubsConnectionString)
    assert.deepEqual({ Endpoint, EntityPath }, { Endpoint: `sb://${STANDARD_HOST}/`, EntityPath: 'iothub-emulator' })
    const event = await readUntil(eventHubsConnectionString, { sample: 'node' })
    assert.equal(event.systemProperties['iothub-connection-device-id'], 'redirect-node')
  })
})

/**
 * Runs azure-eventhub's `sample` (unmodified, through run_eventhub_sample.py) with `env` until it
 * prints its "received N events" line, then stops it (it receives forever). Resolves with the
 * JSON lines printed before: the Event Hubs `{ endpoint, entityPath }` it built, then `{ body }`s.
 */
function pythonSampleUntilReceived(python, caPath, sample, env) {
  const child = spawn(python, ['-u', RUN_PYTHON_SAMPLE, caPath, pythonSample(sample)], { env: { ...process.env, ...env } })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (chunk) => { stderr += chunk })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill(), 90_000)
    const RECEIVED = /^received \d+ events from partition/
    child.stdout.on('data', (chunk) => {
      stdout += chunk
      if (stdout.split('\n').some((line) => RECEIVED.test(line))) child.kill()
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const lines = stdout.split('\n')
      const received = lines.findIndex((line) => RECEIVED.test(line))
      // Stopped by us (SIGTERM) after the line; anything else is the sample failing or silent for 90 s.
      if (signal !== 'SIGTERM' || received < 0) reject(new Error(`the sample ended (${code ?? signal}) without a "received" line; stdout: ${stdout}; stderr: ${stderr}`))
      else resolve(lines.slice(0, received).map((line) => JSON.parse(line)))
    })
  })
}

const pythonSkip = standardSkip || prerequisite(!hasPython3() && 'python3 is not installed')
test('Microsoft\'s iot_hub_connection_string_receive_async.py sample (azure-eventhub, uamqp), unmodified, reads a device\'s telemetry on --standard-ports', { skip: pythonSkip }, async () => {
  const python = pythonSdk()
  await withStandardHub(['--hostname', 'pyhub.azure-devices.net'], async (std) => {
    await sendTelemetry(std, 'redirect-python', { sample: 'python' })
    const [converted, ...events] = await pythonSampleUntilReceived(python, std.caPath, PYTHON_SAMPLE, { IOTHUB_CONN_STR: std.connectionString })
    // The entity cut out of the redirect's `…:5671/<name>/ConsumerGroups/…`.
    assert.deepEqual(converted, { endpoint: `sb://${STANDARD_HOST}/`, entityPath: 'pyhub' })
    assert.deepEqual(events, [{ body: { sample: 'python' } }])
  })
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
