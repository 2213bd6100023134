// Device-side benchmark (not part of npm test): per transport, N concurrent MQTT device
// connections to a fresh emulator, then one method job over all of them.
//
//   node bench/devices.mjs [N=10000] [tcp|ws|both=both]   (raise `ulimit -n` above N first,
//                                                           e.g. ulimit -n 65536)
//
// tcp: MQTT over TLS on the HTTPS port; ws: MQTT over WebSockets (`wss://…/$iothub/websocket`,
// subprotocol mqtt) on the same port. The clients are the plain `mqtt` package (what
// azure-iot-device-mqtt is built on, WebSockets through its `ws`) speaking the SDK's topics, so
// the load generator stays light enough to share the 2 cores with the hub.
// Reports per transport: connect time and rate, emulator CPU per connection, emulator RSS before
// and after connecting (and per connection), job time, emulator RSS after the job, emulator CPU
// per method call.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { JobClient } from 'iothub-jobs'
import { startEmulator } from '../scripts/emulator-process.mjs'
import { deviceToken } from './lib/common.mjs'

const require = createRequire(import.meta.url)
const mqtt = require('mqtt')
const N = Number(process.argv[2] ?? 10_000)
const TRANSPORTS = { tcp: 'mqtts', ws: 'wss' }
const which = process.argv[3] ?? 'both'
if (!(which in TRANSPORTS) && which !== 'both') throw new Error(`transport must be tcp, ws or both, not ${which}`)
const CONCURRENT_CONNECTS = 200

function procStats(pid) {
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  const cpuTicks = Number(fields[11]) + Number(fields[12]) // utime + stime
  return { rssMb: rssKb / 1024, cpuMs: (cpuTicks * 1000) / 100 }
}

async function run(transport) {
  const scheme = TRANSPORTS[transport]
  const hub = await startEmulator({ devices: N })
  const started = procStats(hub.pid)
  const rssStarted = started.rssMb
  const ca = readFileSync(hub.caPath, 'utf8')
  function connectDevice(deviceId) {
    return new Promise((resolve, reject) => {
      const url = scheme === 'wss' ? `wss://127.0.0.1:${hub.port}/$iothub/websocket` : `mqtts://127.0.0.1:${hub.port}`
      const client = mqtt.connect(url, {
        clientId: deviceId,
        username: `${hub.hostName}/${deviceId}/?api-version=2021-04-12`,
        password: deviceToken(hub, deviceId),
        ca,
        keepalive: 180,
        reconnectPeriod: 0,
        protocolVersion: 4,
      })
      client.on('message', (topic) => {
        const rid = /\$rid=(\d+)/.exec(topic)?.[1]
        client.publish(`$iothub/methods/res/200/?$rid=${rid}`, '{"ok":true}')
      })
      client.once('error', reject)
      client.once('connect', () =>
        client.subscribe('$iothub/methods/POST/#', { qos: 0 }, (err) => (err ? reject(err) : resolve(client))),
      )
    })
  }

  const ids = Array.from({ length: N }, (_, i) => `device-${String(i).padStart(4, '0')}`)
  const clients = []
  const t0 = performance.now()
  for (let i = 0; i < ids.length; i += CONCURRENT_CONNECTS) {
    clients.push(...(await Promise.all(ids.slice(i, i + CONCURRENT_CONNECTS).map(connectDevice))))
  }
  const connectS = (performance.now() - t0) / 1000
  const afterConnect = procStats(hub.pid)

  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
  const cpuBefore = procStats(hub.pid).cpuMs
  const t1 = performance.now()
  await jobs.scheduleDeviceMethod(`bench-devices-${transport}`, '*', { methodName: 'reboot', responseTimeoutInSeconds: 60 })
  const job = await jobs.waitForJob(`bench-devices-${transport}`, { pollIntervalMs: 200, timeoutMs: 10 * 60_000 })
  const jobS = (performance.now() - t1) / 1000
  const after = procStats(hub.pid)

  const result = {
    transport,
    devices: N,
    connectSeconds: +connectS.toFixed(2),
    connectsPerSecond: Math.round(N / connectS),
    // Load-independent: the emulator's own CPU per connection (TLS handshake, upgrade, CONNECT).
    emulatorCpuMsPerConnect: +((afterConnect.cpuMs - started.cpuMs) / N).toFixed(2),
    emulatorRssMbStarted: +rssStarted.toFixed(1),
    emulatorRssKbPerConnection: Math.round(((afterConnect.rssMb - rssStarted) * 1024) / N),
    jobSeconds: +jobS.toFixed(2),
    succeeded: job.deviceJobStatistics.succeededCount,
    failed: job.deviceJobStatistics.failedCount,
    emulatorRssMbConnected: +afterConnect.rssMb.toFixed(1),
    emulatorRssMbAfterJob: +after.rssMb.toFixed(1),
    emulatorCpuUsPerMethodCall: +(((after.cpuMs - cpuBefore) * 1000) / N).toFixed(1),
  }
  console.log(JSON.stringify(result))
  await Promise.all(clients.map((c) => new Promise((r) => c.end(true, r))))
  await hub.stop()
}

for (const transport of which === 'both' ? Object.keys(TRANSPORTS) : [which]) await run(transport)
