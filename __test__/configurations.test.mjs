// Automatic device management configurations against iothub-emulator with azure-iothub's
// Registry, pinned and unmodified (what Microsoft's e2e configurations.js does, and more):
// add, get, list, update with the etag and forced, remove; IoT Hub's rules (ids, one content
// section, immutable content, target conditions and metric queries that parse); metrics
// counted against the twins; and configurations kept in a data dir across a restart.
import { createRequire } from 'node:module'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { body, rejectsWith, shimAzureIothub } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')

const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-emulator-configurations-'))
let hub

before(async () => {
  hub = await startEmulator({ devices: 0, args: ['--data-dir', dir] })
  shimAzureIothub(readFileSync(hub.caPath, 'utf8'))
})

after(async () => {
  await hub?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const registry = () => iothub.Registry.fromConnectionString(hub.connectionString)

const deviceConfig = (id, extra = {}) => ({
  id,
  content: { deviceContent: { 'properties.desired': { prop1: 'foo' } } },
  targetCondition: "tags.building = '43'",
  priority: 20,
  ...extra,
})

test('add, get, list, update with the etag, force-update and remove', async () => {
  const r = registry()
  const config = deviceConfig('node-e2e-device-1', { labels: { team: 'a' } })
  await r.addConfiguration(config)
  const found = await body(r.getConfiguration(config.id))
  assert.equal(found.id, config.id)
  assert.deepEqual(found.content, config.content)
  assert.equal(found.schemaVersion, '1.0', 'azure-iothub sets 1.0')
  assert.deepEqual(found.labels, { team: 'a' })
  assert.equal(found.priority, 20)
  assert.ok(found.etag && found.createdTimeUtc && found.lastUpdatedTimeUtc)

  const module = deviceConfig('node-e2e-module-1', {
    content: { moduleContent: { 'properties.desired': { prop1: 'foo' } } },
    targetCondition: "FROM devices.modules WHERE moduleId = 'm1'",
  })
  await r.addConfiguration(module)
  const all = await body(r.getConfigurations())
  assert.deepEqual(all.map((c) => c.id).sort(), [config.id, module.id])

  // Update: with the etag read back (what updateConfiguration sends as If-Match).
  found.priority = 99
  await r.updateConfiguration(found)
  const updated = await body(r.getConfiguration(config.id))
  assert.equal(updated.priority, 99)
  assert.notEqual(updated.etag, found.etag)
  assert.equal(updated.createdTimeUtc, found.createdTimeUtc)
  // A stale etag is refused; forced (`*`) is not.
  found.priority = 5
  await rejectsWith(r.updateConfiguration(found), 412, 'PreconditionFailed')
  await r.updateConfiguration({ ...config, priority: 7 }, true)
  assert.equal((await body(r.getConfiguration(config.id))).priority, 7)

  await r.removeConfiguration(config.id)
  await rejectsWith(r.getConfiguration(config.id), 404, 'ConfigurationNotFound')
  await rejectsWith(r.removeConfiguration(config.id), 404, 'ConfigurationNotFound')
  await r.removeConfiguration(module.id)
})

test("IoT Hub's rules: ids, content, immutable content, conditions, metric queries", async () => {
  const r = registry()
  await r.addConfiguration(deviceConfig('rules'))
  await rejectsWith(r.addConfiguration(deviceConfig('rules')), 409, 'ConfigurationAlreadyExists')
  await rejectsWith(r.addConfiguration(deviceConfig('Upper-Case')), 400, 'ArgumentInvalid')
  await rejectsWith(
    r.updateConfiguration({ ...deviceConfig('rules'), content: { deviceContent: { 'properties.desired': { prop1: 'bar' } } } }, true),
    400,
    'CannotModifyImmutableConfigurationContent',
  )
  await rejectsWith(
    r.addConfiguration(deviceConfig('two-sections', { content: { deviceContent: {}, moduleContent: {} } })),
    400,
    'InvalidConfigurationContent',
  )
  await rejectsWith(r.addConfiguration(deviceConfig('bad-target', { targetCondition: 'tags.a =' })), 400, 'InvalidConfigurationTargetCondition')
  await rejectsWith(
    r.addConfiguration(deviceConfig('bad-metric', { metrics: { queries: { m: 'SELECT deviceId FROM' } } })),
    400,
    'InvalidConfigurationCustomMetricsQuery',
  )
  await rejectsWith(r.updateConfiguration(deviceConfig('missing'), true), 404, 'ConfigurationNotFound')
  await r.removeConfiguration('rules')
})

test('metrics are counted against the twins; applying content is not emulated', async () => {
  const r = registry()
  for (const [deviceId, building] of [['in-43-a', '43'], ['in-43-b', '43'], ['in-44', '44']]) {
    await r.create({ deviceId })
    await r.updateTwin(deviceId, { tags: { building } }, '*')
  }
  await r.addConfiguration(deviceConfig('counted', {
    metrics: { queries: { reportedFoo: "SELECT deviceId FROM devices WHERE tags.building = '44'" } },
  }))
  const config = await body(r.getConfiguration('counted'))
  assert.deepEqual(config.systemMetrics.results, { targetedCount: 2, appliedCount: 0 })
  assert.deepEqual(config.metrics.results, { reportedFoo: 1 })
  assert.equal(config.metrics.queries.reportedFoo, "SELECT deviceId FROM devices WHERE tags.building = '44'")
  await r.removeConfiguration('counted')
})

test('configurations are kept in the data dir across a restart', async () => {
  const r = registry()
  await r.addConfiguration(deviceConfig('kept', { labels: { kept: 'yes' } }))
  const before = await body(r.getConfiguration('kept'))
  assert.equal(await hub.stop(), 0)
  hub = await startEmulator({ devices: 0, args: ['--data-dir', dir] })
  const after = await body(registry().getConfiguration('kept'))
  assert.deepEqual(after, before)
})
