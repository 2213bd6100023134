// Runs Microsoft's Node SDK end-to-end suite (e2etests/ of Azure/azure-iot-sdk-node, fetched and
// installed OUTSIDE this repo, see scripts/e2e/README.md) against the emulator, the way a user
// runs it against a hub: `--standard-ports` (HTTPS and MQTT/WebSockets on 443, MQTT on 8883) on a
// loopback address of its own, a plain `HostName` in IOTHUB_CONNECTION_STRING,
// NODE_EXTRA_CA_CERTS = the emulator's CA, a device CA of the run's own that the hub trusts
// (`--device-ca`) in IOTHUB_CA_ROOT_CERT(_KEY), and iothub-jobs' JobClient in place of
// azure-iothub's (jobclient-preload.cjs).
//
//   node scripts/e2e/run.mjs /path/to/e2etests [registry.js twin_e2e_tests.js …]
//
// Needs root (ports 443 and 8883) and `openssl` (the device CA). Prints one line per file:
// passing/failing/pending and the failing titles; the mocha JSON reports stay in the output dir.
// Only what ran now is reported: a file's previous report is removed before it runs, mocha's exit
// code must agree with its report, and the runner exits 1 when a file did not run, disagreed or
// failed.
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, existsSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startEmulator } from '../emulator-process.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ADDRESS = process.env.E2E_ADDRESS ?? '127.0.0.3'
// The files the measure covers: none of them needs DPS. Those that read telemetry
// (device_service.js, empty_messages.js, module_messaging.js, sas_token_tests.js) read it from
// the emulator's built-in events endpoint on EVENTHUB_CONNECTION_STRING; the file-upload ones
// (file_upload.js, upload_disconnect.js) upload to the hub's Azurite (`--storage azurite`, with
// file-upload notifications on, as they expect of the hub).
const DEFAULT_FILES = [
  'job_client.js', 'device_method.js', 'twin_e2e_tests.js', 'registry.js', 'service.js',
  'authentication.js', 'module_crud.js', 'module_twin.js', 'module_methods.js', 'configurations.js',
  'server_validation.js', 'device_acknowledge_tests.js',
  'device_service.js', 'empty_messages.js', 'module_messaging.js', 'sas_token_tests.js',
  'method_disconnect.js', 'twin_disconnect.js', 'c2d_disconnect.js', 'd2c_disconnect.js',
  'file_upload.js', 'upload_disconnect.js',
]
// The files of the test gateway's in-band fault injection (`AzIoTHub_FaultOperationType`):
// Microsoft commented out their configurations and the transports' requires ("Gwv2 does not
// support service-fault-injection commands"), so as shipped they run no test at all. The
// runner runs them as Microsoft wrote them before that: a copy next to the file
// (`test/.emulator-<file>`, removed after) with only those comment markers taken out, each
// configuration's own `testEnabled` kept. A file whose markers are not found did not run.
const FAULT_FILES = new Set(['method_disconnect.js', 'twin_disconnect.js', 'c2d_disconnect.js', 'd2c_disconnect.js'])
// upload_disconnect.js (a file upload while the test gateway kills the device's connection) is
// shipped with its suite skipped (`describe.skip`): it runs as shipped (its tests pending), and
// with E2E_FAULTS_ALL=1, like the fault configurations Microsoft disabled, from a copy without
// the skip. Its tests want KillTcp to raise the device client's `disconnect` event, which
// method_disconnect.js and twin_disconnect.js want the same fault not to raise: no hub passes both.
const SKIPPED_FILES = new Set(['upload_disconnect.js'])
const UNSKIP = Boolean(process.env.E2E_FAULTS_ALL)

const [suite, ...requested] = process.argv.slice(2)
if (!suite || !existsSync(path.join(suite, 'test'))) {
  console.error('usage: node scripts/e2e/run.mjs <path to e2etests (with test/ and node_modules/)> [file.js …]')
  process.exit(2)
}
const files = requested.length ? requested : DEFAULT_FILES
// Absolute: mocha runs in the suite's directory and writes its reports here.
const outDir = path.resolve(process.env.E2E_OUT ?? path.join(HERE, '..', '..', 'target', 'e2e'))
mkdirSync(outDir, { recursive: true })

// A CA of this run for the suite's CA-signed devices (device_identity_helper.js signs each
// device's certificate with IOTHUB_CA_ROOT_CERT_KEY): the hub trusts it through --device-ca.
const deviceCa = makeDeviceCa(path.join(outDir, 'device-ca'))
const hub = await startEmulator({
  args: ['--host', ADDRESS, '--standard-ports', '--device-ca', deviceCa.certPath],
  storage: 'azurite',
  fileNotifications: true,
  stderr: process.env.E2E_EMULATOR_LOG ? 'inherit' : 'pipe',
})
const key = /SharedAccessKey=([^;]+)/.exec(hub.connectionString)[1]
// server_validation.js: a hub whose CA the clients do not trust (its own CA, not in
// NODE_EXTRA_CA_CERTS), where every client must fail the TLS handshake.
const UNTRUSTED_ADDRESS = process.env.E2E_UNTRUSTED_ADDRESS ?? '127.0.0.4'
const untrusted = await startEmulator({ args: ['--host', UNTRUSTED_ADDRESS, '--standard-ports'], stderr: 'pipe' })
const untrustedKey = /SharedAccessKey=([^;]+)/.exec(untrusted.connectionString)[1]
const env = {
  ...process.env,
  IOTHUB_CONNECTION_STRING: `HostName=${ADDRESS};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`,
  // The built-in events endpoint as the ready line names it (with --standard-ports a plain
  // `Endpoint=sb://<address>/`: AMQPS on 5671), read by the files that check telemetry.
  EVENTHUB_CONNECTION_STRING: hub.eventHubConnectionString,
  NODE_EXTRA_CA_CERTS: hub.caPath,
  // The suite reads both as base64 of the PEM text (Buffer.from(…, 'base64')).
  IOTHUB_CA_ROOT_CERT: readFileSync(deviceCa.certPath).toString('base64'),
  IOTHUB_CA_ROOT_CERT_KEY: readFileSync(deviceCa.keyPath).toString('base64'),
  IOTHUB_CONN_STRING_INVALID_CERT: `HostName=${UNTRUSTED_ADDRESS};SharedAccessKeyName=iothubowner;SharedAccessKey=${untrustedKey}`,
  IOTHUB_DEVICE_CONN_STRING_INVALID_CERT: `HostName=${UNTRUSTED_ADDRESS};DeviceId=untrusted;SharedAccessKey=${untrustedKey}`,
  NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${path.join(HERE, 'jobclient-preload.cjs')}`.trim(),
}

const mocha = path.join(suite, 'node_modules', 'mocha', 'bin', 'mocha.js')
const rows = []
try {
  for (const file of files) {
    const report = path.join(outDir, file.replace(/\.js$/, '.json'))
    rmSync(report, { force: true })
    let testFile = path.join('test', file)
    if (FAULT_FILES.has(file)) testFile = withFaultConfigurations(suite, file)
    if (SKIPPED_FILES.has(file) && UNSKIP) testFile = unskipped(suite, file)
    const code = testFile === null
      ? 'no commented-out fault configurations or skipped suite found'
      : await new Promise((resolve) => {
        const child = spawn(process.execPath, [mocha, '--exit', '--reporter', 'json',
          '--reporter-option', `output=${report}`, testFile],
        { cwd: suite, env, stdio: ['ignore', process.env.E2E_VERBOSE ? 'inherit' : 'ignore', 'inherit'] })
        child.on('exit', (c) => resolve(c))
      })
    if (testFile && (FAULT_FILES.has(file) || (SKIPPED_FILES.has(file) && UNSKIP))) rmSync(path.join(suite, testFile), { force: true })
    let stats = { passes: 0, failures: 0, pending: 0 }
    let failing = []
    if (existsSync(report)) {
      const r = JSON.parse(readFileSync(report, 'utf8'))
      stats = r.stats
      failing = r.failures.map((f) => `${f.fullTitle}: ${String(f.err?.message ?? '').split('\n')[0].slice(0, 160)}`)
      // mocha exits with the number of failures (at most 255); anything else means the report
      // does not tell the whole run (a crash after the reporter wrote, a signal).
      if (code !== Math.min(stats.failures, 255)) failing.push(`mocha exited ${code} with ${stats.failures} failures reported`)
    } else {
      failing = [`did not run (exit ${code})`]
    }
    const ok = existsSync(report) && failing.length === 0 && stats.failures === 0
    rows.push({ file, ok, passing: stats.passes, failing: stats.failures, pending: stats.pending, failures: failing })
    console.log(`${file}: ${stats.passes} passing, ${stats.failures} failing, ${stats.pending} pending`)
    for (const f of failing) console.log(`    ✗ ${f}`)
  }
} finally {
  await Promise.all([hub.stop(), untrusted.stop()])
}
writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify(rows, null, 2))
const bad = rows.filter((r) => !r.ok).map((r) => r.file)
console.log(bad.length ? `not passing in full: ${bad.join(', ')}` : `all ${rows.length} files passed in full`)
process.exitCode = bad.length ? 1 : 0

/**
 * Writes `test/.emulator-<file>`: `file` with the block comment around its
 * `protocolAndTermination` entries and the comment marks on its `azure-iot-device-amqp` /
 * `-mqtt` requires taken out; returns its path relative to the suite, or null when the file
 * does not have that shape (a newer suite: then it did not run).
 */
function withFaultConfigurations(suite, file) {
  const text = readFileSync(path.join(suite, 'test', file), 'utf8')
  const block = /((?:let|const) protocolAndTermination = \[)\n\/\*\n([\s\S]*?)\n\*\/\n\];/
  if (!block.test(text)) return null
  const enabled = text
    .replace(block, (_, head, entries) => `${head}\n${entries}\n];`)
    .replace(/^\/\/ ((?:let|const) device(?:Amqp|Mqtt) = require\('azure-iot-device-(?:amqp|mqtt)'\);)$/gm, '$1')
  const relative = path.join('test', `.emulator-${file}`)
  // E2E_FAULTS_ALL=1 runs the configurations Microsoft disabled too (all of d2c_disconnect.js's).
  writeFileSync(path.join(suite, relative), process.env.E2E_FAULTS_ALL
    ? enabled.replace(/testEnabled: false/g, 'testEnabled: true')
    : enabled)
  return relative
}

/**
 * Writes `test/.emulator-<file>`: `file` with its `describe.skip(` made `describe(`; returns
 * its path relative to the suite, or null when the file has no skipped suite (a newer suite:
 * then it did not run).
 */
function unskipped(suite, file) {
  const text = readFileSync(path.join(suite, 'test', file), 'utf8')
  if (!text.includes('describe.skip(')) return null
  const relative = path.join('test', `.emulator-${file}`)
  writeFileSync(path.join(suite, relative), text.replaceAll('describe.skip(', 'describe('))
  return relative
}

/** A self-signed CA (certificate and key, PEM) in `dir`, valid two days; exits on a missing openssl. */
function makeDeviceCa(dir) {
  mkdirSync(dir, { recursive: true })
  const certPath = path.join(dir, 'ca.pem')
  const keyPath = path.join(dir, 'ca.key')
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
      '-subj', '/CN=iothub-jobs e2e device CA', '-keyout', keyPath, '-out', certPath,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (e) {
    console.error(`the device CA: openssl failed (${e.code === 'ENOENT' ? 'not installed' : String(e.stderr).trim().split('\n')[0]})`)
    process.exit(1)
  }
  return { certPath, keyPath }
}
