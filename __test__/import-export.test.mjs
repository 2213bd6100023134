// Import/export jobs (issue 30): azure-iothub's Registry.exportDevicesToBlob into a container of
// Azurite (`--storage azurite`, a container SAS made with @azure/storage-blob) and
// importDevicesFromBlob into a second hub round-trip a fleet with twins and modules; every
// importMode with its importErrors.log lines; a container the SAS does not open fails the job
// with its reason; one job at a time; getJob/listJobs/cancelJob; and a job interrupted by
// SIGKILL (held mid-import by the store's writer hook) runs again when the hub restarts on its
// data dir. Blobs are read and written over HTTPS trusting the hub's CA, as any client would.
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { emulatorBinary, startEmulator } from './helpers/emulator.mjs'
import { shimAzureIothub, until } from './helpers/device-sdks.mjs'
import { containerSas, createContainer, getBlob, putBlob } from './helpers/blob-containers.mjs'

const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')

/** Polls getJob until the job ends; the job. */
async function finished(registry, jobId, timeoutMs = 120_000) {
  let job
  await until(async () => {
    job = (await registry.getJob(jobId))
    return ['completed', 'failed', 'cancelled'].includes(job.status)
  }, timeoutMs, `job ${jobId}`)
  return job
}

const lines = (text) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l))

test('export then import into a second hub round-trips 10,000 devices with twins and modules', async () => {
  const [a, b] = await Promise.all([startEmulator({ storage: 'azurite' }), startEmulator({ storage: 'azurite' })])
  try {
    // azure-iothub has no CA option: both hubs' CAs are trusted for its requests.
    shimAzureIothub(`${a.ca}\n${b.ca}`)
    const source = iothub.Registry.fromConnectionString(a.connectionString)
    const N = 10_000
    for (let i = 0; i < N; i += 100) {
      const batch = Array.from({ length: 100 }, (_, k) => ({
        deviceId: `fleet-${String(i + k).padStart(5, '0')}`,
        status: (i + k) % 7 === 0 ? 'disabled' : 'enabled',
        tags: { site: `s${(i + k) % 13}` },
        properties: { desired: { interval: i + k } },
      }))
      // addDevices sends importMode create; the hub's bulk rule applies tags and desired too.
      await source.addDevices(batch)
    }
    for (let m = 0; m < 50; m++) {
      await source.addModule({ deviceId: `fleet-${String(m * 3).padStart(5, '0')}`, moduleId: `mod-${m}` })
      await source.updateModuleTwin(`fleet-${String(m * 3).padStart(5, '0')}`, `mod-${m}`, { properties: { desired: { m } } }, '*')
    }
    const out = await createContainer(a, 'export')
    const started = (await source.exportDevicesToBlob(out, false))
    assert.equal(started.type, 'export')
    assert.ok(['enqueued', 'running', 'completed'].includes(started.status), started.status)
    const job = await finished(source, started.jobId)
    assert.equal(job.status, 'completed', job.failureReason)
    assert.equal(job.progress, 100)
    const text = await getBlob(a, out, 'devices.txt')
    const exported = lines(text)
    assert.equal(exported.filter((l) => !l.moduleId).length, N)
    assert.equal(exported.filter((l) => l.moduleId).length, 50)
    const first = exported.find((l) => l.id === 'fleet-00003' && !l.moduleId)
    assert.deepEqual(first.tags, { site: 's3' })
    assert.equal(first.properties.desired.interval, 3)
    assert.ok(first.authentication.symmetricKey.primaryKey, 'keys are exported')

    // Into the second hub, through its own storage account.
    const target = iothub.Registry.fromConnectionString(b.connectionString)
    const input = await createContainer(b, 'import')
    await putBlob(b, input, 'devices.txt', text)
    const imported = await finished(target, (await target.importDevicesFromBlob(input, input)).jobId)
    assert.equal(imported.status, 'completed', imported.failureReason)
    assert.equal(await getBlob(b, input, 'importErrors.log'), '', 'no line failed')
    for (const id of ['fleet-00000', 'fleet-00003', 'fleet-09999']) {
      const [was, now] = [(await source.get(id)).responseBody, (await target.get(id)).responseBody]
      assert.equal(now.status, was.status, id)
      assert.equal(now.authentication.symmetricKey.primaryKey, was.authentication.symmetricKey.primaryKey, id)
      const twin = (await target.getTwin(id)).responseBody
      assert.deepEqual(twin.tags, (await source.getTwin(id)).responseBody.tags)
      assert.equal(twin.properties.desired.interval, Number(id.slice(6)))
    }
    const moduleTwin = (await target.getModuleTwin('fleet-00009', 'mod-3')).responseBody
    assert.equal(moduleTwin.properties.desired.m, 3)
    const count = [{ n: (await b.health()).devices }]
    assert.equal(count[0].n, N)
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
})

test('every importMode, the error log, bad containers, one job at a time, list and cancel', async () => {
  const hub = await startEmulator({ storage: 'azurite' })
  try {
    shimAzureIothub(hub.ca)
    const registry = iothub.Registry.fromConnectionString(hub.connectionString)
    for (const id of ['upd', 'upd-etag', 'del', 'del-etag', 'twin', 'twin-etag', 'exists']) await registry.create({ deviceId: id })
    await registry.addModule({ deviceId: 'upd', moduleId: 'gone' })
    const etag = async (id) => (await registry.get(id)).responseBody.etag
    const twinEtag = async (id) => (await registry.getTwin(id)).responseBody.etag
    const items = [
      { id: 'new', importMode: 'create', tags: { a: 1 } },
      { id: 'exists', importMode: 'create' },
      { id: 'cou', tags: { mode: 'default createOrUpdate' } },
      { id: 'upd', importMode: 'update', status: 'disabled' },
      { id: 'missing', importMode: 'update' },
      { id: 'upd-etag', importMode: 'updateIfMatchETag', eTag: await etag('upd-etag'), status: 'disabled' },
      { id: 'upd-etag', importMode: 'updateIfMatchETag', eTag: 'stale', status: 'enabled' },
      { id: 'del', importMode: 'delete' },
      { id: 'del-etag', importMode: 'deleteIfMatchETag', eTag: 'stale' },
      { id: 'twin', importMode: 'updateTwin', properties: { desired: { x: 1 } } },
      { id: 'twin-etag', importMode: 'updateTwinIfMatchETag', twinETag: await twinEtag('twin-etag'), tags: { ok: true } },
      { id: 'twin-etag', importMode: 'updateTwinIfMatchETag', twinETag: 'stale', tags: { ok: false } },
      { id: 'upd', moduleId: 'new-module', importMode: 'createOrUpdate', properties: { desired: { y: 2 } } },
      { id: 'upd', moduleId: 'gone', importMode: 'delete' },
      { id: 'bad', importMode: 'upsert' },
    ]
    const container = await createContainer(hub, 'modes')
    await putBlob(hub, container, 'devices.txt', items.map((i) => JSON.stringify(i)).join('\n') + '\nnot json\n')
    const job = await finished(registry, (await registry.importDevicesFromBlob(container, container)).jobId)
    assert.equal(job.status, 'completed', job.failureReason)
    const errors = lines(await getBlob(hub, container, 'importErrors.log'))
    // The line is named by its number, never echoed: it may hold a device's keys.
    const summary = errors.map((e) => [e.deviceId ?? null, e.errorCode, e.errorStatus.split(';')[0]])
    assert.deepEqual(summary, [
      ['exists', 409001, 'ErrorCode:DeviceAlreadyExists'],
      ['missing', 404001, 'ErrorCode:DeviceNotFound'],
      ['upd-etag', 412001, 'ErrorCode:PreconditionFailed'],
      ['del-etag', 412001, 'ErrorCode:PreconditionFailed'],
      ['twin-etag', 412001, 'ErrorCode:PreconditionFailed'],
      ['bad', 400004, 'ErrorCode:ArgumentInvalid'],
      [null, 400012, `Invalid device format in line ${items.length + 1}: not an ExportImportDevice JSON object (Syntax error at column 2)`],
    ])
    assert.deepEqual((await registry.getTwin('new')).responseBody.tags, { a: 1 })
    assert.equal((await registry.getTwin('cou')).responseBody.tags.mode, 'default createOrUpdate')
    assert.equal((await registry.get('upd')).responseBody.status, 'disabled')
    assert.equal((await registry.get('upd-etag')).responseBody.status, 'disabled')
    await assert.rejects(registry.get('del'))
    assert.ok((await registry.get('del-etag')).responseBody)
    assert.equal((await registry.getTwin('twin')).responseBody.properties.desired.x, 1)
    assert.deepEqual((await registry.getTwin('twin-etag')).responseBody.tags, { ok: true })
    assert.equal((await registry.getModuleTwin('upd', 'new-module')).responseBody.properties.desired.y, 2)
    await assert.rejects(registry.getModule('upd', 'gone'))

    // Storage refusals fail the job with the reason (never the SAS).
    const expired = containerSas(hub, 'modes', { expiresInSecs: -60 })
    const failed = await finished(registry, (await registry.exportDevicesToBlob(expired, true)).jobId)
    assert.equal(failed.status, 'failed')
    assert.match(failed.failureReason, /output container: the storage account refused access to https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/modes: 403 Forbidden \(AuthorizationFailure\)/)
    assert.doesNotMatch(failed.failureReason, /sig=/)
    const nowhere = containerSas(hub, 'no-such-container')
    const missing = await finished(registry, (await registry.importDevicesFromBlob(nowhere, nowhere)).jobId)
    assert.equal(missing.status, 'failed')
    assert.match(missing.failureReason, /ContainerNotFound/)
    const noBlob = await createContainer(hub, 'empty')
    const absent = await finished(registry, (await registry.importDevicesFromBlob(noBlob, noBlob)).jobId)
    assert.match(absent.failureReason, /holds no blob devices\.txt/)

    // One job at a time; cancel: a long import is running while another job is asked for.
    const big = await createContainer(hub, 'big')
    await putBlob(hub, big, 'devices.txt', Array.from({ length: 50_000 }, (_, i) => `{"id":"big-${i}"}`).join('\n'))
    const before = (await hub.health()).devices
    const long = await registry.importDevicesFromBlob(big, big)
    await assert.rejects(registry.exportDevicesToBlob(container, true), (e) => {
      assert.match(String(e.responseBody), /JobQuotaExceeded/)
      return true
    })
    const cancelled = await registry.cancelJob(long.jobId)
    assert.equal(cancelled.status, 'cancelled')
    const imported = (await hub.health()).devices - before
    assert.ok(imported < 50_000, `the cancelled import stopped (${imported} of 50,000 lines applied)`)
    assert.equal((await registry.getJob(long.jobId)).status, 'cancelled')
    const listed = (await registry.listJobs()).responseBody
    assert.deepEqual(listed.map((j) => j.type), ['import', 'export', 'import', 'import', 'import'])
    assert.ok(listed.every((j) => typeof j.jobId === 'string' && j.startTimeUtc))
    await assert.rejects(registry.getJob('no-such-job'), (e) => e.constructor.name === 'JobNotFoundError' || /JobNotFound/.test(e.message + (e.responseBody ?? '')))
  } finally {
    await hub.stop()
  }
})

test('an import interrupted by SIGKILL runs again when the hub restarts on its data dir', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'impexp-'))
  // The hub's own Azurite: the restarted hub starts it again on the port of the last run (once
  // the orphaned one has stopped), so the job's container URIs still reach it.
  const options = { storage: 'azurite', args: ['--data-dir', dir] }
  try {
    let hub = await startEmulator(options)
    shimAzureIothub(hub.ca)
    let registry = iothub.Registry.fromConnectionString(hub.connectionString)
    const container = await createContainer(hub, 'resume')
    const N = 5_000
    const items = Array.from({ length: N }, (_, i) => JSON.stringify({ id: `r-${i}`, tags: { i } }))
    await putBlob(hub, container, 'devices.txt', items.join('\n'))
    const { jobId } = await registry.importDevicesFromBlob(container, container)
    // Hold the store's writer: the running import's next device write waits for a commit that
    // cannot happen before the kill. The job must be seen running and unfinished (the kill
    // lands mid-job, or the test fails).
    await hub.control('PUT', 'store', { writer: 'held' })
    const during = await registry.getJob(jobId)
    assert.equal(during.status, 'running')
    const countDuring = (await hub.health()).devices
    assert.ok(countDuring < N, `${countDuring} of ${N} imported before the kill`)
    process.kill(hub.pid, 'SIGKILL')
    await until(() => { try { process.kill(hub.pid, 0); return false } catch { return true } }, 10_000, 'the hub gone')

    hub = await startEmulator(options)
    shimAzureIothub(hub.ca)
    registry = iothub.Registry.fromConnectionString(hub.connectionString)
    const jobs = (await registry.listJobs()).responseBody
    assert.deepEqual(jobs.map((j) => j.jobId), [jobId], 'the job was stored before it was answered')
    const job = await finished(registry, jobId)
    assert.equal(job.status, 'completed', job.failureReason)
    assert.equal((await hub.health()).devices, N)
    assert.equal(await getBlob(hub, container, 'importErrors.log'), '', 'createOrUpdate lines apply again without error')
    assert.deepEqual((await registry.getTwin('r-4999')).responseBody.tags, { i: 4999 })
    await hub.stop()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

/** Runs the `iothub-emulator` command on this checkout's binary: `{ code, stdout, stderr }`. */
function command(args) {
  const bin = path.join(import.meta.dirname, '..', 'packages', 'iothub-emulator', 'bin', 'iothub-emulator.js')
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { ...process.env, IOTHUB_EMULATOR: emulatorBinary() }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }))
  })
}

test('iothub-emulator export --to DIR and import --from DIR move a data dir\'s fleet through a directory', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'impexp-cli-'))
  try {
    const files = path.join(dir, 'files')
    mkdirSync(files)
    const exported = await command(['export', '--data-dir', path.join(dir, 'a'), '--devices', '50', '--to', files])
    assert.equal(exported.code, 0, exported.stderr)
    assert.match(exported.stdout, /devices\.txt: 50 lines/)
    assert.match(exported.stderr, /iothub-emulator export: job [0-9a-f]{32} completed 100%/)
    const text = readFileSync(path.join(files, 'devices.txt'), 'utf8')
    const imported = await command(['import', '--data-dir', path.join(dir, 'b'), '--from', files])
    assert.equal(imported.code, 0, imported.stderr)
    assert.match(imported.stdout, /imported; 0 lines failed/)
    assert.equal(readFileSync(path.join(files, 'importErrors.log'), 'utf8'), '')
    // The second data dir holds the fleet: the same devices, keys and twins.
    const hub = await startEmulator({ args: ['--data-dir', path.join(dir, 'b')] })
    try {
      shimAzureIothub(hub.ca)
      const registry = iothub.Registry.fromConnectionString(hub.connectionString)
      assert.equal((await hub.health()).devices, 50)
      const first = lines(text)[0]
      const device = (await registry.get(first.id)).responseBody
      assert.equal(device.authentication.symmetricKey.primaryKey, first.authentication.symmetricKey.primaryKey)
      assert.deepEqual((await registry.getTwin(first.id)).responseBody.tags, first.tags)
    } finally {
      await hub.stop()
    }
    const missing = await command(['import', '--from', path.join(dir, 'nowhere')])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /^iothub-emulator: import: ENOENT: no such file or directory, open '.*devices\.txt'\n$/m)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
