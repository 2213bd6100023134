// What a user on another runtime does with the packages, checked in whatever runtime runs this
// file (Node, Bun: `bun smoke.mjs`; Deno: `deno run -A smoke.mjs`), with no test runner, since
// `node:test` is Node's own (Bun's `bun test` and Deno's `deno test` are other runners):
// the client from ESM and CommonJS, promise and callback forms (AsyncLocalStorage kept), errors,
// a method job run and waited for, a query page, a fleet call, the `iothub-jobs` CLI, and the
// emulator package's startEmulator() (stop, and a forgotten hub not holding the process) and
// `iothub-emulator exec`.
//   smoke.mjs                 the repository's tree (the emulator binary from target/)
//   smoke.mjs --from DIR      the packages installed in DIR/node_modules (npm install of tarballs)
// Prints one line per check and `smoke: N passed on <runtime>`; exits 1 on the first failure.
import assert from 'node:assert/strict'
import { AsyncLocalStorage } from 'node:async_hooks'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const fromAt = process.argv.indexOf('--from')
const from = fromAt > 0 ? path.resolve(process.argv[fromAt + 1]) : null

export const runtimeName = () =>
  globalThis.Deno ? `Deno ${globalThis.Deno.version.deno}` : process.versions.bun ? `Bun ${process.versions.bun}` : `Node.js ${process.versions.node}`

// The package directories, and the emulator binary the tree's launcher would pick.
const jobsDir = from ? path.join(from, 'node_modules', 'iothub-jobs') : ROOT
const emulatorDir = from ? path.join(from, 'node_modules', 'iothub-emulator') : path.join(ROOT, 'packages', 'iothub-emulator')
const env = { ...process.env }
if (!from && !env.IOTHUB_EMULATOR) {
  const built = ['release', 'debug'].map((p) => path.join(ROOT, 'target', p, 'iothub-emulator')).find(existsSync)
  if (!built) throw new Error('smoke: no target/{release,debug}/iothub-emulator: run `npm run build` first')
  env.IOTHUB_EMULATOR = built
  process.env.IOTHUB_EMULATOR = built
}

/**
 * argv running `script` in this same runtime. Deno takes a .js file for CommonJS only inside
 * node_modules or under a package.json of its workspace saying so; the tree's packages/ is
 * neither, hence --unstable-detect-cjs there (an installed package needs no flag).
 */
const scriptArgv = (script, args = []) =>
  globalThis.Deno
    ? [process.execPath, ['run', '-A', ...(from ? [] : ['--unstable-detect-cjs']), script, ...args]]
    : [process.execPath, [script, ...args]]

function run(script, args, { timeoutMs = 60_000, extraEnv = {} } = {}) {
  const [command, argv] = scriptArgv(script, args)
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', reject)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? signal, stdout, stderr })
    })
  })
}

let passed = 0
async function check(name, fn) {
  const started = Date.now()
  try {
    await fn()
  } catch (err) {
    console.log(`not ok ${passed + 1} - ${name}`)
    console.error(err)
    process.exit(1)
  }
  passed += 1
  console.log(`ok ${passed} - ${name} (${Date.now() - started} ms)`)
}

const require = createRequire(path.join(jobsDir, 'package.json'))
const esm = await import(pathToFileURL(path.join(jobsDir, 'lib', 'main.mjs')).href)
const cjs = require(jobsDir)
const { startEmulator } = await import(pathToFileURL(path.join(emulatorDir, 'lib', 'index.mjs')).href)

const hub = await startEmulator({ devices: 6 })
await hub.setDeviceMethod('*', { offline: false, status: 200, payload: { ok: true } })
const client = esm.JobClient.fromConnectionString(hub.connectionString, { ca: hub.ca })
const deviceIds = Array.from({ length: 6 }, (_, i) => `device-${String(i).padStart(4, '0')}`)

await check('ESM and CommonJS entries give the same objects', () => {
  assert.equal(esm.JobClient, cjs.JobClient)
  assert.equal(esm.errors.JobNotFoundError, cjs.errors.JobNotFoundError)
})
await check('a method job on every device: scheduled, waited for, completed', async () => {
  const { jobStatus } = await client.scheduleDeviceMethod('smoke-method', '*', { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 5 }, new Date(), 600)
  assert.equal(jobStatus.jobId, 'smoke-method')
  const job = await client.waitForJob('smoke-method', { pollIntervalMs: 50 })
  assert.equal(job.status, 'completed')
  assert.equal(job.deviceJobStatistics.succeededCount, deviceIds.length)
})
await check('callback form: a twin job, in the caller\'s AsyncLocalStorage context', async () => {
  const als = new AsyncLocalStorage()
  const [err, jobStatus, store] = await new Promise((resolve) =>
    als.run('caller', () => client.scheduleTwinUpdate('smoke-twin', '*', { etag: '*', tags: { site: 'smoke' } }, (e, j) => resolve([e, j, als.getStore()]))),
  )
  assert.equal(err, null)
  assert.equal(jobStatus.jobId, 'smoke-twin')
  assert.equal(store, 'caller')
})
await check('errors: JobNotFoundError, promise and callback forms', async () => {
  await assert.rejects(client.getJob('no-such-job'), (e) => e instanceof cjs.errors.JobNotFoundError)
  const err = await new Promise((resolve) => client.getJob('no-such-job', resolve))
  assert.ok(err instanceof esm.errors.JobNotFoundError, String(err))
})
await check('a query page', async () => {
  const { result } = await client.createQuery('scheduleDeviceMethod', null, 10).next()
  assert.ok(result.some((j) => j.jobId === 'smoke-method'), JSON.stringify(result))
})
await check('a fleet call (runDeviceMethodJob over an id list, in waves)', async () => {
  const result = await client.runDeviceMethodJob({ methodName: 'reboot' }, { deviceIds, waves: [2, 4], pollIntervalMs: 50 })
  assert.equal(result.status, 'completed')
  assert.equal(result.succeededCount, deviceIds.length)
  const rows = []
  for await (const row of result.deviceJobs()) rows.push(row.status === 'completed' && row.deviceId)
  assert.deepEqual(rows.sort(), deviceIds)
})

const cli = path.join(jobsDir, 'lib', 'cli', 'main.mjs')
const cliEnv = { IOTHUB_CONNECTION_STRING: hub.connectionString, IOTHUB_CA_FILE: hub.caPath }
await check('CLI: schedule-method --wait, then list (JSON)', async () => {
  const scheduled = await run(cli, ['schedule-method', '--job-id', 'smoke-cli', '--method-name', 'reboot', '-q', '*', '--wait', '--poll-interval', '0.1', '--output', 'json'], { extraEnv: cliEnv })
  assert.equal(scheduled.code, 0, scheduled.stderr)
  const listed = await run(cli, ['list', '--output', 'json'], { extraEnv: cliEnv })
  assert.equal(listed.code, 0, listed.stderr)
  assert.match(listed.stdout, /"smoke-cli"/)
})
await check('CLI: a job that does not exist is exit 5 with one line', async () => {
  const shown = await run(cli, ['show', 'no-such-job'], { extraEnv: cliEnv })
  assert.equal(shown.code, 5, shown.stderr)
  assert.equal(shown.stderr.trim().split('\n').length, 1, shown.stderr)
})
await check('emulator package: stop() ends the hub', async () => {
  const second = await startEmulator()
  assert.equal((await second.health()).status, 'ok')
  assert.equal(await second.stop(), 0)
})

const tmp = mkdtempSync(path.join(os.tmpdir(), 'iothub-smoke-'))
try {
  await check('emulator package: a forgotten hub does not keep the process alive', async () => {
    const script = path.join(tmp, 'forget.mjs')
    writeFileSync(script, `import { startEmulator } from ${JSON.stringify(pathToFileURL(path.join(emulatorDir, 'lib', 'index.mjs')).href)};\nconst hub = await startEmulator();\nconsole.log(hub.port);\n`)
    const started = Date.now()
    const r = await run(script, [], { timeoutMs: 15_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.ok(Date.now() - started < 10_000, 'exited by itself')
  })
  await check('emulator package: `iothub-emulator exec -- <runtime> CLI list` gets the hub', async () => {
    const [runtime, prefix] = scriptArgv(cli)
    const r = await run(path.join(emulatorDir, 'bin', 'iothub-emulator.js'), ['exec', '--devices', '2', '--', runtime, ...prefix, 'list', '--output', 'json'])
    assert.equal(r.code, 0, r.stderr)
  })
} finally {
  rmSync(tmp, { recursive: true, force: true })
  await hub.stop()
}
console.log(`smoke: ${passed} passed on ${runtimeName()}`)
