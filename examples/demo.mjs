// The iothub-jobs demo: a real jobs workflow, against the local emulator by default or against
// the hub named by IOTHUB_CONNECTION_STRING.
//
//   npm run demo                                   # emulator with 20 simulated devices
//   IOTHUB_CONNECTION_STRING='HostName=…' npm run demo
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { startEmulator } from '../scripts/emulator-process.mjs'

const { JobClient } = createRequire(import.meta.url)('..')

const FINAL = new Set(['completed', 'failed', 'cancelled'])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function connect() {
  if (process.env.IOTHUB_CONNECTION_STRING) {
    console.log('Using the hub from IOTHUB_CONNECTION_STRING')
    return { client: JobClient.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING), stop: async () => {} }
  }
  const hub = await startEmulator(['--devices', '20'])
  console.log(`Started iothub-emulator at https://${hub.hostName} with 20 simulated devices`)
  const client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') })
  return { client, stop: hub.stop }
}

/** Polls a job until it reaches a final status, printing one progress line per change. */
async function follow(client, jobId) {
  let last = ''
  for (;;) {
    const { jobStatus: job } = await client.getJob(jobId)
    const s = job.deviceJobStatistics ?? {}
    const line = `  ${jobId}: ${job.status.padEnd(9)} devices ${s.deviceCount ?? 0}, succeeded ${s.succeededCount ?? 0}, failed ${s.failedCount ?? 0}, running ${s.runningCount ?? 0}, pending ${s.pendingCount ?? 0}`
    if (line !== last) console.log(line)
    last = line
    if (FINAL.has(job.status)) return job
    await sleep(250)
  }
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
  const query = client.createQuery(undefined, undefined, 10)
  while (query.hasMoreResults) {
    const { result } = await query.next()
    for (const job of result) {
      console.log(`  ${job.jobId.padEnd(28)} ${job.type.padEnd(21)} ${job.status}`)
    }
  }
} finally {
  await stop()
}
