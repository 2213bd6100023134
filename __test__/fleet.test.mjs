// Fleet calls against the emulator on tier S1 (one active job, 429
// ThrottlingMaxActiveJobCountExceeded): device lists beyond the condition limit split into jobs,
// waiting for a job slot, staged rollouts with a failure threshold, watchJobs, the twin-job etag,
// and faults (injected 429s and dropped responses) with every device reported exactly once.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { startEmulator } from './helpers/emulator.mjs';

const require = createRequire(import.meta.url);
const { JobClient, errors } = require('..');

// The emulator's condition limit (crates/emulator/src/jobs/request.rs).
const HUB_CONDITION_LIMIT = 8192;
// S1 allows 100 job operations a minute for the whole hub: the suite stays within it mostly, and
// what it exceeds is retried (429 ThrottlingException) for up to about 15 s.
const FAST_RETRY = { retry: { maxRetries: 30, initialDelayMs: 5, maxDelayMs: 500 } };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Far enough ahead that the emulated clock (running 2000x faster) never gets there in a test.
const later = () => new Date(Date.now() + 10 * 365 * 86400_000);

async function collect(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

async function rejection(promise) {
  const out = await promise.then(
    (v) => ({ resolved: v }),
    (e) => ({ rejected: e }),
  );
  assert.ok('rejected' in out, `resolved with ${JSON.stringify(out.resolved)}`);
  return out.rejected;
}

/** Every PUT of a job id created it at most once, and each hub job's condition fits the limit. */
async function assertNoDuplicates(hub, jobIds) {
  const { jobs, counters } = await hub.control('GET', 'jobs');
  for (const id of jobIds) assert.equal(counters[id]?.creates, 1, `job ${id} created ${counters[id]?.creates} times`);
  for (const job of jobs) assert.ok(job.queryCondition.length <= HUB_CONDITION_LIMIT, `${job.jobId}: ${job.queryCondition.length}`);
}

describe('fleet calls on an S1 hub', () => {
  let hub;
  let client;
  const quoted = ["o'brien-1", "o'brien-2", "it's-3"];
  before(async () => {
    hub = await startEmulator({ devices: 4000, args: ['--tier', 'S1'] });
    await hub.control('POST', 'devices', { devices: quoted.map((deviceId) => ({ deviceId, tags: { quoted: true } })) });
    // S1 paces device operations at 10/s on the emulated clock: run it 2000x faster.
    await hub.control('PUT', 'time', { scale: 2000 });
    client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8'), ...FAST_RETRY });
  });
  after(() => hub?.stop());

  test('4,003 device ids (some with quotes) are split into jobs that fit the condition limit; one combined result', async () => {
    const ids = [...Array.from({ length: 4000 }, (_, i) => `device-${String(i).padStart(4, '0')}`), ...quoted];
    const progress = [];
    const result = await client.runDeviceMethodJob(
      { methodName: 'reboot', payload: { now: true } },
      { deviceIds: ids, jobId: 'split', pollIntervalMs: 200, onProgress: (p) => progress.push(p) },
    );
    assert.equal(result.status, 'completed');
    assert.ok(result.jobIds.length >= 7, `${result.jobIds.length} jobs`);
    assert.ok(result.jobIds.every((id) => /^split-1-\d+$/.test(id)), result.jobIds.join());
    assert.equal(result.deviceCount, 4003);
    assert.equal(result.succeededCount, 4003);
    assert.equal(result.failedCount, 0);
    assert.deepEqual(result.notAttempted, []);
    assert.equal(result.waves.length, 1);
    await assertNoDuplicates(hub, result.jobIds);
    // Progress: one running phase per round, counts only growing, ending with 'done'.
    assert.equal(progress.at(-1).phase, 'done');
    assert.ok(progress.some((p) => p.phase === 'running' && p.runningCount + p.pendingCount > 0));
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i].succeededCount >= progress[i - 1].succeededCount);
    assert.ok(progress.every((p) => p.deviceCount === 4003));
    assert.equal(progress[0].notAttemptedCount, 4003 - progress[0].pendingCount);
    // One combined per-device stream: every device exactly once.
    const rows = await collect(result.deviceJobs({ maxPageSize: 1000 }));
    assert.equal(rows.length, 4003);
    assert.deepEqual(new Set(rows.map((r) => r.deviceId)), new Set(ids));
    assert.ok(rows.every((r) => r.status === 'completed' && r.outcome.deviceMethodResponse.status === 200));
    // byPage resumes from a page's continuationToken.
    const pages = result.deviceJobs().byPage({ maxPageSize: 700 });
    const { value: first } = await pages.next();
    const rest = await collect(result.deviceJobs().byPage({ continuationToken: first.continuationToken, maxPageSize: 700 }));
    assert.equal(first.length + rest.flat().length, 4003);
    assert.equal(rest.at(-1).continuationToken, undefined);
  });

  test('waits for a slot held by another job (phase waitingForSlot, backing off), then runs', async () => {
    await client.scheduleDeviceMethod('holder', "deviceId = 'device-0001'", { methodName: 'm' }, later());
    await hub.control('DELETE', 'requests');
    const phases = [];
    const run = client.runDeviceMethodJob(
      { methodName: 'm' },
      { deviceIds: ['device-0002', 'device-0003'], jobId: 'waiter', pollIntervalMs: 100, onProgress: (p) => phases.push(p.phase) },
    );
    while (!phases.includes('waitingForSlot')) await sleep(20);
    await sleep(1500);
    const puts = (await hub.control('GET', 'requests')).requests.filter((r) => r.path === '/jobs/v2/waiter' && r.method === 'PUT');
    assert.ok(puts.every((r) => r.status === 429));
    // One Request-Id per create attempt (a rate-limit 429 is retried within it): attempts 100,
    // 200, 400, 800 ms apart, backing off rather than hammering the job-operation quota.
    const attempts = new Set(puts.map((r) => r.headers['request-id'])).size;
    assert.ok(attempts >= 2 && attempts <= 6, `${attempts} attempts in ~1.5 s`);
    await client.cancelJob('holder');
    const result = await run;
    assert.equal(result.status, 'completed');
    assert.equal(result.succeededCount, 2);
    assert.deepEqual(result.jobIds, ['waiter']);
    assert.equal(phases.at(-1), 'done');
    await assertNoDuplicates(hub, ['waiter']);
  });

  test('timeoutMs while waiting for a slot → errors.TimeoutError with the last progress; abortSignal → AbortError; waitForJobSlot: false → ThrottlingError', async () => {
    await client.scheduleDeviceMethod('holder-2', "deviceId = 'device-0001'", { methodName: 'm' }, later());
    try {
      const err = await rejection(client.runDeviceMethodJob({ methodName: 'm' }, { deviceIds: ['device-0005'], jobId: 'late', pollIntervalMs: 50, timeoutMs: 400 }));
      assert.ok(err instanceof errors.TimeoutError, String(err));
      assert.equal(err.progress.phase, 'waitingForSlot');
      assert.equal(err.progress.notAttemptedCount, 1);
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 200);
      const aborted = await rejection(client.runTwinUpdateJob({ tags: { a: 1 } }, { deviceIds: ['device-0005'], jobId: 'aborted', pollIntervalMs: 50, abortSignal: controller.signal }));
      assert.equal(aborted.name, 'AbortError');
      const noWait = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8'), retry: { maxRetries: 1, initialDelayMs: 1, maxDelayMs: 5 } });
      const throttled = await rejection(noWait.runDeviceMethodJob({ methodName: 'm' }, { deviceIds: ['device-0005'], jobId: 'nowait', waitForJobSlot: false }));
      assert.ok(throttled instanceof errors.ThrottlingError, String(throttled));
      assert.equal(throttled.response.statusCode, 429);
    } finally {
      await client.cancelJob('holder-2');
    }
  });

  test('staged rollout: a failing canary wave stops the rollout and names the devices not attempted', async () => {
    // An offline device fails its device job (a method answering 500 still completes it).
    await hub.control('PUT', 'devices/device-0100/method', { offline: true });
    const ids = Array.from({ length: 30 }, (_, i) => `device-${String(100 + i).padStart(4, '0')}`);
    const result = await client.runDeviceMethodJob(
      { methodName: 'update' },
      { deviceIds: ids, jobId: 'canary', waves: [2, 8], failureThreshold: 0.2, pollIntervalMs: 50 },
    );
    assert.equal(result.status, 'stopped');
    assert.deepEqual(result.jobIds, ['canary-1-1']);
    assert.deepEqual(result.waves, [{ wave: 1, jobIds: ['canary-1-1'], deviceCount: 2, succeededCount: 1, failedCount: 1 }]);
    assert.deepEqual(result.notAttempted, ids.slice(2));
    const rows = await collect(result.deviceJobs());
    assert.deepEqual(rows.map((r) => r.deviceId).sort(), ids.slice(0, 2));
  });

  test('staged rollout over a query condition: resolved to devices, waves of growing size, all completed', async () => {
    const waves = [];
    const result = await client.runTwinUpdateJob(
      { tags: { rollout: 'r1' } },
      { queryCondition: 'tags.quoted = true', jobId: 'rollout', waves: [1, 2], failureThreshold: 0, pollIntervalMs: 50, onProgress: (p) => waves.push(p.wave) },
    );
    assert.equal(result.status, 'completed');
    assert.deepEqual(result.waves.map((w) => w.deviceCount), [1, 2]);
    assert.deepEqual(result.jobIds, ['rollout-1-1', 'rollout-2-1']);
    assert.equal(result.succeededCount, 3);
    assert.ok(waves.includes(1) && waves.includes(2));
    // The etag defaulted to '*': the hub took the job, and the twins got the tag.
    const { jobs } = await hub.control('GET', 'jobs');
    assert.equal(jobs.find((j) => j.jobId === 'rollout-1-1').updateTwin.etag, '*');
    const { devices } = await hub.control('GET', 'devices');
    assert.deepEqual(devices.filter((d) => d.tags.rollout === 'r1').map((d) => d.deviceId).sort(), [...quoted].sort());
  });

  test('the drop-in scheduleTwinUpdate keeps the wire format: without an etag the hub refuses the job (412 PreconditionFailed)', async () => {
    const err = await rejection(client.scheduleTwinUpdate('no-etag', '*', { tags: { a: 1 } }));
    assert.equal(err.response.statusCode, 412);
    assert.match(err.message, /etag/);
    const { counters } = await hub.control('GET', 'jobs');
    assert.equal(counters['no-etag']?.creates ?? 0, 0);
  });

  test('bad options are clear errors, nothing is sent', async () => {
    await hub.control('DELETE', 'requests');
    const cases = [
      [{ deviceIds: [] }, /deviceIds is empty/],
      [{ deviceIds: ['a'], queryCondition: '*' }, /exactly one of/],
      [{ deviceIds: [1] }, /non-empty strings/],
      [{ deviceIds: ['a'], jobId: 'a b' }, /jobId/],
      [{ deviceIds: ['a'], waves: [0] }, /waves/],
      [{ deviceIds: ['a'], failureThreshold: 1.5 }, /failureThreshold/],
      [{ deviceIds: ['a', 'b'], jobId: 'x'.repeat(62), waves: [1] }, /longer than 64/],
    ];
    for (const [options, message] of cases) {
      const err = await rejection(client.runDeviceMethodJob({ methodName: 'm' }, options));
      assert.ok(err instanceof errors.ArgumentError, `${JSON.stringify(options)}: ${err}`);
      assert.match(err.message, message);
    }
    assert.ok((await rejection(client.runDeviceMethodJob({ methodName: '' }, { deviceIds: ['a'] }))) instanceof errors.ArgumentError);
    assert.ok((await rejection(client.runDeviceMethodJob({ methodName: 'm' }, null))) instanceof TypeError);
    assert.ok((await rejection(client.runDeviceMethodJob({ methodName: 'm' }, { deviceIds: ['a'], onProgress: 5 }))) instanceof TypeError);
    assert.equal((await hub.control('GET', 'requests')).requests.length, 0);
  });
});

describe('watchJobs', () => {
  let hub;
  let client;
  before(async () => {
    hub = await startEmulator({ devices: 210 });
    client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8'), ...FAST_RETRY });
  });
  after(() => hub?.stop());

  test('watchJobs: created, started, progress and finished events from the jobs query; abortSignal ends it', async () => {
    await client.runDeviceMethodJob({ methodName: 'm' }, { deviceIds: ['device-0001'], jobId: 'before', pollIntervalMs: 20 });
    const controller = new AbortController();
    const events = [];
    const watching = (async () => {
      for await (const e of client.watchJobs({ pollIntervalMs: 50, abortSignal: controller.signal })) {
        events.push(e);
        if (e.type === 'finished' && e.job.jobId === 'watched') controller.abort();
      }
    })();
    await sleep(100);
    // A device answering after a second keeps the job running for a few polls.
    await hub.control('PUT', 'devices/device-0200/method', { delayMs: 1000 });
    await client.scheduleDeviceMethod('watched', "deviceId IN ['device-0200', 'device-0201']", { methodName: 'm', responseTimeoutInSeconds: 300 });
    const err = await rejection(watching);
    assert.equal(err.name, 'AbortError');
    const mine = events.filter((e) => e.job.jobId === 'watched').map((e) => e.type);
    assert.equal(mine[0], 'created');
    assert.equal(mine.at(-1), 'finished');
    assert.equal(mine.filter((t) => t === 'created' || t === 'finished').length, 2, mine.join());
    assert.ok(mine.includes('started'), mine.join());
    // Jobs that had finished before the watch started are not reported.
    assert.ok(!events.some((e) => e.job.jobId === 'before'));
  });
});

describe('fleet calls under faults (429 and dropped responses)', () => {
  let hub;
  before(async () => {
    hub = await startEmulator({ devices: 600, args: ['--tier', 'S1'] });
    await hub.control('PUT', 'time', { scale: 2000 });
    await hub.control('PUT', 'faults', { spec: '429:0.2,drop:0.05' });
  });
  after(() => hub?.stop());

  test('every device is reported exactly once across the split jobs; no job is created twice', async () => {
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8'), ...FAST_RETRY, timeoutMs: 10_000 });
    const ids = Array.from({ length: 600 }, (_, i) => `device-${String(i).padStart(4, '0')}`);
    const result = await client.runDeviceMethodJob(
      { methodName: 'm' },
      { deviceIds: ids, jobId: 'faulty', maxConditionLength: 1500, waves: [50, 550], pollIntervalMs: 20 },
    );
    assert.equal(result.status, 'completed');
    assert.ok(result.jobIds.length >= 7, result.jobIds.join());
    assert.equal(result.succeededCount + result.failedCount, 600);
    assert.equal(new Set(result.jobIds).size, result.jobIds.length);
    const rows = await collect(result.deviceJobs({ maxPageSize: 1000 }));
    assert.equal(rows.length, 600);
    assert.deepEqual(new Set(rows.map((r) => r.deviceId)), new Set(ids));
    const { counters } = await hub.control('GET', 'jobs');
    for (const id of result.jobIds) assert.equal(counters[id].creates, 1, id);
    // Each device's method was called exactly once: no device was in two jobs.
    const { devices } = await hub.control('GET', 'devices');
    assert.ok(devices.every((d) => d.methodCalls === 1), 'a device was called twice or never');
    const faults = (await hub.control('GET', 'requests')).requests.filter((r) => r.fault);
    assert.ok(faults.some((r) => r.fault === 'drop') && faults.some((r) => r.fault === '429'), 'faults were injected');
  });

  test('a twin job under the same faults: every device updated once, reported once', async () => {
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8'), ...FAST_RETRY, timeoutMs: 10_000 });
    const ids = Array.from({ length: 300 }, (_, i) => `device-${String(i * 2).padStart(4, '0')}`);
    const result = await client.runTwinUpdateJob({ tags: { wave: 'faulty' } }, { deviceIds: ids, jobId: 'faulty-twin', maxConditionLength: 1000, pollIntervalMs: 20 });
    assert.equal(result.status, 'completed');
    assert.ok(result.jobIds.length >= 4, result.jobIds.join());
    assert.equal(result.succeededCount, 300);
    const rows = await collect(result.deviceJobs());
    assert.deepEqual(rows.map((r) => r.deviceId).sort(), [...ids].sort());
    const { counters } = await hub.control('GET', 'jobs');
    for (const id of result.jobIds) assert.equal(counters[id].creates, 1, id);
    const { devices } = await hub.control('GET', 'devices');
    const updated = devices.filter((d) => d.tags.wave === 'faulty');
    assert.deepEqual(updated.map((d) => d.deviceId).sort(), [...ids].sort());
  });
});
