// The events endpoint's log with a data dir, read with the real client, @azure/event-hubs 6
// (pinned), fed by Node devices over MQTT (azure-iot-device-mqtt): a reader that recorded its
// last offset resumes after a SIGKILL and a restart on the same dir and gets every message its
// device saw acknowledged exactly once, in order, its sequence numbers going on. The kill comes
// while messages wait at the store's writer, held through the control API's test hook
// (`PUT /_emulator/store {"writer":"held"}`): those were never acknowledged, and no reader saw
// them. Consumer groups and the routing set at run time come back too; a clean restart keeps
// everything; retention goes on applying to what was restored; a reset empties the stored log.
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { test, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { createSasDevice, shimAzureIothub, trustOverTls, until } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs')
const { Client: DeviceClient, Message, SharedAccessKeyAuthenticationProvider } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')
const { NoRetry } = require('azure-iot-common')

const dirs = []
const running = new Set()
const trusted = []
shimAzureIothub(trusted)
trustOverTls(trusted)

after(async () => {
  await Promise.all([...running].map((hub) => hub.stop()))
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function newDir() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-emulator-events-'))
  dirs.push(dir)
  return dir
}

async function start(dir, extra = []) {
  const hub = await startEmulator({ devices: 0, args: ['--data-dir', dir, ...extra] })
  running.add(hub)
  trusted.push(hub.ca)
  return hub
}

async function kill(hub) {
  hub.kill('SIGKILL')
  assert.equal(await hub.stop(), 'SIGKILL')
  running.delete(hub)
}

async function stop(hub) {
  assert.equal(await hub.stop(), 0)
  running.delete(hub)
}

/** A device's connection string on `hub` (the key stays across restarts, the host does not). */
const onHub = (hub, cs) => cs.replace(/HostName=[^;]*/, `HostName=${hub.hostName}`)

/** Each client's SAS provider, whose token-renewal timer a client that never closes keeps. */
const providers = new Map()

async function openDevice(hub, cs) {
  const provider = SharedAccessKeyAuthenticationProvider.fromConnectionString(onHub(hub, cs))
  const client = DeviceClient.fromAuthenticationProvider(provider, Mqtt)
  providers.set(client, provider)
  // A message the killed hub never acknowledged fails rather than being retried for minutes.
  client.setRetryPolicy(new NoRetry())
  await client.setOptions({ ca: hub.ca })
  await client.open()
  return client
}

function message(id, kind = 'keep') {
  const m = new Message(JSON.stringify({ id }))
  m.messageId = id
  m.properties.add('kind', kind)
  return m
}

/**
 * Reads every partition of `group` from `positions` (partition id → start position; earliest
 * where none) until `count` events came, then `settleMs` more to catch any extra.
 */
async function readEvents(hub, group, { positions = {}, count, settleMs = 1500, timeoutMs = 30_000 }) {
  const client = new EventHubConsumerClient(group, hub.eventHubConnectionString, { retryOptions: { maxRetries: 2, timeoutInMs: 10_000 } })
  const events = []
  const errors = []
  const startPosition = Object.fromEntries(
    (await client.getPartitionIds()).map((p) => [p, positions[p] ?? earliestEventPosition]),
  )
  const subscription = client.subscribe(
    {
      async processEvents(batch, context) {
        for (const e of batch) events.push({ ...e, partitionId: context.partitionId })
      },
      async processError(err) {
        errors.push(err)
      },
    },
    { startPosition, maxBatchSize: 100, maxWaitTimeInSeconds: 1 },
  )
  try {
    await until(() => events.length >= count, timeoutMs, `${count} events (got ${events.length})`)
    await new Promise((r) => setTimeout(r, settleMs))
  } finally {
    await subscription.close()
    await client.close()
  }
  assert.deepEqual(errors.map((e) => e.message), [])
  return events
}

const idOf = (e) => e.messageId

/** The last event read of each partition: its offset and sequence number. */
function lastOfEach(events) {
  const last = {}
  for (const e of events) last[e.partitionId] = { offset: e.offset, sequenceNumber: e.sequenceNumber }
  return last
}

const ROUTING = {
  routes: [{ name: 'kept', source: 'DeviceMessages', condition: "kind = 'keep'", endpointNames: ['events'], isEnabled: true }],
  fallbackRoute: { name: '$fallback', source: 'DeviceMessages', endpointNames: ['events'], isEnabled: false },
  enrichments: [],
}

test('SIGKILL with messages at the held writer: the reader resumes from its last offset, every acknowledged message once, numbering going on', async () => {
  const DEVICES = 4
  const dir = newDir()
  let hub = await start(dir)
  // Run-time settings that must outlive the kill: a consumer group and the routing.
  await hub.control('PUT', 'events/consumerGroups/resumers')
  await hub.setRouting(ROUTING)
  const ids = Array.from({ length: DEVICES }, (_, i) => `dev-${i}`)
  const keys = await Promise.all(ids.map((id) => createSasDevice(hub, id)))
  let clients = await Promise.all(keys.map((cs) => openDevice(hub, cs)))
  const acked = []
  const sendAll = async (from, to) => {
    await Promise.all(
      clients.map(async (client, d) => {
        for (let i = from; i < to; i++) {
          const id = `${ids[d]}-${i}`
          await client.sendEvent(message(id))
          acked.push(id)
        }
      }),
    )
  }

  // Phase 1: read by the reader, which records where it stopped.
  await sendAll(0, 10)
  const first = await readEvents(hub, 'resumers', { count: 10 * DEVICES })
  assert.equal(first.length, 10 * DEVICES)
  const resumeAt = lastOfEach(first)
  // Phase 2: acknowledged, not read yet.
  await sendAll(10, 20)

  // Phase 3: sent while the writer is held: none may be acknowledged, then the kill.
  assert.equal((await hub.control('PUT', 'store', { writer: 'held' })).writer, 'held')
  const held = []
  const early = []
  for (const [d, client] of clients.entries()) {
    for (let i = 20; i < 25; i++) {
      const id = `${ids[d]}-${i}`
      held.push(id)
      client.sendEvent(message(id)).then(
        () => early.push(id),
        () => {},
      )
    }
  }
  // A device's connection takes its next message once the previous one is answered: one
  // message of each device waits at the writer, the others behind it.
  await until(async () => (await hub.control('GET', 'store')).queued >= DEVICES, 20_000, 'a message of each device at the writer')
  await new Promise((r) => setTimeout(r, 500))
  assert.deepEqual(early, [], 'acknowledged while the writer was held')
  await kill(hub)
  assert.deepEqual(early, [], 'acknowledged by a killed hub')
  // A close of the killed hub's clients may wait forever on the messages it never answered, and
  // the client then keeps its SAS renewal timer (45 min), which would keep this process alive:
  // the close gets a bound, and the timer is stopped (the clients are not used again).
  await Promise.all(clients.map((c) => Promise.race([c.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000).unref())])))
  for (const c of clients) providers.get(c).stop()

  // Restarted on the same dir: the group and the routing are back.
  hub = await start(dir)
  assert.ok((await hub.control('GET', 'events')).consumerGroups.includes('resumers'))
  assert.deepEqual((await hub.routing()).routes, ROUTING.routes)
  clients = await Promise.all(keys.map((cs) => openDevice(hub, cs)))
  // Phase 4: after the restart; a message the routing drops stays out.
  await sendAll(30, 40)
  await Promise.all(clients.map((c, d) => c.sendEvent(message(`dropped-${d}`, 'drop'))))

  const positions = Object.fromEntries(Object.entries(resumeAt).map(([p, { offset }]) => [p, { offset }]))
  const expected = acked.filter((id) => !first.some((e) => idOf(e) === id))
  assert.equal(expected.length, 20 * DEVICES)
  const resumed = await readEvents(hub, 'resumers', { positions, count: expected.length })
  const got = resumed.map(idOf)
  assert.equal(new Set(got).size, got.length, 'no duplicate')
  assert.deepEqual([...got].sort(), [...expected].sort(), 'every acknowledged message, nothing else')
  assert.deepEqual(got.filter((id) => held.includes(id)), [], 'never acknowledged, never read')
  // Per partition: sequence numbers go on from the last read, without a hole; each device's
  // messages in the order sent.
  for (const [p, { sequenceNumber }] of Object.entries(resumeAt)) {
    const seqs = resumed.filter((e) => e.partitionId === p).map((e) => e.sequenceNumber)
    assert.deepEqual(seqs, seqs.map((_, i) => sequenceNumber + 1 + i), `partition ${p}`)
  }
  for (const id of ids) {
    const order = got.filter((g) => g.startsWith(`${id}-`)).map((g) => Number(g.split('-')[2]))
    assert.deepEqual(order, [...order].sort((a, b) => a - b), id)
  }
  await Promise.all(clients.map((c) => c.close()))
})

test('a clean restart keeps the log as it was; retention applies to what was restored; a reset empties it', async () => {
  const dir = newDir()
  let hub = await start(dir, ['--retention-hours', '1'])
  const cs = await createSasDevice(hub, 'keeper')
  let client = await openDevice(hub, cs)
  for (let i = 0; i < 3; i++) await client.sendEvent(message(`keeper-${i}`))
  await client.close()
  const before = await readEvents(hub, '$Default', { count: 3, settleMs: 200 })
  await stop(hub)

  hub = await start(dir, ['--retention-hours', '1'])
  const after = await readEvents(hub, '$Default', { count: 3, settleMs: 200 })
  const shape = (e) => [e.partitionId, e.sequenceNumber, e.offset, e.enqueuedTimeUtc.getTime(), idOf(e), e.properties.kind, e.systemProperties['iothub-connection-device-id']]
  assert.deepEqual(after.map(shape), before.map(shape))
  const partition = before[0].partitionId

  // Past the retention (the emulator's clock): the restored events leave; the next one numbers on.
  await hub.control('POST', 'time/advance', { seconds: 3601 })
  const view = (await hub.control('GET', 'events')).partitions.find((p) => p.partitionId === partition)
  assert.equal(view.isEmpty, true)
  assert.equal(view.lastSequenceNumber, 2)
  client = await openDevice(hub, cs)
  await client.sendEvent(message('keeper-3'))
  await client.close()
  await stop(hub)
  // What left is gone from the store too (the restarted clock is real time again).
  hub = await start(dir, ['--retention-hours', '1'])
  const left = await readEvents(hub, '$Default', { count: 1, settleMs: 500 })
  assert.deepEqual(left.map((e) => [idOf(e), e.sequenceNumber]), [['keeper-3', 3]])

  await hub.control('PUT', 'events/consumerGroups/later')
  await hub.control('POST', 'reset')
  await kill(hub)
  hub = await start(dir, ['--retention-hours', '1'])
  const events = await hub.control('GET', 'events')
  assert.deepEqual(events.consumerGroups, ['$Default'])
  assert.ok(events.partitions.every((p) => p.isEmpty && p.lastSequenceNumber === -1), JSON.stringify(events.partitions))
})
