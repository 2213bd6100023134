// The store's promise, "every answered write is on disk", made to fail if it does not hold:
// with a data dir, the store's writer is held paused through the control API
// (`PUT /_emulator/store {"writer":"held"}`, a test hook); every kind of write is then sent
// with Microsoft's clients and iothub-jobs, and none may be answered (nor anything follow
// from it: a feedback record, the redelivery of an abandoned message) until the writer is
// released. Then SIGKILL (never a clean stop, which flushes everything) right after each kind
// of write was answered, and a restart on the same dir must show the content answered.
import { createRequire } from 'node:module'
import net from 'node:net'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { test, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { rejectsWith, shimAzureIothub, until } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const { JobClient } = require('..')
const iothub = require('azure-iothub')
const { Client: DeviceClient, Message } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')
const { Amqp } = require('azure-iot-device-amqp')
const { Http } = require('azure-iot-device-http')

// A host of this suite's own: a SIGKILLed hub restarts on the same port, which nothing else
// on 127.0.0.1 may take meanwhile.
const HOST = '127.0.0.72'
const dirs = []
const running = new Set()
/** The CAs of the hubs started here (each data dir has its own), for the clients' shims. */
const trusted = []
shimAzureIothub(trusted)
const connect = tls.connect
// azure-iothub's AMQP client has no CA option: loopback TLS connections naming none get ours.
tls.connect = function connectWithCa(port, host, options, ...rest) {
  if (typeof host === 'string' && /^127\./.test(host) && options && !options.ca) options = { ...options, ca: trusted }
  return connect.call(this, port, host, options, ...rest)
}

after(async () => {
  await Promise.all([...running].map((hub) => hub.stop()))
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

const call = (fn) => new Promise((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r))))
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function start(dir, port = 0) {
  const hub = await startEmulator({ devices: 0, args: ['--host', HOST, '--port', String(port), '--data-dir', dir] })
  running.add(hub)
  trusted.push(readFileSync(hub.caPath, 'utf8'))
  return hub
}

/** A crash: SIGKILL, then the same dir on the same port. */
async function killAndRestart(hub, dir) {
  hub.kill('SIGKILL')
  assert.equal(await hub.stop(), 'SIGKILL')
  running.delete(hub)
  return start(dir, hub.port)
}

function newDir() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-emulator-durable-'))
  dirs.push(dir)
  return dir
}

const registryOf = (hub) => iothub.Registry.fromConnectionString(hub.connectionString)
const rest = (hub, method, url, body, headers = {}) =>
  call((cb) => registryOf(hub)._restApiClient.executeApiCall(method, `${url}?api-version=2021-04-12`, headers, body, cb))

async function sasDevice(hub, deviceId) {
  const { responseBody } = await registryOf(hub).create({ deviceId })
  return `HostName=${hub.hostName};DeviceId=${deviceId};SharedAccessKey=${responseBody.authentication.symmetricKey.primaryKey}`
}

/** A connected device whose received messages land in `received`, settled by the test. */
async function listeningDevice(hub, deviceId, transport, gatewayPort) {
  const cs = await sasDevice(hub, deviceId)
  const client = DeviceClient.fromConnectionString(gatewayPort ? `${cs};GatewayHostName=${HOST}:${gatewayPort}` : cs, transport)
  await client.setOptions({ ca: trusted.at(-1), ...(transport === Http && { http: { receivePolicy: { interval: 1 } } }) })
  const received = []
  client.on('message', (m) => received.push(m))
  await client.open()
  return { client, received }
}

/**
 * A TCP relay to the hub whose device-to-hub direction can be held: an MQTT device's PUBACK
 * (its "complete", sent by mqtt.js the moment the message arrives) is kept back until the test
 * lets it through. The device reaches it as its `GatewayHostName`.
 */
async function gatedRelay(port) {
  const held = []
  const sockets = new Set()
  let upstream = null
  let open = true
  const server = net.createServer((device) => {
    upstream = net.connect(port, HOST)
    const to = upstream
    device.on('data', (chunk) => (open ? to.write(chunk) : held.push(chunk)))
    to.pipe(device)
    for (const socket of [device, to]) {
      sockets.add(socket)
      socket.on('error', () => {}).on('close', () => {
        device.destroy()
        to.destroy()
      })
    }
  })
  await new Promise((resolve) => server.listen(0, HOST, resolve))
  return {
    port: server.address().port,
    hold() {
      open = false
    },
    release() {
      open = true
      for (const chunk of held.splice(0)) upstream.write(chunk)
    },
    close() {
      for (const socket of sockets) socket.destroy()
      server.close()
    },
  }
}

function message(messageId, text = messageId) {
  const m = new Message(text)
  m.messageId = messageId
  m.ack = 'full'
  return m
}

async function openService(hub, feedback) {
  const service = iothub.Client.fromConnectionString(hub.connectionString)
  await call((cb) => service.open(cb))
  const receiver = await call((cb) => service.getFeedbackReceiver(cb))
  receiver.on('message', (msg) => {
    feedback.push(...JSON.parse(msg.data.toString()))
    receiver.complete(msg, () => {})
  })
  return service
}

const writer = (hub) => hub.control('GET', 'store')
const config = (id, priority = 10) => ({
  id,
  content: { deviceContent: { 'properties.desired': { lamp: 'on' } } },
  targetCondition: "tags.site = 'plant-7'",
  priority,
})
const tomorrow = () => new Date(Date.now() + 86_400_000)

test('the writer hook: 400 without a data dir or with a bad value; held and released with one', async () => {
  const memory = await startEmulator({ devices: 0 })
  running.add(memory)
  assert.deepEqual(await memory.control('GET', 'store'), { persistent: false })
  await assert.rejects(memory.control('PUT', 'store', { writer: 'held' }), /no data dir/)
  const hub = await start(newDir())
  await assert.rejects(hub.control('PUT', 'store', { writer: 'paused' }), /writer must be .*held.* or .*running/)
  assert.deepEqual(await hub.control('PUT', 'store', { writer: 'held' }), { persistent: true, writer: 'held', queued: 0 })
  assert.deepEqual(await hub.control('PUT', 'store', { writer: 'running' }), { persistent: true, writer: 'running', queued: 0 })
  await memory.stop()
  running.delete(memory)
  await hub.stop()
  running.delete(hub)
})

test('with the store writer held, no write of any kind is answered; released, every one is', async () => {
  const hub = await start(newDir())
  const registry = registryOf(hub)
  const feedback = []
  const service = await openService(hub, feedback)
  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca: trusted.at(-1) })

  // What the writes act on, created while the writer runs.
  for (const id of ['to-update', 'to-delete', 'twin-patched', 'twin-replaced', 'with-module']) await sasDevice(hub, id)
  await registry.addModule({ deviceId: 'with-module', moduleId: 'existing' })
  await registry.addConfiguration(config('to-update'))
  await registry.addConfiguration(config('to-remove'))
  await jobs.scheduleTwinUpdate('to-cancel', '*', { etag: '*', tags: { x: 1 } }, tomorrow())
  const relay = await gatedRelay(hub.port)
  const reporter = await listeningDevice(hub, 'reporter', Mqtt)
  const reporterTwin = await reporter.client.getTwin()
  const devices = {
    mqtt: await listeningDevice(hub, 'c2d-mqtt', Mqtt, relay.port),
    amqp: await listeningDevice(hub, 'c2d-amqp', Amqp),
    http: await listeningDevice(hub, 'c2d-http', Http),
  }
  const toSettle = {
    mqtt: ['mqtt-complete'],
    amqp: ['amqp-complete', 'amqp-reject', 'amqp-abandon'],
    http: ['http-complete', 'http-reject', 'http-abandon'],
  }
  // The MQTT device's PUBACK (its complete) is held back until the writer is held.
  relay.hold()
  for (const [transport, ids] of Object.entries(toSettle)) {
    for (const id of ids) await call((cb) => service.send(`c2d-${transport}`, message(id), cb))
  }
  for (const [transport, ids] of Object.entries(toSettle)) {
    await until(() => devices[transport].received.length === ids.length, 20_000, `the ${transport} deliveries`)
  }
  await until(async () => (await writer(hub)).queued === 0, 10_000, 'the writer idle')
  assert.deepEqual(feedback, [], 'nothing settled yet')

  assert.equal((await hub.control('PUT', 'store', { writer: 'held' })).writer, 'held')
  const answered = new Map()
  const pending = []
  const write = (name, promise) => {
    pending.push(
      promise.then(
        (value) => answered.set(name, { value }),
        (error) => answered.set(name, { error }),
      ),
    )
  }
  write('device create', registry.create({ deviceId: 'created' }))
  write('device update', registry.update({ deviceId: 'to-update', status: 'disabled' }))
  write('device delete', registry.delete('to-delete'))
  write('module create', registry.addModule({ deviceId: 'with-module', moduleId: 'added' }))
  write('module twin patch', registry.updateModuleTwin('with-module', 'existing', { properties: { desired: { rate: 5 } } }, '*'))
  write('twin patch', registry.updateTwin('twin-patched', { tags: { site: 'plant-7' } }, '*'))
  write('twin replace', rest(hub, 'PUT', '/twins/twin-replaced', { tags: { replaced: true } }, { 'If-Match': '*', 'Content-Type': 'application/json; charset=utf-8' }))
  write('reported patch (MQTT)', call((cb) => reporterTwin.properties.reported.update({ firmware: '3.0' }, cb)))
  write('job create', jobs.scheduleDeviceMethod('created-job', '*', { methodName: 'm', payload: {}, responseTimeoutInSeconds: 5 }, tomorrow()))
  write('job cancel', jobs.cancelJob('to-cancel'))
  write('configuration create', registry.addConfiguration(config('created')))
  write('configuration update', registry.updateConfiguration(config('to-update', 99), true))
  write('configuration remove', registry.removeConfiguration('to-remove'))
  write('cloud-to-device send (AMQP)', call((cb) => service.send('c2d-mqtt', message('sent-while-held'), cb)))
  const settle = (transport, how, id) => {
    const { client, received } = devices[transport]
    const m = received.find((r) => r.messageId === id)
    write(`cloud-to-device ${how} (${transport})`, call((cb) => client[how](m, cb)))
  }
  relay.release()
  // One settlement at a time per device: three AMQP dispositions sent in one tick are not
  // what this test is about (a separate question for the AMQP link).
  for (const transport of ['amqp', 'http']) {
    for (const how of ['complete', 'reject', 'abandon']) {
      settle(transport, how, `${transport}-${how}`)
      await sleep(200)
    }
  }
  // The AMQP device SDK calls back once its settlement is sent (the hub has nothing to answer
  // to it): there, what must wait for the disk is the feedback that follows from it. (An
  // abandoned message is Enqueued again in memory at once, so the queue's timer may deliver it
  // again before the abandon is stored: a crash then keeps it locked until its lock times out,
  // and it comes again, as IoT Hub's at-least-once delivery allows.)
  const deviceSettled = new Set(['cloud-to-device complete (amqp)', 'cloud-to-device reject (amqp)', 'cloud-to-device abandon (amqp)'])

  // Every write has reached the held writer (one batch each, at least), and had time to be
  // answered if the hub answered before its commit.
  await until(async () => (await writer(hub)).queued >= pending.length + 1, 20_000, 'every write queued at the writer')
  await sleep(1000)
  const early = [...answered.keys()].filter((name) => !deviceSettled.has(name))
  assert.deepEqual(early, [], 'answered while the writer was held')
  assert.deepEqual(feedback.map((r) => r.originalMessageId), [], 'feedback while the writer was held')
  const stats = await writer(hub)
  assert.equal(stats.writer, 'held')

  assert.equal((await hub.control('PUT', 'store', { writer: 'running' })).writer, 'running')
  await Promise.all(pending)
  for (const [name, outcome] of answered) assert.equal(outcome.error, undefined, `${name}: ${outcome.error?.message}`)
  assert.equal(answered.size, pending.length)
  const settledIds = ['mqtt-complete', 'amqp-complete', 'amqp-reject', 'http-complete', 'http-reject']
  await until(() => settledIds.every((id) => feedback.some((r) => r.originalMessageId === id)), 20_000, 'the feedback once stored')
  const status = (id) => feedback.find((r) => r.originalMessageId === id).statusCode
  assert.deepEqual(settledIds.map(status), ['Success', 'Success', 'Rejected', 'Success', 'Rejected'])
  await until(() => devices.amqp.received.length === 4, 20_000, 'the abandoned AMQP message delivered again')
  await until(() => devices.http.received.length === 4, 20_000, 'the abandoned HTTP message received again')
  await until(() => devices.mqtt.received.some((m) => m.messageId === 'sent-while-held'), 20_000, 'the message sent while held')

  for (const { client } of [...Object.values(devices), reporter]) await client.close()
  relay.close()
  await call((cb) => service.close(cb))
  assert.equal(await hub.stop(), 0)
  running.delete(hub)
})

test('SIGKILL right after each kind of write was answered: the restarted hub has what was answered', async () => {
  const dir = newDir()
  let hub = await start(dir)
  let registry = registryOf(hub)
  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca: trusted.at(-1) })
  const crash = async () => {
    hub = await killAndRestart(hub, dir)
    registry = registryOf(hub)
  }

  // Devices and modules.
  const created = (await registry.create({ deviceId: 'made', status: 'disabled' })).responseBody
  await crash()
  const made = (await registry.get('made')).responseBody
  assert.equal(made.status, 'disabled')
  assert.equal(made.etag, created.etag)
  assert.deepEqual(made.authentication, created.authentication)

  const updated = (await registry.update({ deviceId: 'made', status: 'enabled' })).responseBody
  await registry.create({ deviceId: 'doomed' })
  await registry.delete('doomed')
  const module = (await registry.addModule({ deviceId: 'made', moduleId: 'edge' })).responseBody
  await crash()
  assert.equal((await registry.get('made')).responseBody.etag, updated.etag)
  assert.equal((await registry.get('made')).responseBody.status, 'enabled')
  await rejectsWith(registry.get('doomed'), 404, 'DeviceNotFound')
  assert.deepEqual((await registry.getModule('made', 'edge')).responseBody.authentication, module.authentication)

  // Twins: a patch, a replace, a module twin, a reported patch from the device.
  const patched = (await registry.updateTwin('made', { tags: { site: 'plant-7' }, properties: { desired: { lamp: 'on' } } }, '*')).responseBody
  const moduleTwin = (await registry.updateModuleTwin('made', 'edge', { properties: { desired: { rate: 5 } } }, '*')).responseBody
  await crash()
  const twin = (await registry.getTwin('made')).responseBody
  assert.deepEqual([twin.etag, twin.version, twin.tags, twin.properties.desired.lamp], [patched.etag, patched.version, { site: 'plant-7' }, 'on'])
  const moduleAfter = (await registry.getModuleTwin('made', 'edge')).responseBody
  assert.deepEqual([moduleAfter.etag, moduleAfter.properties.desired.rate], [moduleTwin.etag, 5])

  const replaced = await rest(hub, 'PUT', '/twins/made', { tags: { replaced: true }, properties: { desired: { lamp: 'off' } } }, { 'If-Match': '*', 'Content-Type': 'application/json; charset=utf-8' })
  await crash()
  const afterReplace = (await registry.getTwin('made')).responseBody
  assert.deepEqual([afterReplace.etag, afterReplace.tags, afterReplace.properties.desired.lamp], [replaced.etag, { replaced: true }, 'off'])

  const cs = await sasDevice(hub, 'reporting')
  const device = DeviceClient.fromConnectionString(cs, Mqtt)
  await device.setOptions({ ca: trusted.at(-1) })
  await device.open()
  const deviceTwin = await device.getTwin()
  await call((cb) => deviceTwin.properties.reported.update({ firmware: '3.0' }, cb))
  await crash()
  await device.close().catch(() => {})
  assert.equal((await registry.getTwin('reporting')).responseBody.properties.reported.firmware, '3.0')

  // Jobs: created (its spec), cancelled (its state).
  const job = await jobs.scheduleTwinUpdate('later', "deviceId = 'made'", { etag: '*', tags: { later: true } }, tomorrow())
  await jobs.scheduleDeviceMethod('cancelled', '*', { methodName: 'm', payload: { n: 1 }, responseTimeoutInSeconds: 5 }, tomorrow())
  const cancelled = await jobs.cancelJob('cancelled')
  await crash()
  const again = JobClient.fromConnectionString(hub.connectionString, { ca: trusted.at(-1) })
  const later = (await again.getJob('later')).jobStatus
  assert.deepEqual([later.status, later.queryCondition, later.updateTwin.tags, later.startTime], ['scheduled', "deviceId = 'made'", { later: true }, job.jobStatus.startTime])
  const cancelledAfter = (await again.getJob('cancelled')).jobStatus
  assert.deepEqual([cancelledAfter.status, cancelledAfter.endTime], ['cancelled', cancelled.jobStatus.endTime])

  // Configurations: created, updated, removed.
  await registry.addConfiguration(config('kept'))
  await registry.addConfiguration(config('changed'))
  await registry.addConfiguration(config('gone'))
  await registry.updateConfiguration(config('changed', 42), true)
  await registry.removeConfiguration('gone')
  await crash()
  assert.deepEqual((await registry.getConfiguration('kept')).responseBody.content, config('kept').content)
  assert.equal((await registry.getConfiguration('changed')).responseBody.priority, 42)
  await rejectsWith(registry.getConfiguration('gone'), 404, 'ConfigurationNotFound')

  // Cloud-to-device: sent, completed, rejected, abandoned (over HTTP, where the hub answers).
  const sender = await openService(hub, [])
  const pollerCs = await sasDevice(hub, 'poller')
  for (const id of ['complete-me', 'reject-me', 'abandon-me', 'just-sent']) await call((cb) => sender.send('poller', message(id, `body of ${id}`), cb))
  await call((cb) => sender.close(cb))
  await crash()
  const purgedCount = async () => (await rest(hub, 'DELETE', '/devices/poller/commands')).totalMessagesPurged
  const poller = DeviceClient.fromConnectionString(pollerCs, Http)
  await poller.setOptions({ ca: trusted.at(-1), http: { receivePolicy: { interval: 1 } } })
  const received = []
  poller.on('message', (m) => received.push(m))
  await poller.open()
  await until(() => received.length === 4, 20_000, 'the four stored messages')
  assert.deepEqual(received.map((m) => [m.messageId, m.data.toString()]), [
    ['complete-me', 'body of complete-me'], ['reject-me', 'body of reject-me'], ['abandon-me', 'body of abandon-me'], ['just-sent', 'body of just-sent'],
  ])
  const settle = (how, id) => call((cb) => poller[how](received.find((m) => m.messageId === id), cb))
  await settle('complete', 'complete-me')
  await settle('reject', 'reject-me')
  await settle('abandon', 'abandon-me')
  await poller.close()
  await crash()
  // Two left: the abandoned one and the one never settled; the completed and rejected are gone.
  assert.equal(await purgedCount(), 2)
  assert.equal(await hub.stop(), 0)
  running.delete(hub)
})
