// Import/export benchmark (not part of npm test): azure-iothub's Registry.exportDevicesToBlob of a
// hub seeded with N devices (`--devices N`) into its Azurite, then importDevicesFromBlob of that
// devices.txt into a second, empty hub. Measured: each job's time from the create request to
// getJob saying `completed` (polled every 100 ms), the blob's size, and the emulator's peak RSS
// (VmHWM of the hub process; Azurite, its child, is not counted) before and after each job.
//
//   node bench/import-export.mjs                    # 100,000 devices
//   node bench/import-export.mjs --devices=20000
//   node bench/import-export.mjs --data-dir         # both hubs keep their state in a fresh data dir
//
// Uses the emulator binary the tests use (release when built, else debug): say which.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'

import { emulatorBinary, startEmulator } from '../__test__/helpers/emulator.mjs'
import { shimAzureIothub } from '../__test__/helpers/device-sdks.mjs'
import { createContainer, getBlob, putBlob } from '../__test__/helpers/blob-containers.mjs'

const { values: opts } = parseArgs({ options: { devices: { type: 'string', default: '100000' }, 'data-dir': { type: 'boolean', default: false } } })
const N = Number(opts.devices)
const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')

const vmKb = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
const mib = (kb) => Math.round(kb / 1024)

async function timed(registry, start) {
  const t0 = performance.now()
  const { jobId } = await start()
  for (;;) {
    const job = await registry.getJob(jobId)
    if (job.status === 'completed') return (performance.now() - t0) / 1000
    if (job.status !== 'enqueued' && job.status !== 'running') throw new Error(`${jobId}: ${job.status} ${job.failureReason}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const dirs = opts['data-dir'] ? mkdtempSync(join(tmpdir(), 'bench-impexp-')) : null
const dataDir = (name) => (dirs ? ['--data-dir', join(dirs, name)] : [])
const source = await startEmulator({ storage: 'azurite', args: ['--devices', String(N), ...dataDir('source')] })
const target = await startEmulator({ storage: 'azurite', args: dataDir('target') })
try {
  shimAzureIothub(`${source.ca}\n${target.ca}`)
  const from = iothub.Registry.fromConnectionString(source.connectionString)
  const to = iothub.Registry.fromConnectionString(target.connectionString)
  const out = await createContainer(source, 'export')
  const sourceBefore = vmKb(source.pid, 'VmHWM')
  const exportSecs = await timed(from, () => from.exportDevicesToBlob(out, false))
  const sourcePeak = vmKb(source.pid, 'VmHWM')
  const text = await getBlob(source, out, 'devices.txt')
  const input = await createContainer(target, 'import')
  await putBlob(target, input, 'devices.txt', text)
  const targetBefore = vmKb(target.pid, 'VmHWM')
  const importSecs = await timed(to, () => to.importDevicesFromBlob(input, input))
  const targetPeak = vmKb(target.pid, 'VmHWM')
  const errors = await getBlob(target, input, 'importErrors.log')
  const imported = (await target.health()).devices
  if (imported !== N || errors !== '') throw new Error(`imported ${imported} of ${N}; errors: ${errors.slice(0, 200)}`)
  const result = {
    devices: N,
    dataDir: Boolean(dirs),
    binary: emulatorBinary(),
    blobMiB: +(Buffer.byteLength(text) / 1048576).toFixed(1),
    exportSecs: +exportSecs.toFixed(2),
    exportPeakRssMiB: { before: mib(sourceBefore), after: mib(sourcePeak) },
    importSecs: +importSecs.toFixed(2),
    importPeakRssMiB: { before: mib(targetBefore), after: mib(targetPeak) },
    loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  }
  console.log(JSON.stringify(result, null, 2))
} finally {
  await Promise.all([source.stop(), target.stop()])
  if (dirs) rmSync(dirs, { recursive: true, force: true })
}
