// Device-to-consumer benchmark of the built-in events endpoint (not part of npm test): N MQTT
// devices publish telemetry to a fresh emulator while one `EventHubConsumerClient` reads every
// partition through the ready line's `eventHubConnectionString`, as a back end does.
//
//   node bench/events.mjs [--devices=1000] [--rounds=20] [--data-dir] [--out=FILE]
//
// Each round, every device publishes one message (QoS 1, its send time in the body); the next
// round starts when the hub has acknowledged the round. Reports: messages/s from the first
// publish to the last receipt, latency from a device's publish to the consumer's receipt (p50,
// p99; both ends in this process, one clock), the hub's CPU over that window (as a share of one
// core and per message), and the hub's memory per retained message (RSS growth over the run /
// messages retained). With --data-dir the hub keeps its state in a fresh data dir.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startEmulator } from '../scripts/emulator-process.mjs'
import { deviceToken } from './lib/common.mjs'

const require = createRequire(import.meta.url)
const mqtt = require('mqtt')
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs')

const { values: opts } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '20' },
    'data-dir': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
})
const N = Number(opts.devices)
const ROUNDS = Number(opts.rounds)
if (!(N > 0) || !(ROUNDS > 0)) throw new Error('--devices and --rounds must be positive numbers')
const CONCURRENT_CONNECTS = 200

function procStats(pid) {
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return { rssMb: rssKb / 1024, cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 }
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

const dir = opts['data-dir'] ? mkdtempSync(join(tmpdir(), 'bench-events-')) : null
const hub = await startEmulator({ devices: N, args: dir ? ['--data-dir', dir] : [] })
try {
  const ca = readFileSync(hub.caPath, 'utf8')
  const connect = (deviceId) =>
    new Promise((resolve, reject) => {
      const client = mqtt.connect(`mqtts://127.0.0.1:${hub.port}`, {
        clientId: deviceId,
        username: `${hub.hostName}/${deviceId}/?api-version=2021-04-12`,
        password: deviceToken(hub, deviceId),
        ca,
        keepalive: 180,
        reconnectPeriod: 0,
        protocolVersion: 4,
      })
      client.once('error', reject)
      client.once('connect', () => resolve(client))
    })
  const ids = Array.from({ length: N }, (_, i) => `device-${String(i).padStart(4, '0')}`)
  const devices = []
  for (let i = 0; i < ids.length; i += CONCURRENT_CONNECTS) {
    devices.push(...(await Promise.all(ids.slice(i, i + CONCURRENT_CONNECTS).map(connect))))
  }

  const total = N * ROUNDS
  const latencies = []
  let received = 0
  let allReceived
  const done = new Promise((resolve) => (allReceived = resolve))
  const consumer = new EventHubConsumerClient('$Default', hub.eventHubConnectionString)
  const subscription = consumer.subscribe(
    {
      processEvents: async (events) => {
        const now = performance.now()
        for (const event of events) {
          // The client hands a JSON body back parsed, other bodies as bytes.
          const body = Buffer.isBuffer(event.body) ? JSON.parse(event.body) : event.body
          latencies.push(now - body.sentAt)
          if (++received === total) allReceived()
        }
      },
      processError: async (err) => console.error('[bench] consumer:', err.message),
    },
    { startPosition: earliestEventPosition, maxBatchSize: 1000, maxWaitTimeInSeconds: 1 },
  )
  // Readers attached on every partition before the first message.
  const partitions = (await consumer.getEventHubProperties()).partitionIds.length
  await new Promise((r) => setTimeout(r, 2000))

  const before = procStats(hub.pid)
  const t0 = performance.now()
  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(
      devices.map(
        (client, i) =>
          new Promise((resolve, reject) =>
            client.publish(
              `devices/${ids[i]}/messages/events/`,
              JSON.stringify({ sentAt: performance.now(), round, pad: 'x'.repeat(64) }),
              { qos: 1 },
              (err) => (err ? reject(err) : resolve()),
            ),
          ),
      ),
    )
  }
  await done
  const seconds = (performance.now() - t0) / 1000
  const after = procStats(hub.pid)
  await subscription.close()
  await consumer.close()
  await Promise.all(devices.map((c) => new Promise((r) => c.end(true, r))))

  latencies.sort((a, b) => a - b)
  const result = {
    devices: N,
    messages: total,
    partitions,
    dataDir: Boolean(dir),
    seconds: +seconds.toFixed(2),
    messagesPerSecond: Math.round(total / seconds),
    latencyMsP50: +percentile(latencies, 50).toFixed(1),
    latencyMsP99: +percentile(latencies, 99).toFixed(1),
    hubCpuShareOfOneCore: +((after.cpuMs - before.cpuMs) / (seconds * 1000)).toFixed(2),
    hubCpuUsPerMessage: +(((after.cpuMs - before.cpuMs) * 1000) / total).toFixed(1),
    hubRssBytesPerRetainedMessage: Math.round(((after.rssMb - before.rssMb) * 1024 * 1024) / total),
    load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  }
  console.log(JSON.stringify(result))
  if (opts.out) writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`)
} finally {
  await hub.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
}
