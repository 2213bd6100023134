// The iothub-jobs demo: a real jobs workflow, against the local emulator by default or against
// the hub named by IOTHUB_CONNECTION_STRING.
//
//   npm run demo                                   # emulator: 20 simulated + 3 real devices
//   IOTHUB_CONNECTION_STRING='HostName=…' npm run demo
//
// Against the emulator, three real device clients (Microsoft's azure-iot-device SDK over MQTT,
// on the emulator's own TLS port) answer the reboot method and receive the firmware twin patch
// next to the simulated devices. Against a real hub only the jobs part runs (the demo does not
// create devices on someone's hub).
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { createRequire } from 'node:module'
import { JobClient } from 'iothub-jobs'
import { startEmulator } from '../scripts/emulator-process.mjs'

const require = createRequire(import.meta.url)
const REAL_DEVICES = ['sensor-1', 'sensor-2', 'sensor-3']

/** One REST call to the emulator with a SAS token from its connection string. */
function rest(hub, ca, method, path, body) {
  const key = /SharedAccessKey=([^;]+)/.exec(hub.connectionString)[1]
  const se = Math.floor(Date.now() / 1000) + 3600
  const sig = createHmac('sha256', Buffer.from(key, 'base64')).update(`${hub.hostName}\n${se}`).digest('base64')
  const auth = `SharedAccessSignature sr=${hub.hostName}&sig=${encodeURIComponent(sig)}&skn=iothubowner&se=${se}`
  const data = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: hub.port, method, path: `${path}?api-version=2021-04-12`, ca,
        headers: { authorization: auth, 'content-type': 'application/json', 'if-match': '*', 'content-length': Buffer.byteLength(data) } },
      (res) => {
        let text = ''
        res.setEncoding('utf8').on('data', (d) => (text += d)).on('end', () =>
          res.statusCode < 300 ? resolve(JSON.parse(text)) : reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`)))
      },
    )
    req.on('error', reject).end(data)
  })
}

/** Creates the real devices over REST and connects a device SDK client for each. */
async function startRealDevices(hub, ca) {
  const { Client } = require('azure-iot-device')
  const { Mqtt } = require('azure-iot-device-mqtt')
  const clients = []
  for (const deviceId of REAL_DEVICES) {
    const device = await rest(hub, ca, 'PUT', `/devices/${deviceId}`, { deviceId })
    await rest(hub, ca, 'PATCH', `/twins/${deviceId}`, { tags: { group: 'even', real: true } })
    const key = device.authentication.symmetricKey.primaryKey
    const client = Client.fromConnectionString(`HostName=${hub.hostName};DeviceId=${deviceId};SharedAccessKey=${key}`, Mqtt)
    await client.setOptions({ ca })
    await client.open()
    client.onDeviceMethod('reboot', (req, res) => {
      console.log(`  [${deviceId}] reboot requested with ${JSON.stringify(req.payload)}`)
      res.send(200, { rebooted: deviceId }, () => {})
    })
    const twin = await client.getTwin()
    twin.on('properties.desired', (delta) => {
      if (delta.firmware) console.log(`  [${deviceId}] desired firmware ${delta.firmware} ($version ${delta.$version})`)
    })
    clients.push(client)
  }
  console.log(`Connected ${clients.length} real device clients (azure-iot-device over MQTT): ${REAL_DEVICES.join(', ')}`)
  return async () => Promise.all(clients.map((c) => c.close()))
}

async function connect() {
  if (process.env.IOTHUB_CONNECTION_STRING) {
    console.log('Using the hub from IOTHUB_CONNECTION_STRING')
    return { client: JobClient.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING), stop: async () => {} }
  }
  const hub = await startEmulator({ devices: 20, stderr: 'inherit' })
  console.log(`Started iothub-emulator at https://${hub.hostName} with 20 simulated devices`)
  const ca = readFileSync(hub.caPath, 'utf8')
  const client = JobClient.fromConnectionString(hub.connectionString, { ca })
  const stopDevices = await startRealDevices(hub, ca)
  return { client, real: true, stop: async () => { await stopDevices(); await hub.stop() } }
}

/**
 * Waits for a job with `waitForJob`, showing its progress: one line updated in place on a
 * terminal, a plain line per change otherwise (logs, CI).
 */
async function follow(client, jobId) {
  const live = process.stdout.isTTY
  let last = ''
  const show = (job) => {
    const s = job.deviceJobStatistics ?? {}
    const line = `  ${jobId}: ${job.status.padEnd(9)} devices ${s.deviceCount ?? 0}, succeeded ${s.succeededCount ?? 0}, failed ${s.failedCount ?? 0}, running ${s.runningCount ?? 0}, pending ${s.pendingCount ?? 0}`
    if (line === last) return
    last = line
    if (live) process.stdout.write(`\r\x1b[2K${line}`)
    else console.log(line)
  }
  try {
    return await client.waitForJob(jobId, { pollIntervalMs: 250, timeoutMs: 5 * 60_000, onProgress: show })
  } finally {
    if (live && last) process.stdout.write('\n')
  }
}

/** One line per outcome of a method job: how many devices answered which status, and errors. */
async function summarizeDevices(client, jobId) {
  const outcomes = new Map()
  for await (const row of client.listDeviceJobs(jobId, { maxPageSize: 100 })) {
    const key = row.error
      ? `${row.status} (${row.error.code})`
      : `${row.status}, method status ${row.outcome?.deviceMethodResponse?.status ?? '-'}`
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
  }
  console.log(`  per device:`)
  for (const [outcome, count] of outcomes) console.log(`    ${String(count).padStart(4)} × ${outcome}`)
}

const { client, real, stop } = await connect()
try {
  const suffix = Date.now().toString(36)

  const methodJobId = `demo-reboot-${suffix}`
  console.log(`\nScheduling direct method 'reboot' on devices where tags.group = 'even'`)
  await client.scheduleDeviceMethod(methodJobId, "tags.group = 'even'", {
    methodName: 'reboot',
    payload: { delaySeconds: 0 },
    responseTimeoutInSeconds: 30,
    connectTimeoutInSeconds: 10, // real devices subscribe just after connecting
  })
  await follow(client, methodJobId)
  await summarizeDevices(client, methodJobId)

  const twinJobId = `demo-firmware-${suffix}`
  const twinCondition = real ? "tags.group = 'odd' OR tags.real = true" : "tags.group = 'odd'"
  console.log(`\nScheduling firmware 2.0.0 (a twin update) on devices where ${twinCondition}`)
  await new Promise((resolve, reject) =>
    client.scheduleTwinUpdate(
      twinJobId,
      twinCondition,
      { etag: '*', tags: { firmware: '2.0.0' }, properties: { desired: { firmware: '2.0.0', telemetryInterval: 30 } } },
      (err, job) => (err ? reject(err) : resolve(job)),
    ),
  )
  await follow(client, twinJobId)
  if (real) await new Promise((r) => setTimeout(r, 200)) // let the devices print their patch

  console.log('\nJobs on the hub:')
  for await (const job of client.listJobs({ maxPageSize: 10 })) {
    console.log(`  ${job.jobId.padEnd(28)} ${job.type.padEnd(21)} ${job.status}`)
  }
} finally {
  await stop()
}
