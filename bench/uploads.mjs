// File-upload benchmark (not part of npm test): N devices each upload small blobs the way
// azure-iot-device does it — getBlobSharedAccessSignature, the blob written to the hub's Azurite
// with @azure/storage-blob, notifyBlobUploadStatus — while one azure-iothub
// getFileNotificationReceiver completes every notification, as a back end does.
//
//   node bench/uploads.mjs [--devices=50] [--uploads=10] [--data-dir] [--out=FILE]
//
// Every device runs its uploads one after the other, all devices at once (over Http, which the
// SDK uses for file upload whatever the device's transport). Reports: notifications/s from the
// first SAS request to the last notification received, the latency of one upload (SAS, blob,
// notify; p50, p99) and of its notification (notify sent → received), and the CPU over that
// window of the hub (share of one core, per notification) and of Azurite (the hub's child). With
// --data-dir the hub keeps its state (and Azurite its blobs) in a fresh data dir.
//
// The clients trust the hub's CA (Azurite's certificate is issued by it) only through
// NODE_EXTRA_CA_CERTS, which Node reads at start: the workload runs in a child process.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const { values: opts } = parseArgs({
  options: {
    devices: { type: 'string', default: '50' },
    uploads: { type: 'string', default: '10' },
    'data-dir': { type: 'boolean', default: false },
    out: { type: 'string' },
    worker: { type: 'string' },
  },
})

function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}

/** The CPU of the hub's children (Azurite), Linux /proc. */
function childrenCpuMs(pid) {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)
  return children.reduce((sum, child) => sum + cpuMs(child), 0)
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

if (opts.worker) await worker(JSON.parse(readFileSync(opts.worker, 'utf8')))
else await main()

async function main() {
  const { startEmulator } = await import('../scripts/emulator-process.mjs')
  const N = Number(opts.devices)
  const UPLOADS = Number(opts.uploads)
  if (!(N > 0) || !(UPLOADS > 0)) throw new Error('--devices and --uploads must be positive numbers')
  const dir = mkdtempSync(join(tmpdir(), 'bench-uploads-'))
  const hub = await startEmulator({ storage: 'azurite', fileNotifications: true, args: opts['data-dir'] ? ['--data-dir', join(dir, 'hub')] : [] })
  try {
    const devices = []
    for (let i = 0; i < N; i++) devices.push((await hub.createDevice(`uploader-${String(i).padStart(4, '0')}`)).connectionString)
    const job = join(dir, 'job.json')
    writeFileSync(job, JSON.stringify({ devices, uploads: UPLOADS, serviceConnectionString: hub.connectionString, hubPid: hub.pid }))
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), `--worker=${job}`], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: hub.caPath },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const result = {
      ...JSON.parse(out.toString().trim().split('\n').pop()),
      dataDir: opts['data-dir'],
      load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    }
    console.log(JSON.stringify(result))
    if (opts.out) writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`)
  } finally {
    await hub.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function worker({ devices, uploads, serviceConnectionString, hubPid }) {
  const { shimAzureIothub } = await import('../__test__/helpers/device-sdks.mjs')
  shimAzureIothub() // azure-iot-device-http and azure-iothub pass `host:port` as https' host
  const require = createRequire(import.meta.url)
  const { Client: DeviceClient } = require('azure-iot-device')
  const { Http } = require('azure-iot-device-http')
  const iothub = require('azure-iothub')
  const { BlockBlobClient } = require('@azure/storage-blob')

  const total = devices.length * uploads
  const notifiedAt = new Map()
  const notificationLatencies = []
  let received = 0
  let allReceived
  const done = new Promise((resolve) => (allReceived = resolve))
  const service = iothub.Client.fromConnectionString(serviceConnectionString)
  await service.open()
  const receiver = await new Promise((resolve, reject) => service.getFileNotificationReceiver((err, r) => (err ? reject(err) : resolve(r))))
  receiver.on('message', (msg) => {
    const { blobName } = JSON.parse(msg.getData().toString())
    notificationLatencies.push(performance.now() - notifiedAt.get(blobName))
    receiver.complete(msg, () => {})
    if (++received === total) allReceived()
  })

  const body = Buffer.from('x'.repeat(1024))
  const uploadLatencies = []
  const clients = devices.map((cs) => DeviceClient.fromConnectionString(cs, Http))
  const before = { hub: cpuMs(hubPid), azurite: childrenCpuMs(hubPid) }
  const t0 = performance.now()
  await Promise.all(clients.map(async (client) => {
    for (let i = 0; i < uploads; i++) {
      const start = performance.now()
      const sas = await client.getBlobSharedAccessSignature(`bench/${i}.bin`)
      await new BlockBlobClient(`https://${sas.hostName}/${sas.containerName}/${sas.blobName}${sas.sasToken}`).upload(body, body.length)
      notifiedAt.set(sas.blobName, performance.now())
      await client.notifyBlobUploadStatus(sas.correlationId, true, 201, 'uploaded')
      uploadLatencies.push(performance.now() - start)
    }
  }))
  await done
  const seconds = (performance.now() - t0) / 1000
  const hubMs = cpuMs(hubPid) - before.hub
  const azuriteMs = childrenCpuMs(hubPid) - before.azurite
  await Promise.all(clients.map((c) => c.close()))
  await service.close()
  uploadLatencies.sort((a, b) => a - b)
  notificationLatencies.sort((a, b) => a - b)
  console.log(JSON.stringify({
    devices: devices.length,
    notifications: total,
    seconds: +seconds.toFixed(2),
    notificationsPerSecond: Math.round(total / seconds),
    uploadMsP50: +percentile(uploadLatencies, 50).toFixed(1),
    uploadMsP99: +percentile(uploadLatencies, 99).toFixed(1),
    notificationMsP50: +percentile(notificationLatencies, 50).toFixed(1),
    notificationMsP99: +percentile(notificationLatencies, 99).toFixed(1),
    hubCpuShareOfOneCore: +(hubMs / (seconds * 1000)).toFixed(2),
    hubCpuUsPerNotification: +((hubMs * 1000) / total).toFixed(1),
    azuriteCpuShareOfOneCore: +(azuriteMs / (seconds * 1000)).toFixed(2),
  }))
  process.exit(0)
}
