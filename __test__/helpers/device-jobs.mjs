// Shared by the device-SDK suites (MQTT, AMQP): a hub with the clients a suite needs, polling
// for a condition, and a job's outcome as the native JobClient reports it.
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'

import { startEmulator } from './emulator.mjs'
import { shimAzureIothub } from './azure-iothub-port.mjs'

const require = createRequire(import.meta.url)

/**
 * Starts an emulator (`startEmulator` options) with azure-iothub pointed at it; returns the hub,
 * its CA text, a native JobClient, a Registry factory and `createDevice(id)` → its connection string.
 */
export async function startDeviceHub(options) {
  const { JobClient } = require('../..')
  const iothub = require('azure-iothub')
  const hub = await startEmulator(options)
  const ca = readFileSync(hub.caPath, 'utf8')
  shimAzureIothub(ca)
  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
  const registry = () => iothub.Registry.fromConnectionString(hub.connectionString)
  async function createDevice(deviceId) {
    const { responseBody: device } = await registry().create({ deviceId })
    const key = device.authentication.symmetricKey.primaryKey
    return `HostName=${hub.hostName};DeviceId=${deviceId};SharedAccessKey=${key}`
  }
  return { hub, ca, jobs, registry, createDevice }
}

export async function until(check, timeoutMs = 30_000, what = 'condition') {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The job once final (polled every 100 ms, for up to a minute). */
export const jobFinished = (jobs, jobId) => jobs.waitForJob(jobId, { pollIntervalMs: 100, timeoutMs: 60_000 })

/** Every device-job row of a job. */
export async function jobDeviceRows(jobs, jobId) {
  const rows = []
  for await (const row of jobs.listDeviceJobs(jobId)) rows.push(row)
  return rows
}
