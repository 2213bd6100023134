// What the suites that drive Microsoft's device SDKs against the emulator share: azure-iothub's
// HTTPS with the emulator's CA, the service side of one scenario every SDK and transport must
// pass, and the device side of it for the Node SDK.
//
// The scenario (service side, `serviceScenario`): a method job calls `reboot` with
// `{tag}` and the device's answer `{rebooted: tag}` lands in its device-job row; a twin job sets
// desired `color`, which the device echoes as reported `sawColor`, found by a device query.
import https from 'node:https'
import tls from 'node:tls'
import { createRequire } from 'node:module'
import assert from 'node:assert/strict'

const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')

/**
 * azure-iothub (and azure-iot-device-http) pass HostName straight to https.request as `host` and
 * have no CA option: this (harness only) splits a port off the host and adds the emulator's CA,
 * when given, to every request that names none — also the WebSocket upgrades of azure-iothub's
 * `AmqpWs` (the `ws` package, through https.get, on port 443). node_modules is never modified.
 */
/**
 * Every TLS connection that names no CA trusts `caPem` (the hub's): the AMQP clients
 * (azure-iothub's, the device SDK's, @azure/event-hubs over TLS) take no CA option of their own.
 */
export function trustOverTls(caPem) {
  const connect = tls.connect
  tls.connect = function connectTrustingTheHub(...args) {
    const options = args.find((a) => a && typeof a === 'object')
    if (options && !options.ca) options.ca = caPem
    return connect.apply(this, args)
  }
}

export function shimAzureIothub(caPem) {
  const withPortAndCa = (options) => {
    if (!options || typeof options !== 'object' || typeof options.host !== 'string') return options
    const m = options.port === undefined && /^(.*):(\d+)$/.exec(options.host)
    if (m && !m[1].includes(':')) options = { ...options, host: m[1], port: Number(m[2]) }
    return !options.ca && caPem ? { ...options, ca: caPem } : options
  }
  const { request, get } = https
  https.request = function requestWithPort(options, ...rest) {
    return request.call(this, withPortAndCa(options), ...rest)
  }
  https.get = function getWithPort(options, ...rest) {
    return get.call(this, withPortAndCa(options), ...rest)
  }
}

export async function until(check, timeoutMs = 30_000, what = 'condition') {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Creates a device over REST with azure-iothub (any `authentication`); returns the identity. */
export async function createIdentity(connectionString, device) {
  const { responseBody } = await iothub.Registry.fromConnectionString(connectionString).create(device)
  return responseBody
}

/** A SAS device's connection string, with the hub's plain or host:port HostName. */
export async function createSasDevice(hub, deviceId) {
  const device = await createIdentity(hub.connectionString, { deviceId })
  return `HostName=${hub.hostName};DeviceId=${deviceId};SharedAccessKey=${device.authentication.symmetricKey.primaryKey}`
}

async function queryIds(connectionString, sql) {
  const query = iothub.Registry.fromConnectionString(connectionString).createQuery(sql)
  const { result } = await new Promise((resolve, reject) => query.nextAsTwin((e, result) => (e ? reject(e) : resolve({ result }))))
  return result.map((t) => t.deviceId)
}

/**
 * The service side: a method job and a twin job through iothub-jobs (`jobs`) over one device,
 * checked in the device-job row and a device query (azure-iothub).
 */
export async function serviceScenario({ hub, jobs, deviceId, tag }) {
  const condition = `deviceId = '${deviceId}'`
  const finished = (jobId) => jobs.waitForJob(jobId, { pollIntervalMs: 100, timeoutMs: 60_000 })

  await jobs.scheduleDeviceMethod(`${tag}-method`, condition, {
    methodName: 'reboot', payload: { tag }, responseTimeoutInSeconds: 20, connectTimeoutInSeconds: 20,
  })
  assert.equal((await finished(`${tag}-method`)).deviceJobStatistics.succeededCount, 1)
  const rows = []
  for await (const row of jobs.listDeviceJobs(`${tag}-method`)) rows.push(row)
  assert.equal(rows.length, 1)
  assert.deepEqual(rows[0].outcome.deviceMethodResponse, { status: 200, payload: { rebooted: tag } })

  await jobs.scheduleTwinUpdate(`${tag}-twin`, condition, { etag: '*', properties: { desired: { color: tag } } })
  assert.equal((await finished(`${tag}-twin`)).deviceJobStatistics.succeededCount, 1)
  const sql = `SELECT * FROM devices WHERE properties.reported.sawColor = '${tag}'`
  await until(async () => (await queryIds(hub.connectionString, sql)).includes(deviceId), 30_000, `reported sawColor = ${tag}`)
}

/** The whole scenario with a Node SDK client (options set): open, play it, close. */
export async function nodeDeviceScenario(client, { hub, jobs, deviceId }) {
  await client.open()
  try {
    await playScenario(client)
    await serviceScenario({ hub, jobs, deviceId, tag: deviceId })
  } finally {
    await client.close()
  }
}

/** The device side for azure-iot-device's Client: answers `reboot`, echoes desired color. */
async function playScenario(client) {
  client.onDeviceMethod('reboot', (request, response) => {
    response.send(200, { rebooted: request.payload.tag }, () => {})
  })
  const twin = await client.getTwin()
  twin.on('properties.desired', (delta) => {
    if (typeof delta.color === 'string') twin.properties.reported.update({ sawColor: delta.color }, () => {})
  })
}

/** Resolves with the error of a connection attempt that must fail. */
export async function refusal(client) {
  try {
    await client.open()
  } catch (err) {
    return err
  } finally {
    await client.close().catch(() => {})
  }
  throw new Error('the hub accepted a connection it must refuse')
}

/** The body of an azure-iothub promise's result (`{responseBody, httpResponse}`). */
export const body = async (promise) => (await promise).responseBody

/** Rejects unless `promise` (an azure-iothub REST call) fails with HTTP `status` and the
 *  service error `code`. */
export async function rejectsWith(promise, status, code) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.response?.statusCode, status, err.message)
    assert.match(err.responseBody, new RegExp(`ErrorCode:${code};`))
    return true
  })
}

/**
 * Reads `hub`'s events endpoint from its start with @azure/event-hubs and keeps each event's
 * message id: `seen` holds them as they arrive; `close()` stops reading.
 */
export function messageIdsSeen(hub) {
  const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs')
  const seen = new Set()
  const consumer = new EventHubConsumerClient('$Default', hub.eventHubConnectionString)
  const subscription = consumer.subscribe({
    async processEvents(events) {
      for (const e of events) if (e.messageId) seen.add(String(e.messageId))
    },
    async processError() {},
  }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 })
  const close = async () => {
    await subscription.close()
    await consumer.close()
  }
  return { seen, close }
}
