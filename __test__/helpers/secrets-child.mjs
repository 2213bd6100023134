// Child process of secrets.test.mjs: runs every secret scenario with whatever logging switches
// the parent put in the environment (AZURE_LOG_LEVEL, DEBUG, RUST_LOG, …) and logs each error
// the way applications do (console.error(err), JSON.stringify(err)). The parent scans this
// process's whole stdout and stderr. The secrets themselves go to the file named by
// SECRETS_OUT, never to stdout/stderr.
import { writeFileSync } from 'node:fs'
import { setup, GOOD_BEARER } from './secret-scenarios.mjs'
import { pkg } from './reliability.mjs'

const { JobClient } = pkg

const { hub, ca, scenarios, allSecrets, stop } = await setup()
const sas = [...allSecrets.sas]
const recorded = []
for (const s of scenarios) {
  // The marker goes to both streams, before the scenario runs, so the parent can attribute every
  // line (ours and the client's own log lines) to its scenario.
  console.log(`--- ${s.name}`)
  console.error(`--- ${s.name}`)
  await hub.control('DELETE', 'requests')
  if (s.faults) await hub.control('PUT', 'faults', { spec: s.faults })
  const err = await s.run()
  await hub.control('DELETE', 'faults')
  for (const r of (await hub.control('GET', 'requests')).requests) {
    if (r.headers?.authorization) recorded.push(r.headers.authorization)
  }
  sas.push(...(s.sas ?? []))
  console.error(err)
  console.log(JSON.stringify(err))
  console.log(String(err))
}
// A short faulted workload too, so retry decisions (logged with their error) are scanned.
console.log('--- faulted workload')
console.error('--- faulted workload')
await hub.control('DELETE', 'requests')
await hub.control('PUT', 'faults', { spec: '429:0.1,503:0.05,reset:0.05,drop:0.05' })
const retry = { maxRetries: 10, initialDelayMs: 2, maxDelayMs: 20 }
const clients = [
  JobClient.fromConnectionString(hub.connectionString, { ca, retry }),
  JobClient.fromTokenCredential(hub.hostName, { getToken: async () => ({ token: GOOD_BEARER, expiresOnTimestamp: Date.now() + 3600_000 }) }, { ca, retry }),
]
await Promise.all(
  Array.from({ length: 40 }, async (_, i) => {
    const c = clients[i % 2]
    const id = `logged-${i}`
    try {
      await c.scheduleDeviceMethod(id, '*', { methodName: 'm' })
      await c.getJob(id)
      await c.cancelJob(id)
    } catch (err) {
      console.error(err)
    }
  }),
)
for (const r of (await hub.control('GET', 'requests')).requests) {
  if (r.headers?.authorization) recorded.push(r.headers.authorization)
}
await hub.control('DELETE', 'faults')
await stop()
process.stderr.write(`--- emulator stderr\n${hub.stderr()}\n`)
writeFileSync(process.env.SECRETS_OUT, JSON.stringify({ ...allSecrets, sas, recorded }))
