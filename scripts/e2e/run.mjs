// Runs Microsoft's Node SDK end-to-end suite (e2etests/ of Azure/azure-iot-sdk-node, fetched and
// installed OUTSIDE this repo, see scripts/e2e/README.md) against the emulator, the way a user
// runs it against a hub: HTTPS on 443 and MQTT on 8883 of a loopback address of its own, a plain
// `HostName` in IOTHUB_CONNECTION_STRING, NODE_EXTRA_CA_CERTS = the emulator's CA, and
// iothub-jobs' JobClient in place of azure-iothub's (jobclient-preload.cjs).
//
//   node scripts/e2e/run.mjs /path/to/e2etests [registry.js twin_e2e_tests.js …]
//
// Needs root (ports 443 and 8883) and, while the emulator has no --standard-ports, socat (port
// forwards from ADDRESS:443 and ADDRESS:8883 to the emulator's port). Prints one line per file:
// passing/failing/pending and the failing titles; the mocha JSON reports stay in the output dir.
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startEmulator, emulatorBinary } from '../emulator-process.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ADDRESS = process.env.E2E_ADDRESS ?? '127.0.0.3'
// The files the issue measures (none of them needs Event Hubs, Storage or DPS to start).
const DEFAULT_FILES = [
  'job_client.js', 'device_method.js', 'twin_e2e_tests.js', 'registry.js', 'service.js',
  'authentication.js', 'module_crud.js', 'module_twin.js', 'module_methods.js', 'sas_token_tests.js',
]

const [suite, ...requested] = process.argv.slice(2)
if (!suite || !existsSync(path.join(suite, 'test'))) {
  console.error('usage: node scripts/e2e/run.mjs <path to e2etests (with test/ and node_modules/)> [file.js …]')
  process.exit(2)
}
const files = requested.length ? requested : DEFAULT_FILES
const outDir = process.env.E2E_OUT ?? path.join(HERE, '..', '..', 'target', 'e2e')
mkdirSync(outDir, { recursive: true })

const help = execFileSync(emulatorBinary(), ['--help'], { encoding: 'utf8' })
const standardPorts = help.includes('--standard-ports')
const hub = await startEmulator({
  args: ['--host', ADDRESS, ...(standardPorts ? ['--standard-ports'] : [])],
  stderr: process.env.E2E_EMULATOR_LOG ? 'inherit' : 'pipe',
})
const forwards = []
if (!standardPorts) {
  for (const port of [443, 8883]) {
    const child = spawn('socat', [
      `TCP-LISTEN:${port},bind=${ADDRESS},reuseaddr,fork`, `TCP:${ADDRESS}:${hub.port}`,
    ], { stdio: 'inherit' })
    child.on('error', (e) => { console.error(`socat: ${e.message}`); process.exit(1) })
    forwards.push(child)
  }
  await new Promise((r) => setTimeout(r, 300))
}
const key = /SharedAccessKey=([^;]+)/.exec(hub.connectionString)[1]
const env = {
  ...process.env,
  IOTHUB_CONNECTION_STRING: `HostName=${ADDRESS};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`,
  NODE_EXTRA_CA_CERTS: hub.caPath,
  NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${path.join(HERE, 'jobclient-preload.cjs')}`.trim(),
}

const mocha = path.join(suite, 'node_modules', 'mocha', 'bin', 'mocha.js')
const rows = []
try {
  for (const file of files) {
    const report = path.join(outDir, file.replace(/\.js$/, '.json'))
    const code = await new Promise((resolve) => {
      const child = spawn(process.execPath, [mocha, '--exit', '--reporter', 'json',
        '--reporter-option', `output=${report}`, path.join('test', file)],
      { cwd: suite, env, stdio: ['ignore', process.env.E2E_VERBOSE ? 'inherit' : 'ignore', 'inherit'] })
      child.on('exit', (c) => resolve(c))
    })
    let stats = { passes: 0, failures: 0, pending: 0 }
    let failing = []
    if (existsSync(report)) {
      const r = JSON.parse(readFileSync(report, 'utf8'))
      stats = r.stats
      failing = r.failures.map((f) => `${f.fullTitle}: ${String(f.err?.message ?? '').split('\n')[0].slice(0, 160)}`)
    } else {
      failing = [`did not start (exit ${code})`]
    }
    rows.push({ file, passing: stats.passes, failing: stats.failures, pending: stats.pending, failures: failing })
    console.log(`${file}: ${stats.passes} passing, ${stats.failures} failing, ${stats.pending} pending`)
    for (const f of failing) console.log(`    ✗ ${f}`)
  }
} finally {
  for (const f of forwards) f.kill('SIGTERM')
  await hub.stop()
}
writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify(rows, null, 2))
