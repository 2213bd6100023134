// Microsoft's Python Event Hubs client (azure-eventhub 5.15, pinned in
// __test__/python/requirements.txt, installed into target/python-sdk by scripts/python-sdk.mjs;
// its AMQP client is pyamqp, pure Python) reads the emulator's built-in events endpoint with the
// ready line's eventHubConnectionString as it is (plain AMQP on the events port,
// UseDevelopmentEmulator=true): telemetry a Node device and one of its modules send over MQTT,
// with body, application properties and IoT Hub's annotations, from the earliest event and from
// a sequence number; the hub's and its partitions' properties; a wrong key refused.
// __test__/python/events.py does the reading. Needs python3 (skipped without it, failing in CI).
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { createSasDevice, shimAzureIothub } from './helpers/device-sdks.mjs'
import { hasPython3, pythonSdk } from '../scripts/python-sdk.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'

const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')
const { Client: DeviceClient, ModuleClient, Message } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')

const EVENTS_PY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'python', 'events.py')
const skip = prerequisite(!hasPython3() && 'python3 is not installed')

let python
let hub

/** Sends `messages` from a Node client over MQTT, then closes it. */
async function send(connectionString, messages, Client = DeviceClient) {
  const client = Client.fromConnectionString(connectionString, Mqtt)
  await client.setOptions({ ca: hub.ca })
  await client.open()
  try {
    for (const m of messages) await client.sendEvent(m)
  } finally {
    await client.close()
  }
}

function message(body, props, messageId) {
  const m = new Message(JSON.stringify(body))
  for (const [k, v] of Object.entries(props)) m.properties.add(k, v)
  m.messageId = messageId
  return m
}

before(async () => {
  if (skip) return
  python = pythonSdk()
  hub = await startEmulator({ devices: 0 })
  shimAzureIothub(hub.ca)
  // A device and one of its modules: both land on the device's partition.
  const deviceCs = await createSasDevice(hub, 'py-ev')
  const registry = iothub.Registry.fromConnectionString(hub.connectionString)
  const { responseBody: mod } = await registry.addModule({ deviceId: 'py-ev', moduleId: 'filter' })
  const moduleCs = `HostName=${hub.hostName};DeviceId=py-ev;ModuleId=filter;SharedAccessKey=${mod.authentication.symmetricKey.primaryKey}`
  await send(deviceCs, [0, 1, 2].map((n) => message({ n }, { kind: 'temperature', n: String(n) }, `mid-${n}`)))
  await send(moduleCs, [message({ n: 3 }, { kind: 'filtered' }, 'mid-module')], ModuleClient)
})

after(async () => {
  if (hub) assert.equal(await hub.stop(), 0)
})

/** Runs events.py; resolves with its one JSON line and its exit code. */
function events(args, connectionString = hub.eventHubConnectionString) {
  return new Promise((resolve, reject) => {
    execFile(python, [EVENTS_PY, connectionString, ...args], { timeout: 90_000 }, (err, stdout, stderr) => {
      const line = stdout.trim().split('\n').pop()
      if (!line) return reject(new Error(`events.py printed nothing (${err?.message})\n${stderr}`))
      resolve({ seen: JSON.parse(line), code: err ? err.code : 0, stderr })
    })
  })
}

/** The one partition the device's (and its module's) events are on. */
let partitionId

test('Python azure-eventhub: get_eventhub_properties, get_partition_ids and each partition\'s properties', { skip, timeout: 120_000 }, async () => {
  const { seen, code, stderr } = await events(['info'])
  assert.equal(code, 0, `${JSON.stringify(seen)}\n${stderr}`)
  assert.equal(seen.name, hub.eventHubConnectionString.match(/EntityPath=([^;]+)/)[1])
  assert.deepEqual(seen.partitionIds, ['0', '1', '2', '3'])
  const used = Object.entries(seen.partitions).filter(([, p]) => !p.isEmpty)
  assert.equal(used.length, 1, JSON.stringify(seen.partitions))
  partitionId = used[0][0]
  assert.deepEqual(used[0][1], { beginningSequenceNumber: 0, lastEnqueuedSequenceNumber: 3, isEmpty: false })
})

test('Python azure-eventhub reads a device\'s and its module\'s telemetry from the earliest event (-1) with body, properties and annotations', { skip, timeout: 120_000 }, async () => {
  assert.ok(partitionId, 'the info test found the partition')
  const { seen, code, stderr } = await events(['read', partitionId, '-1', '4'])
  assert.equal(code, 0, `${JSON.stringify(seen)}\n${stderr}`)
  assert.deepEqual(seen.events.map((e) => e.sequenceNumber), [0, 1, 2, 3])
  assert.deepEqual(seen.events.map((e) => JSON.parse(e.body).n), [0, 1, 2, 3])
  assert.deepEqual(seen.events.map((e) => e.properties.kind), ['temperature', 'temperature', 'temperature', 'filtered'])
  assert.deepEqual(seen.events.map((e) => e.properties.n), ['0', '1', '2', undefined])
  for (const e of seen.events) {
    assert.equal(e.system['iothub-connection-device-id'], 'py-ev')
    assert.equal(e.system['iothub-message-source'], 'Telemetry')
    assert.equal(e.system['x-opt-sequence-number'], e.sequenceNumber)
    assert.equal(typeof e.offset, 'string')
  }
  assert.deepEqual(seen.events.map((e) => e.system['iothub-connection-module-id']), [undefined, undefined, undefined, 'filter'])
  assert.deepEqual(seen.events.map((e) => e.system['message-id']), ['mid-0', 'mid-1', 'mid-2', 'mid-module'])
})

test('Python azure-eventhub reads from a sequence number, inclusive and exclusive', { skip, timeout: 120_000 }, async () => {
  assert.ok(partitionId, 'the info test found the partition')
  const inclusive = await events(['read', partitionId, '2', '2'])
  assert.equal(inclusive.code, 0, `${JSON.stringify(inclusive.seen)}\n${inclusive.stderr}`)
  assert.deepEqual(inclusive.seen.events.map((e) => [e.sequenceNumber, JSON.parse(e.body).n]), [[2, 2], [3, 3]])
  const exclusive = await events(['read', partitionId, '2', '1', '--exclusive'])
  assert.equal(exclusive.code, 0, `${JSON.stringify(exclusive.seen)}\n${exclusive.stderr}`)
  assert.deepEqual(exclusive.seen.events.map((e) => e.sequenceNumber), [3])
})

test('Python azure-eventhub with a wrong key is refused', { skip, timeout: 120_000 }, async () => {
  const wrong = hub.eventHubConnectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`)
  const { seen, code } = await events(['info'], wrong)
  assert.equal(code, 1)
  assert.match(seen.error, /^(AuthenticationError|ClientClosedError|EventHubError)/, JSON.stringify(seen))
  assert.match(seen.error, /401|[Uu]nauthorized|signature/, JSON.stringify(seen))
})
