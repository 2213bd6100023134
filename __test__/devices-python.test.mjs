// Microsoft's Python device SDK (azure-iot-device 2.14, pinned in __test__/python/requirements.txt,
// installed from PyPI into target/python-sdk by scripts/python-sdk.mjs) against the emulator's
// standard ports on 127.0.0.44, from a plain device connection string: the SDK always dials 8883
// (MQTT) or 443 (`websockets=True`, wss://host/$iothub/websocket) and has no port setting. Over
// both transports the device (__test__/python/device.py) takes a method job, a twin job's
// desired patch and reports a property seen by a query; a wrong key is refused.
//
// Needs root (ports 443 and 8883; CI runs as root) and python3; otherwise it says why it skips.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { createSasDevice, serviceScenario, shimAzureIothub } from './helpers/device-sdks.mjs'
import { hasPython3, pythonSdk } from '../scripts/python-sdk.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'

const require = createRequire(import.meta.url)
const { JobClient } = require('..')

const DEVICE_PY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'python', 'device.py')
const HOST = '127.0.0.44'
const skip = prerequisite(process.getuid?.() !== 0
  ? 'the Python SDK dials ports 443 and 8883, which need root (CI runs as root)'
  : !hasPython3() && 'python3 is not installed')

let python
let hub
let jobs
const children = new Set()

before(async () => {
  if (skip) return
  python = pythonSdk()
  hub = await startEmulator({ args: ['--standard-ports', '--host', HOST] })
  shimAzureIothub(readFileSync(hub.caPath, 'utf8'))
  jobs = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') })
})

after(async () => {
  for (const child of children) child.kill('SIGKILL')
  if (hub) assert.equal(await hub.stop(), 0)
})

/** Starts device.py; resolves with its first JSON line and the running child. */
async function device(connectionString, flags) {
  const child = spawn(python, [DEVICE_PY, connectionString, hub.caPath, ...flags], { stdio: ['pipe', 'pipe', 'pipe'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let errText = ''
  child.stderr.setEncoding('utf8').on('data', (d) => (errText = (errText + d).slice(-8192)))
  const lines = createInterface({ input: child.stdout })
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`device.py said nothing within 60 s\n${errText}`)), 60_000)
    lines.once('line', (line) => {
      clearTimeout(timer)
      resolve(JSON.parse(line))
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`device.py exited ${code}\n${errText}`))
    })
  })
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode)
    child.once('exit', resolve)
    child.stdin.end()
  })
  return { first, stop }
}

for (const [name, flags] of [['MQTT (8883)', []], ['MQTT over WebSockets (443)', ['--websockets']]]) {
  const tag = `python-${flags.length ? 'ws' : 'mqtt'}`

  test(`Python azure-iot-device over ${name} with a plain device connection string: method job, twin job, reported property`, { skip, timeout: 120_000 }, async () => {
    const connectionString = await createSasDevice(hub, tag)
    const { first, stop } = await device(connectionString, flags)
    try {
      assert.deepEqual(first, { connected: true })
      await serviceScenario({ hub, jobs, deviceId: tag, tag })
    } finally {
      assert.equal(await stop(), 0)
    }
  })

  test(`Python azure-iot-device over ${name}: a wrong key is refused`, { skip, timeout: 120_000 }, async () => {
    const good = await createSasDevice(hub, `${tag}-wrong`)
    const wrong = good.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`)
    const { first, stop } = await device(wrong, [...flags, '--expect-refusal'])
    await stop()
    assert.equal(first.refused, 'CredentialError', JSON.stringify(first))
  })
}
