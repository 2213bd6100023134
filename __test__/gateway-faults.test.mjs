// The test gateway's in-band fault injection, as Microsoft's e2e suites use it: a device message
// with `AzIoTHub_FaultOperationType` (and `…CloseReason`, `…DelayInSecs`) breaks that device's
// connection in the way it names. Shown with the Node device SDK (azure-iot-device-mqtt and
// -amqp, pinned, unmodified) as the `*_disconnect.js` files use it: with `NoRetry` the client
// reports the fault as a `disconnect`; it opens again, and a message sent after arrives on the
// events endpoint (read with @azure/event-hubs). A message without the property, or naming the
// other transport's fault, leaves the connection alone.
import { createRequire } from 'node:module'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'

import { startEmulator } from './helpers/emulator.mjs'
import { createSasDevice, messageIdsSeen, shimAzureIothub, trustOverTls, until } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')
const { Client: DeviceClient, Message } = require('azure-iot-device')
const { NoRetry } = require('azure-iot-common')
const { Mqtt } = require('azure-iot-device-mqtt')
const { Amqp } = require('azure-iot-device-amqp')

let hub
let events

before(async () => {
  hub = await startEmulator({ devices: 0 })
  shimAzureIothub(hub.ca)
  trustOverTls(hub.ca)
  events = messageIdsSeen(hub)
})

after(async () => {
  await events?.close()
  assert.equal(await hub.stop(), 0)
})

function faultMessage(kind, delaySecs = 0) {
  const m = new Message('')
  m.properties.add('AzIoTHub_FaultOperationType', kind)
  m.properties.add('AzIoTHub_FaultOperationCloseReason', ` ${kind} from the test `)
  m.properties.add('AzIoTHub_FaultOperationDelayInSecs', String(delaySecs))
  return m
}

function disconnected(client, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no disconnect within ${timeoutMs} ms`)), timeoutMs)
    client.once('disconnect', () => { clearTimeout(timer); resolve() })
  })
}

/** A device client on `Transport` that reports a lost connection instead of retrying. */
async function openWithoutRetry(connectionString, Transport) {
  const client = DeviceClient.fromConnectionString(connectionString, Transport)
  client.setRetryPolicy(new NoRetry())
  await client.setOptions({ ca: hub.ca })
  await client.open()
  return client
}

/** Sends a message with a fresh id and waits until the events endpoint has it. */
async function arrives(client) {
  const m = new Message(JSON.stringify({ after: 'fault' }))
  m.messageId = randomUUID()
  await client.sendEvent(m)
  await until(() => events.seen.has(m.messageId), 20_000, `message ${m.messageId} on the events endpoint`)
}

/**
 * Opens a device on `Transport` without retries, readies the links the fault names (`prepare`),
 * sends the fault, sees the disconnect, opens again and sends a message that arrives.
 */
async function faultAndRecover(deviceId, Transport, kind, prepare = async () => {}) {
  const cs = await createSasDevice(hub, deviceId)
  const client = await openWithoutRetry(cs, Transport)
  try {
    await prepare(client, deviceId)
    await arrives(client)
    const gone = disconnected(client, 15_000)
    await client.sendEvent(faultMessage(kind)).catch(() => {})
    await gone
    await client.open()
    await arrives(client)
  } finally {
    client.removeAllListeners('disconnect')
    await client.close().catch(() => {})
  }
}

const listenCloudToDevice = async (client, deviceId) => {
  // `on`, not `once`: the SDK detaches the link when the last listener goes.
  const got = new Promise((resolve) => client.on('message', (m) => client.complete(m, resolve)))
  const service = iothub.Client.fromConnectionString(hub.connectionString)
  await service.open()
  await service.send(deviceId, new Message('ping'))
  await got
  await service.close()
}
const answerMethods = async (client, deviceId) => {
  client.onDeviceMethod('ping', (req, res) => res.send(200, { pong: true }))
  const service = iothub.Client.fromConnectionString(hub.connectionString)
  await until(async () => {
    try {
      const { result } = await service.invokeDeviceMethod(deviceId, { methodName: 'ping', responseTimeoutInSeconds: 5 })
      return result.status === 200
    } catch {
      return false
    }
  }, 20_000, 'the method link')
}
const useTwin = async (client) => { await client.getTwin() }

for (const [kind, prepare] of [
  ['KillTcp'], ['KillAmqpConnection'], ['KillAmqpSession'], ['ShutDownAmqp'],
  ['KillAmqpCBSLinkReq'], ['KillAmqpCBSLinkResp'], ['KillAmqpD2CLink'],
  ['KillAmqpC2DLink', listenCloudToDevice],
  ['KillAmqpMethodReqLink', answerMethods], ['KillAmqpMethodRespLink', answerMethods],
  ['KillAmqpTwinLinkReq', useTwin], ['KillAmqpTwinLinkResp', useTwin],
]) {
  test(`AMQP: ${kind} is seen by the device, which opens again and sends`, async () => {
    await faultAndRecover(`gf-amqp-${kind.toLowerCase()}`, Amqp, kind, prepare)
  })
}

for (const kind of ['KillTcp', 'ShutDownMqtt']) {
  test(`MQTT: ${kind} is seen by the device, which opens again and sends`, async () => {
    await faultAndRecover(`gf-mqtt-${kind.toLowerCase()}`, Mqtt, kind)
  })
}

test('the delay runs on the emulator clock; other messages and the other transport\'s faults leave the connection alone', async () => {
  const cs = await createSasDevice(hub, 'gf-delay')
  const client = await openWithoutRetry(cs, Mqtt)
  let drops = 0
  client.on('disconnect', () => { drops += 1 })
  try {
    const plain = new Message('')
    plain.properties.add('AzIoTHub_FaultOperationCloseReason', 'no type: not a fault')
    await client.sendEvent(plain)
    await client.sendEvent(faultMessage('ShutDownAmqp'))
    await client.sendEvent(faultMessage('NotAFault'))
    await arrives(client)
    assert.equal(drops, 0, 'still connected')
    // 30 s of delay: nothing happens until the clock is advanced past it.
    await client.sendEvent(faultMessage('KillTcp', 30))
    await new Promise((r) => setTimeout(r, 1500))
    assert.equal(drops, 0, 'not before the delay')
    const gone = disconnected(client, 10_000)
    await hub.advanceTime(31)
    await gone
    assert.equal(drops, 1, 'after the clock passed the delay')
  } finally {
    client.removeAllListeners('disconnect')
    await client.close().catch(() => {})
  }
})

test('a link fault names one link: a device that never opened its twin links keeps its connection', async () => {
  const cs = await createSasDevice(hub, 'gf-other-link')
  const client = await openWithoutRetry(cs, Amqp)
  let drops = 0
  client.on('disconnect', () => { drops += 1 })
  try {
    await client.sendEvent(faultMessage('KillAmqpTwinLinkReq'))
    await client.sendEvent(faultMessage('ShutDownMqtt'))
    await new Promise((r) => setTimeout(r, 1500))
    await arrives(client)
    assert.equal(drops, 0, 'no disconnect')
  } finally {
    client.removeAllListeners('disconnect')
    await client.close().catch(() => {})
  }
})
