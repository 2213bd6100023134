// The hub's standard ports (`--standard-ports` on 127.0.0.41): HTTPS and MQTT over WebSockets on
// 443, MQTT on 8883, AMQP on 5671, connection strings with a plain HostName. Microsoft's Node device SDK
// (azure-iot-device + azure-iot-device-mqtt, pinned, unmodified) dials them itself from a plain
// device connection string: `Mqtt` (8883) and `MqttWs` (wss://host:443/$iothub/websocket, which
// it builds with a fixed :443, so it cannot reach any other port), and azure-iot-device-amqp's
// `Amqp` (amqps://host, 5671) and `AmqpWs` (wss://host:443/$iothub/websocket, subprotocol
// AMQPWSB10, the same fixed :443). Each takes a method job, a
// twin job's desired patch and reports a property seen by a query; a wrong key is refused.
// azure-iothub's service `Client` over `AmqpWs` (wss://host:443/$iothub/websocket) sends a
// cloud-to-device message and reads its feedback.
//
// Ports below 1024 need root: CI runs as root; elsewhere the suite says why it skips.
import { execFile } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { emulatorBinary, startEmulator } from './helpers/emulator.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'
import { createSasDevice, nodeDeviceScenario, refusal, shimAzureIothub } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const { JobClient } = require('..')
const iothub = require('azure-iothub')
const { Client: DeviceClient, Message } = require('azure-iot-device')
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt')
const { Amqp, AmqpWs } = require('azure-iot-device-amqp')

const HOST = '127.0.0.41'
const skip = prerequisite(process.getuid?.() !== 0 && 'ports 443, 8883 and 5671 need root (CI runs as root)')

let hub
let ca
let jobs

before(async () => {
  if (skip) return
  hub = await startEmulator({ args: ['--standard-ports', '--host', HOST] })
  ca = readFileSync(hub.caPath, 'utf8')
  shimAzureIothub(ca)
  jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
})

after(async () => {
  if (hub) assert.equal(await hub.stop(), 0)
})

test('the ready line names the standard ports and a plain HostName', { skip }, async () => {
  assert.equal(hub.port, 443)
  assert.equal(hub.hostName, HOST)
  assert.match(hub.connectionString, new RegExp(`^HostName=${HOST.replaceAll('.', '\\.')};SharedAccessKeyName=iothubowner;`))
  const health = await hub.control('GET', 'health')
  assert.equal(health.hostName, HOST)
})

for (const [name, Transport] of [['Mqtt (8883)', Mqtt], ['MqttWs (443, /$iothub/websocket)', MqttWs], ['Amqp (5671)', Amqp], ['AmqpWs (443, /$iothub/websocket)', AmqpWs]]) {
  test(`Node ${name} with a plain device connection string: method job, twin job, reported property`, { skip }, async () => {
    const deviceId = `node-${Transport.name.toLowerCase()}`
    const connectionString = await createSasDevice(hub, deviceId)
    assert.ok(!/HostName=[^;]*:/.test(connectionString), 'no port in HostName')
    const client = DeviceClient.fromConnectionString(connectionString, Transport)
    await client.setOptions({ ca })
    await nodeDeviceScenario(client, { hub, jobs, deviceId })
  })

  test(`Node ${name}: a wrong key is refused`, { skip }, async () => {
    const deviceId = `wrong-${Transport.name.toLowerCase()}`
    const good = await createSasDevice(hub, deviceId)
    const wrong = good.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`)
    const client = DeviceClient.fromConnectionString(wrong, Transport)
    await client.setOptions({ ca })
    const err = await refusal(client)
    assert.equal(err.constructor.name, 'UnauthorizedError', String(err))
  })
}

test("azure-iothub's Client over AmqpWs (443) sends a cloud-to-device message an AmqpWs device completes, with Success feedback", { skip }, async () => {
  const call = (fn) => new Promise((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r))))
  const service = iothub.Client.fromConnectionString(hub.connectionString, iothub.AmqpWs)
  await call((cb) => service.open(cb))
  const device = DeviceClient.fromConnectionString(await createSasDevice(hub, 'c2d-amqpws'), AmqpWs)
  await device.setOptions({ ca })
  try {
    const feedback = new Promise((resolve) => {
      service.getFeedbackReceiver((err, receiver) => {
        assert.ifError(err)
        receiver.on('message', (msg) => resolve(JSON.parse(msg.data.toString())))
      })
    })
    const received = new Promise((resolve) => device.on('message', (msg) => device.complete(msg, () => resolve(msg))))
    await device.open()
    const message = new Message('over websockets')
    message.messageId = 'ws-1'
    message.ack = 'full'
    await call((cb) => service.send('c2d-amqpws', message, cb))
    const got = await received
    assert.equal(got.data.toString(), 'over websockets')
    const [record] = await feedback
    assert.equal(record.originalMessageId, 'ws-1')
    assert.equal(record.statusCode, 'Success')
  } finally {
    await device.close()
    await call((cb) => service.close(cb))
  }
})

/** Runs the emulator (optionally through another command) until it exits: {code, stderr}. */
function runToExit(command, args) {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 20_000 }, (err, _stdout, stderr) => resolve({ code: err?.code, stderr }))
  })
}

test('a second hub on the same standard ports fails with one line', { skip }, async () => {
  const { code, stderr } = await runToExit(emulatorBinary(), ['--standard-ports', '--host', HOST])
  assert.equal(code, 1)
  assert.equal(stderr, `iothub-emulator: cannot listen on ${HOST}:443: the port is already in use\n`)
})

const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p))
test('without root, the standard ports are a one-line error', { skip: skip || prerequisite(!setpriv && 'setpriv (util-linux) is needed to drop root') }, async (t) => {
  const drop = ['--reuid=65534', '--regid=65534', '--clear-groups']
  // A copy any user can reach: the checkout may be under a directory they cannot enter (/root).
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-unprivileged-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, 0o755)
  const binary = path.join(dir, 'iothub-emulator')
  copyFileSync(emulatorBinary(), binary)
  chmodSync(binary, 0o755)
  const { code, stderr } = await runToExit(setpriv, [...drop, binary, '--standard-ports', '--host', '127.0.0.45'])
  assert.equal(code, 1)
  assert.equal(stderr, 'iothub-emulator: cannot listen on 127.0.0.45:443: port 443 needs root (or CAP_NET_BIND_SERVICE)\n')
})
