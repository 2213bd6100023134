// The test gateway's in-band faults with Microsoft's Python device SDK (azure-iot-device 2.14,
// pinned in __test__/python/requirements.txt, installed into target/python-sdk by
// scripts/python-sdk.mjs), as the SDK's own e2e suite builds the fault message
// (tests/e2e/iothub_e2e/utils.py: KillTcp and ShutDownMqtt, a close reason, a delay). Over MQTT
// and MQTT over WebSockets, with the SDK's automatic reconnect on (__test__/python/fault_device.py):
// the SDK reports the disconnect no sooner than the delay, reconnects by itself, and after it
// telemetry reaches the events endpoint (read with @azure/event-hubs), a direct method is
// answered and a desired-property patch arrives.
//
// The SDK always dials 8883 or 443 (it has no port setting): the emulator runs with
// --standard-ports on 127.0.0.85, which needs root (CI runs as root) and python3; otherwise it
// says why it skips.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { createSasDevice, messageIdsSeen, shimAzureIothub, trustOverTls, until } from './helpers/device-sdks.mjs'
import { hasPython3, pythonSdk } from '../scripts/python-sdk.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'

const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')

const FAULT_DEVICE_PY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'python', 'fault_device.py')
const HOST = '127.0.0.85'
/** The fault's delay: long enough that a fault that ignored it would show. */
const DELAY_S = 2
const skip = prerequisite(process.getuid?.() !== 0
  ? 'the Python SDK dials ports 443 and 8883, which need root (CI runs as root)'
  : !hasPython3() && 'python3 is not installed')

let python
let hub
let registry
let service
let events
const children = new Set()

before(async () => {
  if (skip) return
  python = pythonSdk()
  hub = await startEmulator({ args: ['--standard-ports', '--host', HOST] })
  shimAzureIothub(hub.ca)
  trustOverTls(hub.ca)
  registry = iothub.Registry.fromConnectionString(hub.connectionString)
  service = iothub.Client.fromConnectionString(hub.connectionString)
  events = messageIdsSeen(hub)
})

after(async () => {
  for (const child of children) child.kill('SIGKILL')
  await events?.close()
  await service?.close()
  if (hub) assert.equal(await hub.stop(), 0)
})

/**
 * Starts fault_device.py. `next(match)` waits for the first line after the last one it returned
 * that `match`es (so lines are taken in order); `any(match)` for any line, however late (the
 * SDK's handlers run on threads of their own); `command(obj)` writes a line to it.
 */
function device(connectionString, flags) {
  const child = spawn(python, [FAULT_DEVICE_PY, connectionString, hub.caPath, ...flags], { stdio: ['pipe', 'pipe', 'pipe'] })
  children.add(child)
  let errText = ''
  child.stderr.setEncoding('utf8').on('data', (d) => (errText = (errText + d).slice(-8192)))
  const lines = []
  let taken = 0
  let wake = () => {}
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(JSON.parse(line))
    wake()
  })
  child.once('exit', () => {
    children.delete(child)
    wake()
  })
  async function wait(match, what, ordered, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const i = lines.findIndex((line, j) => (!ordered || j >= taken) && match(line))
      if (i >= 0) {
        if (ordered) taken = i + 1
        return lines[i]
      }
      if (child.exitCode !== null) throw new Error(`fault_device.py exited ${child.exitCode} before ${what}\n${errText}`)
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms: ${JSON.stringify(lines)}\n${errText}`)
      await new Promise((resolve) => {
        wake = resolve
        setTimeout(resolve, 200)
      })
    }
  }
  const next = (match, what) => wait(match, what, true)
  const any = (match, what) => wait(match, what, false)
  const command = (obj) => child.stdin.write(`${JSON.stringify(obj)}\n`)
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode)
    child.once('exit', resolve)
    child.stdin.end()
  })
  return { next, any, command, stop }
}

for (const [name, flags] of [['MQTT (8883)', []], ['MQTT over WebSockets (443)', ['--websockets']]]) {
  for (const kind of ['KillTcp', 'ShutDownMqtt']) {
    test(`Python azure-iot-device over ${name}: ${kind} after its delay; the SDK reconnects; telemetry, a method and a desired patch get through after`, { skip, timeout: 120_000 }, async () => {
      const deviceId = `pyfault-${flags.length ? 'ws' : 'mqtt'}-${kind.toLowerCase()}`
      const dev = device(await createSasDevice(hub, deviceId), flags)
      try {
        await dev.next((l) => l.connected, 'the first connection')

        dev.command({ fault: kind, delay: DELAY_S })
        const sent = await dev.next((l) => l.sent === 'fault', 'the fault message acknowledged')
        // The SDK tells of the drop after the fact: its time is no earlier than the drop.
        const down = await dev.any((l) => l.change === 2, 'the disconnect')
        const after = down.at - sent.began
        assert.ok(after >= DELAY_S, `the disconnect came ${after.toFixed(2)} s after the fault was sent, before its ${DELAY_S} s delay`)
        assert.ok(after < DELAY_S + 5, `the disconnect came ${after.toFixed(2)} s after the fault was sent`)
        await dev.any((l) => l.dropped === 'ConnectionDroppedError', 'the SDK seeing the connection dropped')
        await dev.any((l) => l.change === 3, 'the automatic reconnect')
        await until(async () => (await registry.getTwin(deviceId)).responseBody.connectionState === 'Connected', 10_000, 'the hub sees it connected')

        const id = randomUUID()
        dev.command({ send: id })
        await dev.next((l) => l.sent === id, 'telemetry acknowledged')
        await until(() => events.seen.has(id), 20_000, `message ${id} on the events endpoint`)

        const { result } = await service.invokeDeviceMethod(deviceId, { methodName: 'ping', payload: { kind }, responseTimeoutInSeconds: 10 })
        assert.deepEqual(result, { status: 200, payload: { pong: { kind } } })
        await dev.next((l) => l.method === 'ping', 'the method call')

        await registry.updateTwin(deviceId, { properties: { desired: { after: kind } } }, '*')
        // (After reconnecting, the SDK hands the handler the whole desired section too.)
        await dev.any((l) => l.desired?.after === kind, 'the desired patch')
      } finally {
        assert.equal(await dev.stop(), 0)
      }
    })
  }
}
