// The iothub-jobs demo: a real jobs workflow, against the local emulator by default or against
// the hub named by IOTHUB_CONNECTION_STRING.
//
//   npm run demo                                   # emulator with 20 simulated devices
//   IOTHUB_CONNECTION_STRING='HostName=…' npm run demo
import { readFileSync } from 'node:fs'
import { JobClient } from 'iothub-jobs'
import { startEmulator } from '../scripts/emulator-process.mjs'

async function connect() {
  if (process.env.IOTHUB_CONNECTION_STRING) {
    console.log('Using the hub from IOTHUB_CONNECTION_STRING')
    return { client: JobClient.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING), stop: async () => {} }
  }
  const hub = await startEmulator({ devices: 20, stderr: 'inherit' })
  console.log(`Started iothub-emulator at https://${hub.hostName} with 20 simulated devices`)
  const client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') })
  return { client, stop: hub.stop }
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

const { client, stop } = await connect()
try {
  const suffix = Date.now().toString(36)

  const methodJobId = `demo-reboot-${suffix}`
  console.log(`\nScheduling direct method 'reboot' on devices where tags.group = 'even'`)
  await client.scheduleDeviceMethod(methodJobId, "tags.group = 'even'", {
    methodName: 'reboot',
    payload: { delaySeconds: 0 },
    responseTimeoutInSeconds: 30,
  })
  await follow(client, methodJobId)
  await summarizeDevices(client, methodJobId)

  const twinJobId = `demo-firmware-${suffix}`
  console.log(`\nScheduling a twin update on devices where tags.group = 'odd'`)
  await new Promise((resolve, reject) =>
    client.scheduleTwinUpdate(
      twinJobId,
      "tags.group = 'odd'",
      { etag: '*', tags: { firmware: '2.0.0' }, properties: { desired: { telemetryInterval: 30 } } },
      (err, job) => (err ? reject(err) : resolve(job)),
    ),
  )
  await follow(client, twinJobId)

  console.log('\nJobs on the hub:')
  for await (const job of client.listJobs({ maxPageSize: 10 })) {
    console.log(`  ${job.jobId.padEnd(28)} ${job.type.padEnd(21)} ${job.status}`)
  }
} finally {
  await stop()
}
