// The emulator's data dir (`--data-dir`) against the real binary: SIGKILL, restart, and what a
// client wrote is still there — devices and their keys (Microsoft's device SDK connects with the
// old connection string and the old CA), twins, jobs and their rows (iothub-jobs with the old
// service connection string). Also: no answered write is lost under load, a running job resumes,
// a scheduled one keeps its start time, a dir in use or of another version is refused, and
// --ca-cert/--ca-key bring a CA.
//
// Each hub restarts on the same address and port (its own loopback address, 127.0.0.71), so the
// old connection strings name it. azure-iothub passes HostName straight to https.request, so its
// requests get the port split off and the CA added here (harness only, as devices-mqtt does).
import https from 'node:https'
import tls from 'node:tls'
import { execFileSync, spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test, after } from 'node:test'
import assert from 'node:assert/strict'

import { emulatorBinary, startEmulator } from './helpers/emulator.mjs'

const require = createRequire(import.meta.url)
const { JobClient } = require('..')
const iothub = require('azure-iothub')
const { Client: DeviceClient } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')

const HOST = '127.0.0.71'
const dirs = []
const running = new Set()

function dataDir() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-emulator-data-'))
  dirs.push(dir)
  return dir
}

after(async () => {
  await Promise.all([...running].map((hub) => hub.stop()))
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** A hub on `dir`; `port` pins the port of a previous run (the old connection strings name it). */
async function start(dir, { port = 0, devices, args = [] } = {}) {
  const hub = await startEmulator({ devices, args: ['--host', HOST, '--port', String(port), '--data-dir', dir, ...args] })
  running.add(hub)
  return hub
}

/** What a crash does: SIGKILL, no chance to write anything more. */
async function kill(hub) {
  hub.kill('SIGKILL')
  const code = await hub.stop()
  running.delete(hub)
  assert.equal(code, 'SIGKILL')
}

// azure-iothub has no CA option and no port: both added to its requests (see the top).
let shimCa = null
const original = https.request
https.request = function requestWithPort(options, ...rest) {
  if (shimCa && options && typeof options === 'object' && typeof options.host === 'string' && options.port === undefined) {
    const m = /^(.*):(\d+)$/.exec(options.host)
    if (m && !m[1].includes(':')) options = { ...options, host: m[1], port: Number(m[2]), ca: shimCa }
  }
  return original.call(this, options, ...rest)
}

/** SIGKILL, then the same dir on the same port (the old connection strings name it). */
async function restart(hub, dir, options = {}) {
  const { port } = hub
  await kill(hub)
  return start(dir, { ...options, port })
}

async function stop(hub) {
  assert.equal(await hub.stop(), 0)
  running.delete(hub)
}

const promise = (f) => new Promise((resolve, reject) => f((err, result) => (err ? reject(err) : resolve(result))))

async function deviceRows(jobs, jobId) {
  const rows = []
  for await (const row of jobs.listDeviceJobs(jobId)) rows.push(row)
  return rows
}

test('after SIGKILL the hub keeps its keys, CA, devices, twins, jobs and rows; old connection strings and the old CA still connect', async () => {
  const dir = dataDir()
  let hub = await start(dir, { devices: 4 })
  const ca = readFileSync(hub.caPath, 'utf8')
  shimCa = ca
  const registry = iothub.Registry.fromConnectionString(hub.connectionString)
  const { responseBody: device } = await registry.create({ deviceId: 'flashed' })
  const deviceCs = `HostName=${hub.hostName};DeviceId=flashed;SharedAccessKey=${device.authentication.symmetricKey.primaryKey}`
  await promise((done) => registry.updateTwin('flashed', { tags: { site: 'plant-7' }, properties: { desired: { interval: 30 } } }, '*', done))

  const client = DeviceClient.fromConnectionString(deviceCs, Mqtt)
  await client.setOptions({ ca })
  await client.open()
  const twin = await client.getTwin()
  await promise((done) => twin.properties.reported.update({ firmware: '2.1.0' }, done))
  await client.close()

  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
  await jobs.scheduleTwinUpdate('tag-all', '*', { etag: '*', tags: { patched: true } })
  const tagged = await jobs.waitForJob('tag-all', { pollIntervalMs: 50, timeoutMs: 30_000 })
  assert.equal(tagged.deviceJobStatistics.succeededCount, 5)
  const rows = await deviceRows(jobs, 'tag-all')
  const twinBefore = await promise((done) => registry.getTwin('flashed', done))
  const before = { connectionString: hub.connectionString, caPath: hub.caPath, port: hub.port }

  hub = await restart(hub, dir, { devices: 4 })
  assert.equal(hub.connectionString, before.connectionString, 'the hub key is the same')
  assert.equal(hub.caPath, before.caPath)
  assert.equal(readFileSync(hub.caPath, 'utf8'), ca, 'the CA is the same')

  // The old service connection string with iothub-jobs: the job, its rows, a new job.
  const again = JobClient.fromConnectionString(before.connectionString, { ca })
  const { jobStatus } = await again.getJob('tag-all')
  assert.deepEqual(jobStatus, tagged)
  assert.deepEqual(await deviceRows(again, 'tag-all'), rows)

  const twinAfter = await promise((done) => iothub.Registry.fromConnectionString(before.connectionString).getTwin('flashed', done))
  for (const key of ['etag', 'version', 'tags']) assert.deepEqual(twinAfter[key], twinBefore[key], key)
  assert.deepEqual(twinAfter.properties.desired, twinBefore.properties.desired)
  assert.deepEqual(twinAfter.properties.reported, twinBefore.properties.reported)
  assert.equal(twinAfter.properties.reported.firmware, '2.1.0')
  assert.equal(twinAfter.tags.patched, true)

  // The device flashed with yesterday's connection string and CA connects and answers a job.
  const reborn = DeviceClient.fromConnectionString(deviceCs, Mqtt)
  await reborn.setOptions({ ca })
  await reborn.open()
  try {
    reborn.onDeviceMethod('reboot', (request, response) => response.send(200, { back: true }, () => {}))
    await again.scheduleDeviceMethod('reboot-flashed', "deviceId = 'flashed'", { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 })
    const done = await again.waitForJob('reboot-flashed', { pollIntervalMs: 50, timeoutMs: 30_000 })
    assert.equal(done.deviceJobStatistics.succeededCount, 1)
    const [row] = await deviceRows(again, 'reboot-flashed')
    assert.deepEqual(row.outcome.deviceMethodResponse, { status: 200, payload: { back: true } })
  } finally {
    await reborn.close()
  }
  await stop(hub)
})

test('SIGKILL while 16 clients schedule jobs loses no job that was answered 200', async () => {
  const dir = dataDir()
  let hub = await start(dir, { devices: 8 })
  const ca = readFileSync(hub.caPath, 'utf8')
  const answered = []
  let killed = false
  const client = async (c) => {
    const jobs = JobClient.fromConnectionString(hub.connectionString, { ca, retry: false, timeoutMs: 5_000 })
    for (let n = 0; !killed; n++) {
      const id = `c${c}-${n}`
      try {
        await jobs.scheduleTwinUpdate(id, "tags.group = 'even'", { etag: '*', tags: { by: id } })
        answered.push(id)
      } catch {
        return // the hub is gone
      }
    }
  }
  const clients = Array.from({ length: 16 }, (_, c) => client(c))
  while (answered.length < 200) await new Promise((r) => setTimeout(r, 20))
  const port = hub.port
  hub.kill('SIGKILL')
  killed = true
  await Promise.all(clients)
  await kill(hub)

  hub = await start(dir, { port })
  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
  const stored = new Set()
  for await (const job of jobs.listJobs()) stored.add(job.jobId)
  const lost = answered.filter((id) => !stored.has(id))
  assert.deepEqual(lost, [], `${lost.length} of ${answered.length} answered jobs are gone`)
  await stop(hub)
})

test('a running job resumes after SIGKILL and a scheduled one keeps its start time', async () => {
  const dir = dataDir()
  let hub = await start(dir, { devices: 20 })
  const ca = readFileSync(hub.caPath, 'utf8')
  let jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
  // The odd devices take 4 s to answer: killed mid-job, the even ones are done.
  for (let i = 1; i < 20; i += 2) {
    await hub.control('PUT', `devices/device-${String(i).padStart(4, '0')}/method`, { delayMs: 4_000 })
  }
  const startTime = new Date(Date.now() + 3_600_000)
  startTime.setMilliseconds(0)
  await jobs.scheduleDeviceMethod('later', '*', { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 30 }, startTime)
  await jobs.scheduleDeviceMethod('slow', '*', { methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 30 })
  for (;;) {
    const { jobStatus } = await jobs.getJob('slow')
    if (jobStatus.deviceJobStatistics.succeededCount === 10) break
    await new Promise((r) => setTimeout(r, 50))
  }
  // The runner writes its progress every 200 ms: wait until the 10 rows are in the database.
  const storedRows = () => Number(execFileSync('python3', ['-c', `import sqlite3,sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM device_jobs").fetchone()[0])`, path.join(dir, 'hub.db')], { encoding: 'utf8' }))
  for (let i = 0; i < 100 && storedRows() < 10; i++) await new Promise((r) => setTimeout(r, 50))
  assert.equal(storedRows(), 10)
  hub = await restart(hub, dir)
  jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
  const { jobStatus: resumed } = await jobs.getJob('slow')
  assert.equal(resumed.status, 'running')
  assert.equal(resumed.deviceJobStatistics.succeededCount, 10)
  const done = await jobs.waitForJob('slow', { pollIntervalMs: 100, timeoutMs: 30_000 })
  assert.equal(done.deviceJobStatistics.succeededCount, 20)
  const { devices } = await hub.control('GET', 'devices')
  for (const d of devices) {
    const odd = Number(d.deviceId.slice(-4)) % 2 === 1
    // Only the devices the job had not reached are asked after the restart.
    assert.equal(d.methodCalls, odd ? 1 : 0, d.deviceId)
  }
  const { jobStatus: later } = await jobs.getJob('later')
  assert.equal(later.status, 'scheduled')
  assert.equal(new Date(later.startTime).getTime(), startTime.getTime())
  await stop(hub)
})

test('POST /_emulator/reset empties the data dir too (keeping the hub key and CA)', async () => {
  const dir = dataDir()
  let hub = await start(dir, { devices: 3 })
  const ca = readFileSync(hub.caPath, 'utf8')
  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
  await jobs.scheduleTwinUpdate('before-reset', '*', { etag: '*', tags: { x: 1 } })
  await jobs.waitForJob('before-reset', { pollIntervalMs: 50, timeoutMs: 30_000 })
  await hub.control('POST', 'devices', [{ deviceId: 'extra' }])
  await hub.control('POST', 'reset')
  const { connectionString } = hub
  hub = await restart(hub, dir)
  assert.equal(hub.connectionString, connectionString)
  const { devices } = await hub.control('GET', 'devices')
  assert.deepEqual(devices.map((d) => d.deviceId), ['device-0000', 'device-0001', 'device-0002'])
  assert.equal(devices[0].tags.x, undefined)
  assert.deepEqual((await hub.control('GET', 'jobs')).jobs, [])
  await stop(hub)
})

/** Runs the binary to its end; a refused start is one line on stderr and exit code 1. */
function refused(args) {
  const run = spawnSync(emulatorBinary(), ['--host', HOST, ...args], { encoding: 'utf8', timeout: 30_000 })
  assert.equal(run.status, 1, run.stderr)
  assert.equal(run.stdout, '')
  const lines = run.stderr.trim().split('\n')
  assert.equal(lines.length, 1, run.stderr)
  return lines[0]
}

test('a data dir in use, or written by another store version, is refused with one line and left as it was', async () => {
  const dir = dataDir()
  const hub = await start(dir, { devices: 2 })
  assert.match(refused(['--data-dir', dir]), /^iothub-emulator: the data dir .* is in use by another iothub-emulator \(pid \d+\)$/)
  await stop(hub)

  // A newer version: the schema_version row says so (python3's sqlite3 edits it). (An older
  // one is brought up to date: the store's own tests show it.)
  const db = path.join(dir, 'hub.db')
  execFileSync('python3', ['-c', `import sqlite3,sys
c=sqlite3.connect(sys.argv[1]); c.execute("UPDATE meta SET value='99' WHERE key='schema_version'"); c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()`, db])
  const bytes = readFileSync(db)
  assert.match(refused(['--data-dir', dir]), /written by another iothub-emulator store version \(99; this emulator reads 1 to 4\)/)
  assert.deepEqual(readFileSync(db), bytes, 'the refused store is untouched')

  const notOurs = dataDir()
  writeFileSync(path.join(notOurs, 'hub.db'), 'my notes, not a database\n'.repeat(100))
  assert.match(refused(['--data-dir', notOurs]), /hub\.db is not an iothub-emulator store/)
  assert.equal(readFileSync(path.join(notOurs, 'hub.db'), 'utf8'), 'my notes, not a database\n'.repeat(100))
})

test('--ca-cert/--ca-key: the hub serves with that CA; a bad or mismatched pair is one line', async () => {
  // Two CAs, each taken from a data dir's meta table (the emulator made them).
  const pairs = []
  for (let i = 0; i < 2; i++) {
    const dir = dataDir()
    const hub = await start(dir)
    await stop(hub)
    const pems = JSON.parse(execFileSync('python3', ['-c', `import sqlite3,sys,json
c=sqlite3.connect(sys.argv[1]); print(json.dumps(dict(c.execute("SELECT key, value FROM meta WHERE key IN ('ca_cert','ca_key')").fetchall())))`, path.join(dir, 'hub.db')], { encoding: 'utf8' }))
    const cert = path.join(dir, 'mine.pem')
    const key = path.join(dir, 'mine.key')
    writeFileSync(cert, pems.ca_cert)
    writeFileSync(key, pems.ca_key)
    pairs.push({ cert, key, pem: pems.ca_cert })
  }
  const [a, b] = pairs
  const hub = await startEmulator({ devices: 1, args: ['--host', HOST, '--ca-cert', a.cert, '--ca-key', a.key] })
  running.add(hub)
  assert.equal(hub.caPath, a.cert)
  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca: a.pem })
  await jobs.scheduleDeviceMethod('with-my-ca', '*', { methodName: 'm', payload: {}, responseTimeoutInSeconds: 10 })
  assert.equal((await jobs.waitForJob('with-my-ca', { pollIntervalMs: 50, timeoutMs: 30_000 })).status, 'completed')
  const other = JobClient.fromConnectionString(hub.connectionString, { ca: b.pem, retry: false })
  await assert.rejects(other.getJob('with-my-ca'), 'another CA does not verify the hub')
  await stop(hub)

  assert.match(refused(['--ca-cert', a.cert, '--ca-key', b.key]), /the key does not belong to the certificate$/)
  assert.match(refused(['--ca-cert', a.key, '--ca-key', a.key]), /the certificate is not a PEM certificate$/)
  assert.match(refused(['--ca-cert', a.cert, '--ca-key', a.cert]), /the key is not a PEM private key/)
  assert.match(refused(['--ca-cert', path.join(a.cert, 'nope'), '--ca-key', a.key]), /cannot read/)
})

test('the chain the hub sends: its leaf without a root CA; an intermediate --ca-cert goes along', async () => {
  /** How a TLS client that trusts `ca` (or nothing but the system roots) takes the hub. */
  const handshake = (hub, ca) => new Promise((resolve) => {
    const socket = tls.connect({ host: HOST, port: hub.port, ca, servername: 'localhost' })
    socket.on('secureConnect', () => { socket.destroy(); resolve('ok') })
    socket.on('error', (e) => resolve(e.code))
  })
  // Its own root CA is not sent: an untrusting client fails on the leaf, as with IoT Hub
  // (Microsoft's server_validation e2e tests expect exactly this code), not on a self-signed
  // certificate in the chain.
  const own = await start(dataDir())
  assert.equal(await handshake(own), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
  assert.equal(await handshake(own, readFileSync(own.caPath)), 'ok')
  await stop(own)

  // A CA that is an intermediate of the user's root: sent along, so trusting the root suffices.
  const dir = dataDir()
  const file = (name) => path.join(dir, name)
  const openssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  const caExtensions = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign']
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=my root', '-keyout', file('root.key'), '-out', file('root.pem'),
    ...caExtensions.flatMap((e) => ['-addext', e]))
  openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file('inter.key'))
  openssl('req', '-new', '-key', file('inter.key'), '-subj', '/CN=my intermediate', '-out', file('inter.csr'))
  writeFileSync(file('inter.ext'), caExtensions.join('\n'))
  openssl('x509', '-req', '-in', file('inter.csr'), '-CA', file('root.pem'), '-CAkey', file('root.key'),
    '-CAcreateserial', '-days', '2', '-extfile', file('inter.ext'), '-out', file('inter.pem'))
  const hub = await startEmulator({ args: ['--host', HOST, '--ca-cert', file('inter.pem'), '--ca-key', file('inter.key')] })
  running.add(hub)
  assert.equal(await handshake(hub, readFileSync(file('root.pem'))), 'ok')
  await stop(hub)
})
