// Child process of soak.test.mjs (run with --expose-gc so the samples are taken after a full
// collection): N getJob calls through ONE client against the emulator whose coordinates arrive
// in the environment; prints one JSON line with the RSS / heap / fd samples and timings.
//
//   SOAK_CS=… SOAK_CA=path SOAK_JOB=id [SOAK_CALLS=100000] [SOAK_WARMUP=10000] [SOAK_CONCURRENCY=16]
//   node --expose-gc __test__/helpers/soak-child.mjs
import { readFileSync, readdirSync } from 'node:fs'
import { pkg, pool, sleep } from './reliability.mjs'

const { JobClient } = pkg
const CALLS = Number(process.env.SOAK_CALLS ?? 100_000)
const WARMUP = Number(process.env.SOAK_WARMUP ?? 10_000)
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 16)
const jobId = process.env.SOAK_JOB

const fds = () => readdirSync('/proc/self/fd').length
async function sample() {
  // Two collections with a turn of the event loop between them, so finalizers of native
  // objects (napi references, buffers) have run before we read the numbers.
  for (let k = 0; k < 2; k++) {
    globalThis.gc?.()
    await sleep(50)
  }
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, fds: fds() }
}

const result = { calls: CALLS, warmup: WARMUP, concurrency: CONCURRENCY, gc: typeof globalThis.gc === 'function', failures: 0 }
result.start = await sample()
const client = JobClient.fromConnectionString(process.env.SOAK_CS, { ca: readFileSync(process.env.SOAK_CA, 'utf8') })

let firstError
async function run(count) {
  const t0 = performance.now()
  await pool(count, CONCURRENCY, async () => {
    try {
      const { jobStatus } = await client.getJob(jobId)
      if (jobStatus.jobId !== jobId) throw new Error(`wrong job ${jobStatus.jobId}`)
    } catch (err) {
      result.failures++
      firstError ??= `${err.name}: ${err.message}`
    }
  })
  return performance.now() - t0
}

result.warmupMs = await run(WARMUP)
result.afterWarmup = await sample()
result.restMs = await run(CALLS - WARMUP)
result.end = await sample()
result.firstError = firstError
result.totalMs = result.warmupMs + result.restMs
process.stdout.write(JSON.stringify(result) + '\n')
