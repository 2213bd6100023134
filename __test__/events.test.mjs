// The built-in Event Hubs-compatible endpoint (`events`) read with the real client,
// @azure/event-hubs 6 (pinned, unmodified): telemetry that Node devices send over MQTT, AMQP and
// HTTPS, and a module's, arrives on its device's partition with its body, application
// properties and IoT Hub's annotations; every start position; two consumer groups; the
// management node; epoch receivers; refusals. The client connects with the emulator's
// `eventHubConnectionString` as printed (plain AMQP on the events port, UseDevelopmentEmulator);
// where a test reaches the endpoint over TLS (WebSockets, a connection string without
// UseDevelopmentEmulator, --standard-ports) the one harness addition is the emulator's CA, which
// rhea's TLS gets through `tls.connect` here (a user sets NODE_EXTRA_CA_CERTS, as a later test
// does in a child process through `iothub-emulator exec`).
import tls from 'node:tls'
import { execFile, execFileSync } from 'node:child_process'
import { createHmac, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { emulatorBinary, startEmulator } from './helpers/emulator.mjs'
import { createSasDevice, shimAzureIothub, trustOverTls } from './helpers/device-sdks.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'

const require = createRequire(import.meta.url)
const { EventHubConsumerClient, earliestEventPosition, latestEventPosition } = require('@azure/event-hubs')
const iothub = require('azure-iothub')
const { Client: DeviceClient, ModuleClient, Message } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')
const { Amqp } = require('azure-iot-device-amqp')
const { Http } = require('azure-iot-device-http')

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

let hub
let ca
const consumers = []

before(async () => {
  hub = await startEmulator({ devices: 0, consumerGroups: ['analytics'] })
  ca = hub.ca
  shimAzureIothub(ca)
  trustOverTls(ca)
})

after(async () => {
  await Promise.all(consumers.map((c) => c.close()))
  assert.equal(await hub.stop(), 0, 'the emulator exits 0 on SIGTERM')
})

function consumer(group = '$Default', connectionString = hub.eventHubConnectionString) {
  const client = new EventHubConsumerClient(group, connectionString, { retryOptions: { maxRetries: 0, timeoutInMs: 10_000 } })
  consumers.push(client)
  return client
}

const bodyOf = (event) => (Buffer.isBuffer(event.body) ? JSON.parse(event.body) : event.body)

/** Sends one message per entry from a Node device client on `Transport`, then closes it. */
async function send(connectionString, Transport, messages, Client = DeviceClient) {
  const client = Client.fromConnectionString(connectionString, Transport)
  // The Http transport answers setOptions only with a receive policy; its HTTPS gets the CA
  // from shimAzureIothub.
  if (Transport !== Http) await client.setOptions({ ca })
  await client.open()
  try {
    for (const m of messages) await client.sendEvent(m)
  } finally {
    await client.close()
  }
}

function message(body, { props = {}, messageId, correlationId } = {}) {
  const m = new Message(JSON.stringify(body))
  for (const [k, v] of Object.entries(props)) m.properties.add(k, v)
  if (messageId) m.messageId = messageId
  if (correlationId) m.correlationId = correlationId
  m.contentType = 'application/json'
  m.contentEncoding = 'utf-8'
  return m
}

/**
 * Reads events of one partition (or of every partition when `partitionId` is undefined) from
 * `startPosition` until `done(events)` holds; `onReady` runs once the receivers are live (the
 * first, possibly empty, batch).
 */
function read(client, { partitionId, startPosition = earliestEventPosition, done, onReady, ownerLevel, timeoutMs = 20_000 }) {
  return new Promise((resolve, reject) => {
    const events = []
    const errors = []
    let ready = false
    let subscription
    const timer = setTimeout(() => finish(new Error(`timed out with ${events.length} events, errors: ${errors.map((e) => e.code ?? e.message)}`)), timeoutMs)
    const finish = (err) => {
      clearTimeout(timer)
      subscription.close().then(() => (err ? reject(err) : resolve({ events, errors })), reject)
    }
    const handlers = {
      async processEvents(batch, context) {
        for (const e of batch) events.push({ ...e, partitionId: context.partitionId })
        if (!ready) {
          ready = true
          await onReady?.()
        }
        if (done(events, errors)) finish()
      },
      async processError(err) {
        errors.push(err)
        if (done(events, errors)) finish()
      },
    }
    const options = { startPosition, maxBatchSize: 50, maxWaitTimeInSeconds: 1, ownerLevel }
    subscription = partitionId === undefined ? client.subscribe(handlers, options) : client.subscribe(partitionId, handlers, options)
  })
}

const sentBy = (deviceId) => (e) => e.systemProperties['iothub-connection-device-id'] === deviceId

test('telemetry from MQTT, AMQP and HTTPS devices and from a module arrives with its body, properties and IoT Hub annotations, each device on one partition', async () => {
  const mqtt = await createSasDevice(hub, 'ev-mqtt')
  const amqp = await createSasDevice(hub, 'ev-amqp')
  const http = await createSasDevice(hub, 'ev-http')
  const registry = iothub.Registry.fromConnectionString(hub.connectionString)
  await registry.create({ deviceId: 'ev-edge' })
  const { responseBody: mod } = await registry.addModule({ deviceId: 'ev-edge', moduleId: 'filter' })
  const moduleCs = `HostName=${hub.hostName};DeviceId=ev-edge;ModuleId=filter;SharedAccessKey=${mod.authentication.symmetricKey.primaryKey}`

  const opts = (t) => ({ props: { transport: t, level: 'high' }, messageId: `mid-${t}`, correlationId: `cid-${t}` })
  await send(mqtt, Mqtt, [message({ n: 1, t: 'mqtt' }, opts('mqtt')), message({ n: 2, t: 'mqtt' }, opts('mqtt'))])
  await send(amqp, Amqp, [message({ n: 1, t: 'amqp' }, opts('amqp'))])
  await send(http, Http, [message({ n: 1, t: 'http' }, opts('http'))])
  await send(moduleCs, Mqtt, [message({ n: 1, t: 'module' }, opts('module'))], ModuleClient)

  const client = consumer()
  const { events } = await read(client, { done: (evs) => ['ev-mqtt', 'ev-amqp', 'ev-http', 'ev-edge'].every((d) => evs.some(sentBy(d))) && evs.filter(sentBy('ev-mqtt')).length === 2 })
  for (const [deviceId, t] of [['ev-mqtt', 'mqtt'], ['ev-amqp', 'amqp'], ['ev-http', 'http'], ['ev-edge', 'module']]) {
    const mine = events.filter(sentBy(deviceId))
    const e = mine[0]
    assert.deepEqual(bodyOf(e), { n: 1, t }, `${t}: the body as sent`)
    assert.equal(e.properties.transport, t, `${t}: application properties`)
    assert.equal(e.properties.level, 'high')
    assert.equal(e.messageId, `mid-${t}`, `${t}: message id`)
    assert.equal(e.correlationId, `cid-${t}`, `${t}: correlation id`)
    assert.equal(e.contentType, 'application/json', `${t}: content type`)
    assert.equal(e.systemProperties['iothub-message-source'], 'Telemetry')
    const auth = JSON.parse(e.systemProperties['iothub-connection-auth-method'])
    assert.equal(auth.type, 'sas')
    assert.equal(auth.scope, t === 'module' ? 'module' : 'device')
    assert.match(e.systemProperties['iothub-connection-auth-generation-id'], /^\d+$/)
    assert.ok(Math.abs(new Date(e.systemProperties['iothub-enqueuedtime']).getTime() - e.enqueuedTimeUtc.getTime()) < 1000, 'iothub-enqueuedtime')
    assert.equal(e.systemProperties['iothub-connection-module-id'], t === 'module' ? 'filter' : undefined)
    assert.equal(typeof e.sequenceNumber, 'number')
    assert.match(String(e.offset), /^\d+$/)
    assert.ok(Math.abs(e.enqueuedTimeUtc.getTime() - Date.now()) < 60_000, 'enqueued now, on the emulator clock')
    assert.equal(new Set(mine.map((m) => m.partitionId)).size, 1, `${deviceId}: one partition`)
  }
  const mqttEvents = events.filter(sentBy('ev-mqtt'))
  assert.deepEqual(mqttEvents.map(bodyOf).map((b) => b.n), [1, 2], 'in order')
  assert.equal(mqttEvents[1].sequenceNumber, mqttEvents[0].sequenceNumber + 1)
  // The same device lands in the same partition again, from another transport.
  await send(mqtt, Amqp, [message({ n: 3, t: 'mqtt-device-over-amqp' })])
  const { events: again } = await read(consumer(), { partitionId: mqttEvents[0].partitionId, done: (evs) => evs.some((e) => bodyOf(e).n === 3 && sentBy('ev-mqtt')(e)) })
  assert.equal(again.filter(sentBy('ev-mqtt')).length, 3)
})

test('every start position: earliest, latest, offset and sequence number inclusive and exclusive, enqueued time', async () => {
  const cs = await createSasDevice(hub, 'ev-positions')
  await send(cs, Mqtt, [0, 1, 2, 3, 4].map((n) => message({ n })))
  const client = consumer()
  const { events: all } = await read(client, { done: (evs) => evs.filter(sentBy('ev-positions')).length === 5 })
  const mine = all.filter(sentBy('ev-positions'))
  const partitionId = mine[0].partitionId
  const ns = (evs) => evs.filter(sentBy('ev-positions')).map((e) => bodyOf(e).n)
  const from = async (startPosition, expected) => {
    const { events } = await read(client, { partitionId, startPosition, done: (evs) => ns(evs).length >= expected.length, timeoutMs: 10_000 })
    assert.deepEqual(ns(events), expected, JSON.stringify(startPosition))
  }
  await from(earliestEventPosition, [0, 1, 2, 3, 4])
  await from({ sequenceNumber: mine[2].sequenceNumber, isInclusive: true }, [2, 3, 4])
  await from({ sequenceNumber: mine[2].sequenceNumber }, [3, 4])
  await from({ offset: mine[3].offset, isInclusive: true }, [3, 4])
  await from({ offset: mine[3].offset }, [4])
  await from({ enqueuedOn: new Date(mine[0].enqueuedTimeUtc.getTime() - 1) }, [0, 1, 2, 3, 4])
  // Latest: only what is sent once the receiver is live.
  const { events: latest } = await read(client, {
    partitionId,
    startPosition: latestEventPosition,
    onReady: () => send(cs, Mqtt, [message({ n: 5 })]),
    done: (evs) => ns(evs).includes(5),
  })
  assert.deepEqual(ns(latest), [5])
})

test('two consumer groups read the same events independently; getEventHubProperties and getPartitionProperties', async () => {
  const cs = await createSasDevice(hub, 'ev-groups')
  await send(cs, Http, [message({ g: 1 }), message({ g: 2 })])
  const main = consumer('$Default')
  const analytics = consumer('analytics')
  const props = await main.getEventHubProperties()
  assert.equal(props.name, hub.ready.eventHubConnectionString.match(/EntityPath=([^;]+)/)[1])
  assert.deepEqual(props.partitionIds, ['0', '1', '2', '3'])
  const done = (evs) => evs.filter(sentBy('ev-groups')).length === 2
  const [a, b] = await Promise.all([read(main, { done }), read(analytics, { done })])
  const seqs = (r) => r.events.filter(sentBy('ev-groups')).map((e) => e.sequenceNumber)
  assert.deepEqual(seqs(a), seqs(b))
  const partitionId = a.events.find(sentBy('ev-groups')).partitionId
  const p = await analytics.getPartitionProperties(partitionId)
  assert.equal(p.partitionId, partitionId)
  assert.equal(p.isEmpty, false)
  assert.ok(p.lastEnqueuedSequenceNumber >= seqs(a)[1])
  assert.ok(p.lastEnqueuedOnUtc instanceof Date && p.lastEnqueuedOnUtc.getTime() > 0)
  assert.equal(typeof p.lastEnqueuedOffset, 'string')
})

test('an epoch (ownerLevel) receiver takes a partition over from a lower one; a lower one is refused', async () => {
  const cs = await createSasDevice(hub, 'ev-epoch')
  await send(cs, Mqtt, [message({ e: 1 })])
  const client = consumer()
  const { events } = await read(client, { done: (evs) => evs.some(sentBy('ev-epoch')) })
  const partitionId = events.find(sentBy('ev-epoch')).partitionId
  // Epoch 1 reads; epoch 2 takes over (epoch 1 is detached); while epoch 2 reads, epoch 1 is refused again (@azure/event-hubs sends no epoch for ownerLevel 0).
  let lower
  let takeOver
  const first = read(consumer(), {
    partitionId,
    ownerLevel: 1,
    onReady: () => {
      takeOver = read(consumer(), {
        partitionId,
        ownerLevel: 2,
        onReady: async () => {
          lower = await read(consumer(), { partitionId, ownerLevel: 1, done: (_evs, errs) => errs.length > 0, timeoutMs: 10_000 })
        },
        done: (evs) => evs.some(sentBy('ev-epoch')) && lower !== undefined,
      })
    },
    done: (_evs, errors) => errors.some((e) => e.code === 'ReceiverDisconnectedError'),
  })
  const { errors } = await first
  assert.match(errors.find((e) => e.code === 'ReceiverDisconnectedError').message, /higher epoch of '2'/)
  const second = await takeOver
  assert.ok(second.events.some(sentBy('ev-epoch')), 'the new owner reads the partition')
  assert.equal(second.errors.length, 0)
  assert.equal(lower.events.length, 0)
  assert.equal(lower.errors[0].code, 'ReceiverDisconnectedError')
  assert.match(lower.errors[0].message, /higher epoch of '2' already exists/)
})

test('refusals: a wrong key, an unknown consumer group, an unknown partition', async () => {
  const wrongKey = hub.eventHubConnectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`)
  await assert.rejects(consumer('$Default', wrongKey).getEventHubProperties(), (e) => e.code === 'UnauthorizedError')
  const group = await read(consumer('no-such-group'), { partitionId: '0', done: (_e, errors) => errors.length > 0, timeoutMs: 15_000 })
  assert.equal(group.errors[0].code, 'MessagingEntityNotFoundError', group.errors[0].message)
  const partition = await read(consumer(), { partitionId: '4', done: (_e, errors) => errors.length > 0, timeoutMs: 15_000 })
  assert.equal(partition.errors[0].code, 'ArgumentOutOfRangeError', partition.errors[0].message)
})

test('iothub-emulator exec gives EVENTHUB_CONNECTION_STRING, which @azure/event-hubs uses unmodified with NODE_EXTRA_CA_CERTS', async () => {
  const script = `
    const { EventHubConsumerClient } = require('@azure/event-hubs')
    const c = new EventHubConsumerClient('$Default', process.env.EVENTHUB_CONNECTION_STRING)
    c.getEventHubProperties().then(async (p) => { console.log(JSON.stringify(p.partitionIds)); await c.close() }, (e) => { console.error(e.code, e.message); process.exit(1) })`
  const bin = path.join(ROOT, 'packages', 'iothub-emulator', 'bin', 'iothub-emulator.js')
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, [bin, 'exec', '--partitions', '8', '--', process.execPath, '-e', script], { cwd: ROOT, env: { ...process.env, IOTHUB_EMULATOR: emulatorBinary() }, timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)))
  assert.deepEqual(JSON.parse(out.trim().split('\n').pop()), ['0', '1', '2', '3', '4', '5', '6', '7'])
})

test('an expired token and a token for another entity are refused; a consumer group created through the control API is read; runtime metrics carry the last enqueued event', async () => {
  const fields = Object.fromEntries(hub.eventHubConnectionString.split(';').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
  const audience = encodeURIComponent(`${fields.Endpoint}${fields.EntityPath}`)
  const se = Math.floor(Date.now() / 1000) - 60
  const sig = encodeURIComponent(createHmac('sha256', fields.SharedAccessKey).update(`${audience}\n${se}`).digest('base64'))
  const expired = `Endpoint=${fields.Endpoint};SharedAccessSignature=SharedAccessSignature sr=${audience}&sig=${sig}&se=${se}&skn=iothubowner;EntityPath=${fields.EntityPath}`
  await assert.rejects(consumer('$Default', expired).getEventHubProperties(), (e) => e.code === 'UnauthorizedError' && /expired/.test(e.message))
  // The same token, not expired, is accepted: the refusal is the expiry's.
  const se2 = se + 3600
  const sig2 = encodeURIComponent(createHmac('sha256', fields.SharedAccessKey).update(`${audience}\n${se2}`).digest('base64'))
  const valid = expired.replace(`sig=${sig}&se=${se}`, `sig=${sig2}&se=${se2}`)
  assert.equal((await consumer('$Default', valid).getEventHubProperties()).name, fields.EntityPath)
  // A valid signature for another entity's resource does not cover this one.
  const otherAudience = encodeURIComponent(`${fields.Endpoint}other-hub`)
  const sig3 = encodeURIComponent(createHmac('sha256', fields.SharedAccessKey).update(`${otherAudience}\n${se2}`).digest('base64'))
  const other = `Endpoint=${fields.Endpoint};SharedAccessSignature=SharedAccessSignature sr=${otherAudience}&sig=${sig3}&se=${se2}&skn=iothubowner;EntityPath=${fields.EntityPath}`
  await assert.rejects(consumer('$Default', other).getEventHubProperties(), (e) => e.code === 'UnauthorizedError' && /does not cover/.test(e.message))

  assert.deepEqual((await hub.control('PUT', 'events/consumerGroups/late-readers')).created, true)
  const view = await hub.control('GET', 'events')
  assert.equal(view.partitionCount, 4)
  assert.equal(view.partitions.length, 4)
  assert.deepEqual(view.consumerGroups, ['$Default', 'analytics', 'late-readers'])
  assert.deepEqual((await hub.control('GET', 'events/consumerGroups')).consumerGroups, ['$Default', 'analytics', 'late-readers'])
  const cs = await createSasDevice(hub, 'ev-late')
  await send(cs, Http, [message({ late: 1 })])
  const client = consumer('late-readers')
  const { events } = await read(client, { done: (evs) => evs.some(sentBy('ev-late')) })
  const partitionId = events.find(sentBy('ev-late')).partitionId
  const tracked = await new Promise((resolve, reject) => {
    const sub = client.subscribe(partitionId, {
      async processEvents(batch, context) {
        if (batch.some(sentBy('ev-late'))) sub.close().then(() => resolve(context.lastEnqueuedEventProperties), reject)
      },
      async processError(err) { reject(err) },
    }, { startPosition: earliestEventPosition, trackLastEnqueuedEventProperties: true, maxWaitTimeInSeconds: 1 })
  })
  const p = await client.getPartitionProperties(partitionId)
  assert.equal(tracked.sequenceNumber, p.lastEnqueuedSequenceNumber)
  assert.equal(tracked.offset, p.lastEnqueuedOffset)
  assert.equal(tracked.enqueuedOn.getTime(), p.lastEnqueuedOnUtc.getTime())
  await hub.control('DELETE', 'events/consumerGroups/late-readers')
  const gone = await read(consumer('late-readers'), { partitionId: '0', done: (_e, errors) => errors.length > 0, timeoutMs: 15_000 })
  assert.equal(gone.errors[0].code, 'MessagingEntityNotFoundError')
})

test("a batch from an Http device keeps each message's properties; AMQP over WebSockets reads the endpoint too", async () => {
  const cs = await createSasDevice(hub, 'ev-batch')
  const client = DeviceClient.fromConnectionString(cs, Http)
  await client.open()
  await client.sendEventBatch([message({ b: 1 }, { props: { k: 'one' } }), message({ b: 2 }, { props: { k: 'two' } })])
  await client.close()
  const WebSocket = require('ws')
  const urls = []
  class CountedWebSocket extends WebSocket {
    constructor(url, ...rest) {
      super(url, ...rest)
      urls.push(String(url))
    }
  }
  const overWs = new EventHubConsumerClient('$Default', hub.eventHubConnectionString, { webSocketOptions: { webSocket: CountedWebSocket, webSocketConstructorOptions: { ca } } })
  consumers.push(overWs)
  const { events } = await read(overWs, { done: (evs) => evs.filter(sentBy('ev-batch')).length === 2 })
  assert.deepEqual(events.filter(sentBy('ev-batch')).map((e) => [bodyOf(e).b, e.properties.k]), [[1, 'one'], [2, 'two']])
  // Off the standard ports the Endpoint names the events port (plain AMQP with
  // UseDevelopmentEmulator=true, TLS by its first byte): WebSockets dial wss:// there.
  assert.match(hub.eventHubConnectionString, new RegExp(`^Endpoint=sb://127\\.0\\.0\\.1:${hub.ready.eventsPort}/;SharedAccessKeyName=iothubowner;SharedAccessKey=[^;]+;EntityPath=iothub-emulator;UseDevelopmentEmulator=true$`))
  assert.deepEqual(urls, [`wss://127.0.0.1:${hub.ready.eventsPort}/$servicebus/websocket`])
})

test("--partitions and --retention-hours outside IoT Hub's ranges are refused in one line", async () => {
  for (const [flag, value] of [['--partitions', '1'], ['--partitions', '129'], ['--retention-hours', '169']]) {
    const { code, stderr } = await new Promise((resolve) =>
      execFile(emulatorBinary(), [flag, value], { timeout: 30_000 }, (err, _stdout, stderr) => resolve({ code: err?.code, stderr })))
    assert.equal(code, 1, `${flag} ${value}`)
    const lines = stderr.trim().split('\n')
    assert.equal(lines.length, 1, stderr)
    assert.match(lines[0], new RegExp(`^iothub-emulator: ${flag} must be between`))
  }
  const badGroup = await new Promise((resolve) =>
    execFile(emulatorBinary(), ['--consumer-group', 'no spaces'], { timeout: 30_000 }, (err, _stdout, stderr) => resolve({ code: err?.code, stderr })))
  assert.equal(badGroup.code, 1)
  assert.match(badGroup.stderr.trim(), /^iothub-emulator: consumer group name "no spaces" is not valid[^\n]*$/)
  // The seed's consumerGroups and the partitions option reach the endpoint.
  const seeded = await startEmulator({ devices: 0, partitions: 8, retentionHours: 48, seed: { consumerGroups: ['from-seed'] } })
  try {
    const view = await seeded.control('GET', 'events')
    assert.deepEqual([view.partitionCount, view.retentionHours, view.consumerGroups], [8, 48, ['$Default', 'from-seed']])
  } finally {
    await seeded.stop()
  }
})

// With --standard-ports (own loopback address, ports below 1024 need root) the Endpoint is the
// plain host, which the client dials on 5671.
const standardSkip = prerequisite(process.getuid?.() !== 0 && 'port 5671 with --standard-ports needs root (CI runs as root)')
test('with --standard-ports the Endpoint is plain (sb://<host>/) and the client reads on 5671', { skip: standardSkip }, async () => {
  const std = await startEmulator({ devices: 0, args: ['--standard-ports', '--host', '127.0.0.73', '--hostname', 'myhub.azure-devices.net'] })
  try {
    assert.match(std.eventHubConnectionString, /^Endpoint=sb:\/\/127\.0\.0\.73\/;SharedAccessKeyName=iothubowner;SharedAccessKey=[^;]+;EntityPath=myhub$/)
    const connect = tls.connect
    const dialed = []
    tls.connect = function recordingPort(...args) {
      const options = args.find((a) => a && typeof a === 'object')
      dialed.push(options?.port)
      if (options) options.ca = std.ca
      return connect.apply(this, args)
    }
    try {
      const client = new EventHubConsumerClient('$Default', std.eventHubConnectionString)
      consumers.push(client)
      const props = await client.getEventHubProperties()
      assert.equal(props.name, 'myhub')
    } finally {
      tls.connect = connect
    }
    assert.deepEqual([...new Set(dialed)], [5671])
  } finally {
    assert.equal(await std.stop(), 0)
  }
})

// It moves the hub's clock past every retained event (the reset test after it sets it back).
test('retention runs on the emulator clock: past --retention-hours every event is gone, and numbering goes on', async () => {
  const client = consumer()
  const before = await Promise.all(['0', '1', '2', '3'].map((id) => client.getPartitionProperties(id)))
  assert.ok(before.some((p) => !p.isEmpty), 'earlier tests left events')
  await hub.advanceTime(24 * 3600 + 1)
  const after = await Promise.all(['0', '1', '2', '3'].map((id) => client.getPartitionProperties(id)))
  for (const [i, p] of after.entries()) {
    assert.equal(p.isEmpty, true, `partition ${i}`)
    assert.equal(p.lastEnqueuedSequenceNumber, before[i].lastEnqueuedSequenceNumber, 'sequence numbers are not reused')
    assert.equal(p.lastEnqueuedOffset, before[i].lastEnqueuedOffset, 'the last offset stays')
  }
  const cs = await createSasDevice(hub, 'ev-after-retention')
  await send(cs, Mqtt, [message({ after: true })])
  const { events } = await read(client, { done: (evs) => evs.some(sentBy('ev-after-retention')) })
  assert.equal(events.length, 1, 'only the new event is kept')
  const p = after[Number(events[0].partitionId)]
  assert.equal(events[0].sequenceNumber, p.lastEnqueuedSequenceNumber + 1)
})

test('a hub reset empties the endpoint: an attached reader gets the next event, numbered from 0 again', async () => {
  const cs = await createSasDevice(hub, 'ev-reset')
  await send(cs, Mqtt, [message({ r: 1 })])
  const client = consumer()
  const { events } = await read(client, { done: (evs) => evs.some(sentBy('ev-reset')) })
  const partitionId = events.find(sentBy('ev-reset')).partitionId
  const { events: after } = await read(client, {
    partitionId,
    startPosition: latestEventPosition,
    onReady: async () => {
      await hub.reset()
      await send(await createSasDevice(hub, 'ev-reset'), Mqtt, [message({ r: 2 })])
    },
    done: (evs) => evs.some(sentBy('ev-reset')),
  })
  const e = after.find(sentBy('ev-reset'))
  assert.deepEqual(bodyOf(e), { r: 2 })
  assert.equal(e.sequenceNumber, 0)
  assert.equal((await client.getPartitionProperties(partitionId)).lastEnqueuedSequenceNumber, 0)
})

const noOpenssl = prerequisite((() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return false
  } catch {
    return 'the openssl command line is needed to make a device certificate'
  }
})())
test('an x509 (self-signed) device\'s telemetry says so in iothub-connection-auth-method', { skip: noOpenssl }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'iothub-events-x509-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'd.key', '-out', 'd.pem', '-days', '2', '-subj', '/CN=ev-x509'], { cwd: dir, stdio: 'ignore' })
    const cert = readFileSync(path.join(dir, 'd.pem'), 'utf8')
    const key = readFileSync(path.join(dir, 'd.key'), 'utf8')
    const thumbprint = new X509Certificate(cert).fingerprint.replaceAll(':', '')
    await iothub.Registry.fromConnectionString(hub.connectionString).create({ deviceId: 'ev-x509', authentication: { x509Thumbprint: { primaryThumbprint: thumbprint } } })
    const client = DeviceClient.fromConnectionString(`HostName=${hub.hostName};DeviceId=ev-x509;x509=true`, Mqtt)
    await client.setOptions({ cert, key, ca })
    await client.open()
    await client.sendEvent(message({ x: 1 }))
    await client.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const { events } = await read(consumer(), { done: (evs) => evs.some(sentBy('ev-x509')) })
  const auth = JSON.parse(events.find(sentBy('ev-x509')).systemProperties['iothub-connection-auth-method'])
  assert.deepEqual(auth, { scope: 'device', type: 'x509Certificate', issuer: 'iothub', acceptingIpFilterRule: null })
})
