// The hub's linked storage account (issue 30, first step): `--storage azurite` starts Azurite's
// blob service (the pinned devDependency, the package's optional peer) as the emulator's child on
// HTTPS with a certificate from the hub's CA, creates the file-upload container, and gives its
// connection string in the ready line, `startEmulator()`'s result and `exec`'s environment.
// Checked with the real storage client (@azure/storage-blob, as azure-iot-device pins it): a
// client that trusts only the hub's CA (`NODE_EXTRA_CA_CERTS`, as `exec` sets it) lists the
// container and reads back what it wrote; Azurite stops with the hub, SIGKILL included; without
// Azurite, `--storage azurite` is a one-line error saying what to install. File upload with
// Microsoft's clients (Node azure-iot-device and azure-iothub; Python azure-iot-device with
// azure-storage-blob, on 127.0.0.87's standard ports); with a data dir, pending uploads and
// notifications survive SIGKILL; a seed's `storage` and `fileNotifications`.
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { emulatorBinary, startEmulator } from './helpers/emulator.mjs'
import { shimAzureIothub } from './helpers/device-sdks.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'
import { hasPython3, pythonSdk } from '../scripts/python-sdk.mjs'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'packages', 'iothub-emulator', 'bin', 'iothub-emulator.js')

/** A blob round trip through STORAGE_CONNECTION_STRING, run by `exec` (NODE_EXTRA_CA_CERTS is
 * the hub's CA: the only way Node's TLS trusts Azurite's certificate). */
const ROUND_TRIP = `
const { BlobServiceClient } = require('@azure/storage-blob');
(async () => {
  const service = BlobServiceClient.fromConnectionString(process.env.STORAGE_CONNECTION_STRING);
  const names = [];
  for await (const c of service.listContainers()) names.push(c.name);
  const blob = service.getContainerClient('fileupload').getBlockBlobClient('exec/hello.txt');
  await blob.upload('hello from exec', 15);
  const back = (await blob.downloadToBuffer()).toString();
  console.log(JSON.stringify({ names, back, url: blob.url }));
})().catch((e) => { console.error(e.message); process.exit(1); });
`

function run(args, env = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, IOTHUB_EMULATOR: emulatorBinary(), ...env }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }))
  })
}

/** The pids of `pid`'s children (Linux /proc). */
function children(pid) {
  const file = `/proc/${pid}/task/${pid}/children`
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) : []
}

const alive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function gone(pid, ms = 10_000) {
  const end = Date.now() + ms
  while (alive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
  return !alive(pid)
}

test('exec --storage azurite: STORAGE_CONNECTION_STRING reaches Azurite over HTTPS trusting only the hub CA', async () => {
  const { code, stdout, stderr } = await run(['exec', '--storage', 'azurite', '--', process.execPath, '-e', ROUND_TRIP])
  assert.equal(code, 0, stderr)
  const result = JSON.parse(stdout.trim().split('\n').pop())
  assert.ok(result.names.includes('fileupload'), `containers: ${result.names}`)
  assert.equal(result.back, 'hello from exec')
  assert.match(result.url, /^https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/fileupload\/exec(\/|%2F)hello\.txt$/)
})

test('startEmulator({ storage: "azurite" }): the connection string, and Azurite stops with the hub (stop and SIGKILL)', async () => {
  for (const end of ['stop', 'SIGKILL']) {
    const hub = await startEmulator({ storage: 'azurite' })
    try {
      assert.match(hub.storageConnectionString, /^DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=[^;]+;BlobEndpoint=https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/;$/)
      assert.equal(hub.ready.storageConnectionString, hub.storageConnectionString)
      const [azurite] = children(hub.pid)
      assert.ok(azurite && alive(azurite), 'Azurite runs as the hub child')
      if (end === 'stop') await hub.stop()
      else {
        hub.kill('SIGKILL')
        assert.equal(await hub.stop(), 'SIGKILL') // stop() holds the event loop until the exit
      }
      assert.ok(await gone(azurite), `Azurite (pid ${azurite}) outlived the hub after ${end}`)
    } finally {
      await hub.stop()
    }
  }
})

test('with a data dir, Azurite keeps its blobs under it across restarts', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-storage-'))
  try {
    const script = ROUND_TRIP.replace("await blob.upload('hello from exec', 15);", "if (process.argv[1] === 'write') await blob.upload('hello from exec', 15);")
    let r = await run(['exec', '--storage', 'azurite', '--data-dir', dir, '--', process.execPath, '-e', script, 'write'])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(existsSync(path.join(dir, 'azurite')))
    r = await run(['exec', '--storage', 'azurite', '--data-dir', dir, '--', process.execPath, '-e', script, 'read'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout.trim().split('\n').pop()).back, 'hello from exec')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('no hub without storage has the field; without Azurite, --storage azurite is one line saying what to install', async () => {
  const hub = await startEmulator()
  try {
    assert.equal(hub.storageConnectionString, null)
    assert.equal('storageConnectionString' in hub.ready, false)
  } finally {
    await hub.stop()
  }
  const r = await run(['--storage', 'azurite'], { IOTHUB_EMULATOR_AZURITE: '' })
  assert.equal(r.code, 1, r.stderr)
  const lines = r.stderr.trim().split('\n')
  assert.equal(lines.length, 1, r.stderr)
  assert.match(lines[0], /--storage azurite needs Azurite: npm install azurite@3\.35\.0/)
  const bad = await run(['--storage', 'minio'])
  assert.match(bad.stderr, /must be azurite/)
})

test('file upload with Microsoft clients: uploadToBlob (Mqtt, Http), SAS + @azure/storage-blob + notifyBlobUploadStatus, notifications, limits', async () => {
  const child = path.join(ROOT, '__test__', 'helpers', 'file-upload-child.mjs')
  const { code, stdout, stderr } = await run(['exec', '--storage', 'azurite', '--file-notifications', '--', process.execPath, child])
  assert.equal(code, 0, stderr)
  const out = JSON.parse(stdout.trim().split('\n').pop())
  // The answer's shape: Azurite's account path travels with the host, the blob is <device>/<name>.
  assert.match(out.sas.hostName, /^127\.0\.0\.1:\d+\/devstoreaccount1$/)
  assert.equal(out.sas.containerName, 'fileupload')
  assert.equal(out.sas.blobName, 'upload-pair/pair.bin')
  assert.match(out.sas.correlationId, /^[0-9a-f]{32}$/)
  assert.equal(out.sas.sasTokenShape, '?sv=2020-10-02&sr=b&sig=…&se=…&sp=rcw')
  // What the devices uploaded is in storage, byte for byte (the silent one too).
  assert.deepEqual(out.contents, { 'upload-mqtt/mqtt.txt': true, 'upload-http/http.txt': true, 'upload-pair/pair.bin': true, 'upload-pair/silent.txt': true })
  // One notification per notified successful upload, with the size read from storage.
  const byName = Object.fromEntries(out.notifications.map((n) => [n.blobName, n]))
  assert.deepEqual(Object.keys(byName).sort(), ['upload-http/http.txt', 'upload-mqtt/mqtt.txt', 'upload-pair/pair.bin'])
  for (const [blobName, n] of Object.entries(byName)) {
    const [deviceId, name] = blobName.split('/')
    assert.equal(n.deviceId, deviceId)
    assert.equal(n.blobSizeInBytes, out.sizes[name], blobName)
    assert.match(n.blobUri, new RegExp(`^https://127\\.0\\.0\\.1:\\d+/devstoreaccount1/fileupload/${deviceId}/${name.replace('.', '\\.')}$`))
    assert.ok(!Number.isNaN(Date.parse(n.lastUpdatedTime)) && !Number.isNaN(Date.parse(n.enqueuedTimeUtc)), JSON.stringify(n))
  }
  assert.equal(out.notifications.length, 3, JSON.stringify(out.notifications))
  // Refusals.
  assert.equal(out.errors.otherBlob?.status, 403, JSON.stringify(out.errors.otherBlob))
  assert.ok(out.errors.notifiedTwice, 'a correlation id is used once')
  // 403 (403006 DeviceMaximumActiveFileUploadLimitExceeded): the Node SDK's error says only "Forbidden".
  assert.equal(out.errors.eleventh?.status, 403, JSON.stringify(out.errors.eleventh))
  assert.ok(out.errors.unknownDevice, 'an unknown device gets no SAS')
})

test('a hub without storage refuses file upload with a one-line reason', async () => {
  const hub = await startEmulator()
  try {
    shimAzureIothub(hub.ca)
    const device = await hub.createDevice('no-storage')
    const { createRequire } = await import('node:module')
    const require = createRequire(import.meta.url)
    const { Client } = require('azure-iot-device')
    const { Http } = require('azure-iot-device-http')
    const client = Client.fromConnectionString(device.connectionString, Http)
    await assert.rejects(client.getBlobSharedAccessSignature('x.txt'), (e) => {
      assert.match(e.message + JSON.stringify(e.responseBody ?? ''), /no storage account for file upload/)
      return true
    })
    await client.close()
  } finally {
    await hub.stop()
  }
})

/** Runs one step of __test__/helpers/file-upload-step.mjs against `hub` (trusting its CA). */
function step(hub, ...args) {
  const script = path.join(ROOT, '__test__', 'helpers', 'file-upload-step.mjs')
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args], { cwd: ROOT, env: { ...process.env, NODE_EXTRA_CA_CERTS: hub.caPath }, timeout: 60_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${args[0]}: ${stderr || err.message}`)) : resolve(JSON.parse(stdout.trim().split('\n').pop()))))
  })
}

test('with --data-dir, pending uploads and notifications survive SIGKILL: each notification is received once', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-uploads-'))
  const start = () => startEmulator({ storage: 'azurite', fileNotifications: true, dataDir: dir })
  let hub = await start()
  try {
    const notified = await hub.createDevice('kill-notified')
    const pending = await hub.createDevice('kill-pending')
    const before = await step(hub, 'upload', notified.connectionString, 'a.txt', 'notified before the kill', 'notify')
    const open = await step(hub, 'upload', pending.connectionString, 'b.txt', 'uploaded before the kill, notified after', 'silent')
    // Killed right after the 204: no back end has read the notification.
    hub.kill('SIGKILL')
    assert.equal(await hub.stop(), 'SIGKILL')

    hub = await start()
    const cs = (device) => hub.deviceConnectionString(device.deviceId, device.primaryKey)
    // The correlation id issued before the kill still takes its notification, once; the one
    // already notified stays used.
    assert.deepEqual(await step(hub, 'notify', cs(pending), open.correlationId), { ok: true })
    assert.deepEqual(await step(hub, 'notify', cs(pending), open.correlationId), { error: 'Bad Request' })
    assert.deepEqual(await step(hub, 'notify', cs(notified), before.correlationId), { error: 'Bad Request' })
    const { notifications } = await step(hub, 'receive', hub.connectionString, '3000')
    assert.deepEqual(notifications.map((n) => [n.blobName, n.blobSizeInBytes]).sort(), [
      ['kill-notified/a.txt', 'notified before the kill'.length],
      ['kill-pending/b.txt', 'uploaded before the kill, notified after'.length],
    ])
    // Completed ones are gone from the store too: a restart delivers nothing again.
    hub.kill('SIGKILL')
    await hub.stop()
    hub = await start()
    assert.deepEqual((await step(hub, 'receive', hub.connectionString, '2000')).notifications, [])

    // A notification delivered and not settled when the hub dies is delivered again.
    await step(hub, 'upload', cs(notified), 'c.txt', 'held', 'notify')
    const holder = spawn(process.execPath, [path.join(ROOT, '__test__', 'helpers', 'file-upload-step.mjs'), 'hold', hub.connectionString, '60000'],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: hub.caPath }, stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      const [line] = await once(createInterface({ input: holder.stdout }), 'line')
      assert.equal(JSON.parse(line).held.blobName, 'kill-notified/c.txt')
      hub.kill('SIGKILL')
      await hub.stop()
    } finally {
      holder.kill()
    }
    hub = await start()
    const again = await step(hub, 'receive', hub.connectionString, '2000')
    assert.deepEqual(again.notifications.map((n) => n.blobName), ['kill-notified/c.txt'])
  } finally {
    await hub.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a seed takes storage and fileNotifications as the flags do; a wrong storage is one line', async () => {
  const hub = await startEmulator({ seed: { storage: 'azurite', fileNotifications: true } })
  try {
    assert.match(hub.storageConnectionString, /AccountName=devstoreaccount1;/)
    const device = await hub.createDevice('seeded-storage')
    await step(hub, 'upload', device.connectionString, 's.txt', 'seeded', 'notify')
    const { notifications } = await step(hub, 'receive', hub.connectionString, '2000')
    assert.deepEqual(notifications.map((n) => n.blobName), ['seeded-storage/s.txt'])
  } finally {
    await hub.stop()
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-seed-'))
  try {
    const file = path.join(dir, 'seed.json')
    writeFileSync(file, JSON.stringify({ storage: 'minio' }))
    const r = await run(['--seed', file])
    assert.equal(r.code, 1)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.match(r.stderr, /seed: storage must be azurite, not "minio"/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

// The Python device SDK always dials 443 (HTTPS: the SAS and the notification) and has no port
// setting: a hub on the standard ports of its own loopback address.
const PYTHON_HOST = '127.0.0.87'
const pythonSkip = prerequisite(process.getuid?.() !== 0
  ? 'the Python SDK dials port 443, which needs root (CI runs as root)'
  : !hasPython3() && 'python3 is not installed')

test('Python azure-iot-device: get_storage_info_for_blob, azure-storage-blob upload, notify_blob_upload_status', { skip: pythonSkip }, async () => {
  const python = pythonSdk()
  const hub = await startEmulator({ storage: 'azurite', fileNotifications: true, args: ['--standard-ports', '--host', PYTHON_HOST] })
  try {
    const device = await hub.createDevice('python-upload')
    const text = 'uploaded by Python azure-storage-blob at the SAS URL of azure-iot-device'
    const script = path.join(ROOT, '__test__', 'python', 'upload.py')
    const info = await new Promise((resolve, reject) => {
      execFile(python, [script, device.connectionString, hub.caPath, 'logs/py.txt', text], { timeout: 60_000 },
        (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(JSON.parse(stdout.trim().split('\n').pop()))))
    })
    assert.equal(info.blobName, 'python-upload/logs/py.txt')
    assert.equal(info.containerName, 'fileupload')
    assert.match(info.hostName, new RegExp(`^${PYTHON_HOST.replaceAll('.', '\\.')}:\\d+/devstoreaccount1$`))
    assert.equal(info.sasTokenShape, '?sv=2020-10-02&sr=b&sig=…&se=…&sp=rcw')
    assert.deepEqual(await step(hub, 'download', hub.storageConnectionString, info.blobName), { text })
    const { notifications } = await step(hub, 'receive', hub.connectionString, '2000')
    assert.equal(notifications.length, 1, JSON.stringify(notifications))
    assert.equal(notifications[0].deviceId, 'python-upload')
    assert.equal(notifications[0].blobName, info.blobName)
    assert.equal(notifications[0].blobSizeInBytes, Buffer.byteLength(text))
    assert.equal(notifications[0].blobUri, `https://${info.hostName}/fileupload/${info.blobName}`)
  } finally {
    assert.equal(await hub.stop(), 0)
  }
})
