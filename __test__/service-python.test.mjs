// Microsoft's Python service SDK (azure-iot-hub 2.7, pinned in __test__/python/requirements.txt,
// installed into target/python-sdk by scripts/python-sdk.mjs) as a back end against the emulator's
// standard ports on 127.0.0.47: __test__/python/service.py drives the registry, twins, a query, a
// direct method, a scheduled method job (IoTHubJobManager) and a cloud-to-device message, over
// AMQP (5671) and AMQP over WebSockets (443, uamqp's /$servicebus/websocket). The message is then
// received by a Node azure-iot-device client, and a wrong service key is refused.
//
// The SDK dials the standard ports with no port setting, so this needs root (CI runs as root) and
// python3; otherwise it says why it skips (in CI, it fails saying so).
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { hasPython3, pythonSdk } from '../scripts/python-sdk.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'

const require = createRequire(import.meta.url)
const { Client: DeviceClient } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')

const SERVICE_PY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'python', 'service.py')
const HOST = '127.0.0.47'
const skip = prerequisite(process.getuid?.() !== 0
  ? 'the Python service SDK dials ports 443 and 5671, which need root (CI runs as root)'
  : !hasPython3() && 'python3 is not installed')

let python
let hub

before(async () => {
  if (skip) return
  python = pythonSdk()
  hub = await startEmulator({ args: ['--standard-ports', '--host', HOST, '--devices', '2'] })
})

after(async () => {
  if (hub) assert.equal(await hub.stop(), 0)
})

/** Runs service.py; resolves with its JSON lines (keyed by step) and its exit code. */
function service(args, connectionString = hub.connectionString) {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [SERVICE_PY, connectionString, hub.caPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    const steps = {}
    let errText = ''
    child.stderr.setEncoding('utf8').on('data', (d) => (errText = (errText + d).slice(-8192)))
    createInterface({ input: child.stdout }).on('line', (line) => {
      const seen = JSON.parse(line)
      steps[seen.step ?? 'done'] = seen
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 100_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ steps, code, errText })
    })
  })
}

/** The first cloud-to-device message of a device, received (and completed) by azure-iot-device over MQTT. */
async function receiveOne(deviceId, key) {
  const client = DeviceClient.fromConnectionString(`HostName=${HOST};DeviceId=${deviceId};SharedAccessKey=${key}`, Mqtt)
  await client.setOptions({ ca: hub.ca })
  try {
    const received = new Promise((resolve) => client.on('message', (msg) => {
      client.complete(msg, () => resolve(msg))
    }))
    await client.open()
    return await Promise.race([
      received,
      new Promise((_, reject) => setTimeout(() => reject(new Error('no cloud-to-device message within 30 s')), 30_000)),
    ])
  } finally {
    await client.close()
  }
}

for (const transport of ['amqp', 'websocket']) {
  test(`Python azure-iot-hub over ${transport === 'amqp' ? 'AMQP (5671)' : 'AMQP over WebSockets (443)'}: registry, twin, query, method, job, cloud-to-device`, { skip, timeout: 180_000 }, async () => {
    const deviceId = `py-service-${transport}`
    const key = randomBytes(32).toString('base64')
    const { steps, code, errText } = await service([deviceId, key, transport])
    assert.equal(code, 0, `${JSON.stringify(steps)}\n${errText}`)
    assert.deepEqual(steps.create, { step: 'create', deviceId, status: 'enabled', etag: true })
    assert.deepEqual(steps.update, { step: 'update', status: 'disabled', after: 'enabled' })
    assert.deepEqual(steps.twin, { step: 'twin', tags: { lang: 'python' }, desired: 5 })
    assert.ok(steps.query.deviceIds.includes(deviceId), JSON.stringify(steps.query))
    assert.deepEqual(steps.method, { step: 'method', status: 200, payload: { ok: true } })
    assert.deepEqual(steps.job, { step: 'job', created: 'queued', status: 'completed', succeeded: 2 })
    assert.deepEqual(steps.c2d, { step: 'c2d', sent: true })

    const message = await receiveOne(deviceId, key)
    assert.equal(message.data.toString(), 'hello from python')
    assert.equal(message.messageId, 'py-c2d-1')
    assert.equal(message.properties.getValue('lang'), 'python')
  })
}

test('Python azure-iot-hub: a cloud-to-device send with a wrong service key is refused', { skip, timeout: 180_000 }, async () => {
  const wrong = hub.connectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`)
  const { steps, code } = await service(['device-0000', 'unused', 'amqp', '--c2d-only'], wrong)
  assert.equal(code, 1)
  assert.match(steps.c2d.error, /^(AuthenticationException|TokenAuthFailure|Exception)/, JSON.stringify(steps.c2d))
})
