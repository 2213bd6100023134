// The modern API against the emulator: listJobs / listDeviceJobs paged iterators, Query async
// iteration, waitForJob (progress, timeout, abort), abortSignal in the middle of a retry
// backoff, and the ESM and CommonJS entries.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import { getEventListeners } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startEmulator } from './helpers/emulator.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const { JobClient, Query, errors } = require('..');

let hub;
let ca;
let client;

before(async () => {
  hub = await startEmulator({ devices: 10 });
  ca = readFileSync(hub.caPath, 'utf8');
  client = JobClient.fromConnectionString(hub.connectionString, { ca });
});
after(() => hub?.stop());

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function collect(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

/** Settles `promise`, returning what it rejected with (fails if it resolves). */
async function rejection(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

describe('listJobs', { timeout: 30_000 }, () => {
  const ids = Array.from({ length: 7 }, (_, i) => `list-${i}`);
  before(async () => {
    await hub.control('POST', 'reset');
    // Frozen clock: the jobs stay scheduled (start time far ahead), so their status is stable.
    const start = new Date(Date.now() + 3_600_000);
    for (const id of ids) await client.scheduleTwinUpdate(id, '*', { etag: '*', tags: { a: 1 } }, start);
    await hub.control('GET', 'requests?clear=true');
  });

  test('iterates typed jobs over more than one page', async () => {
    const it = client.listJobs({ maxPageSize: 3 });
    assert.equal(typeof it.next, 'function');
    assert.equal(typeof it.byPage, 'function');
    assert.equal(it[Symbol.asyncIterator](), it);
    const jobs = await collect(it);
    assert.deepEqual(jobs.map((j) => j.jobId), ids);
    assert.ok(jobs.every((j) => j.type === 'scheduleUpdateTwin' && typeof j.status === 'string'));
    const { requests } = await hub.control('GET', 'requests?clear=true');
    const pages = requests.filter((r) => r.path === '/jobs/v2/query');
    assert.equal(pages.length, 3, '7 jobs, 3 per page');
    assert.ok(pages.every((r) => r.headers['x-ms-max-item-count'] === '3'));
    assert.equal(pages[0].headers['x-ms-continuation'], undefined);
    assert.ok(pages[1].headers['x-ms-continuation']);
    const { signal } = new AbortController();
    assert.equal((await collect(client.listJobs({ maxPageSize: 3, abortSignal: signal }))).length, 7);
    assert.equal(getEventListeners(signal, 'abort').length, 0, 'no listener is left behind per page');
    await hub.control('GET', 'requests?clear=true');
  });

  test('byPage: pages carry continuationToken and a later call resumes from it', async () => {
    const pages = client.listJobs().byPage({ maxPageSize: 2 });
    const first = (await pages.next()).value;
    assert.ok(Array.isArray(first));
    assert.deepEqual(first.map((j) => j.jobId), ids.slice(0, 2));
    assert.equal(typeof first.continuationToken, 'string');
    await pages.return();

    const rest = await collect(client.listJobs().byPage({ continuationToken: first.continuationToken, maxPageSize: 4 }));
    assert.deepEqual(rest.map((p) => p.map((j) => j.jobId)), [ids.slice(2, 6), ids.slice(6)]);
    assert.equal(typeof rest[0].continuationToken, 'string');
    assert.equal(rest[1].continuationToken, undefined, 'the last page has no token');
  });

  test('filters by jobType and jobStatus', async () => {
    assert.equal((await collect(client.listJobs({ jobType: 'scheduleDeviceMethod' }))).length, 0);
    const scheduled = await collect(client.listJobs({ jobType: 'scheduleUpdateTwin', jobStatus: 'scheduled' }));
    assert.deepEqual(scheduled.map((j) => j.jobId), ids);
    const { requests } = await hub.control('GET', 'requests?clear=true');
    const last = requests.filter((r) => r.path === '/jobs/v2/query').at(-1);
    assert.match(last.query, /jobStatus=scheduled/);
    assert.match(last.query, /jobType=scheduleUpdateTwin/);
  });

  test('bad options throw synchronously', () => {
    assert.throws(() => client.listJobs({ maxPageSize: 0 }), TypeError);
    assert.throws(() => client.listJobs({ maxPageSize: 'x' }), TypeError);
    assert.throws(() => client.listJobs({ abortSignal: {} }), TypeError);
    assert.throws(() => client.listJobs(42), TypeError);
  });

  test('Query is async-iterable across pages (continuation token)', async () => {
    const query = client.createQuery(undefined, undefined, 3);
    assert.ok(query instanceof Query);
    const jobs = await collect(query);
    assert.deepEqual(jobs.map((j) => j.jobId), ids);
    assert.equal(query.hasMoreResults, false);
    const { requests } = await hub.control('GET', 'requests?clear=true');
    const pages = requests.filter((r) => r.path === '/jobs/v2/query');
    assert.equal(pages.length, 3);
    assert.deepEqual(pages.slice(1).map((r) => typeof r.headers['x-ms-continuation']), ['string', 'string']);
  });

  test('an aborted listJobs rejects with AbortError', async () => {
    const signal = AbortSignal.abort();
    const err = await rejection(client.listJobs({ abortSignal: signal }).next());
    assert.equal(err.name, 'AbortError');
    assert.ok(err instanceof DOMException);
  });
});

describe('waitForJob', { timeout: 30_000 }, () => {
  before(() => hub.control('POST', 'reset'));

  test('resolves with the completed job; onProgress sees every poll with statistics', async () => {
    await client.scheduleDeviceMethod('wait-ok', '*', { methodName: 'reboot', payload: { n: 1 } });
    const seen = [];
    const { signal } = new AbortController();
    const job = await client.waitForJob('wait-ok', { pollIntervalMs: 20, abortSignal: signal, onProgress: (j) => seen.push(j) });
    assert.equal(getEventListeners(signal, 'abort').length, 0, 'the abort listener is removed when the call settles');
    assert.equal(job.jobId, 'wait-ok');
    assert.equal(job.status, 'completed');
    assert.equal(job.deviceJobStatistics.deviceCount, 10);
    assert.equal(job.deviceJobStatistics.succeededCount, 10);
    assert.ok(seen.length >= 1);
    assert.ok(seen.every((j) => j.jobId === 'wait-ok' && typeof j.deviceJobStatistics === 'object'));
    assert.equal(seen.at(-1).status, 'completed', 'the last progress call is the final job');
  });

  test('tolerates a job that is not there yet (404 JobNotFound) within the grace period', async () => {
    const waiting = client.waitForJob('wait-late', { pollIntervalMs: 25, notFoundGraceMs: 5_000 });
    await sleep(150);
    await client.scheduleDeviceMethod('wait-late', '*', { methodName: 'reboot' });
    assert.equal((await waiting).status, 'completed');
    const err = await rejection(client.waitForJob('wait-never', { pollIntervalMs: 10, notFoundGraceMs: 50 }));
    assert.ok(err instanceof errors.JobNotFoundError, String(err));
  });

  test('times out with TimeoutError carrying the last job', async () => {
    const start = new Date(Date.now() + 3_600_000);
    await client.scheduleDeviceMethod('wait-slow', '*', { methodName: 'reboot' }, start);
    const started = Date.now();
    const err = await rejection(client.waitForJob('wait-slow', { pollIntervalMs: 20, timeoutMs: 200 }));
    assert.ok(Date.now() - started < 2_000);
    assert.ok(err instanceof errors.TimeoutError, String(err));
    assert.equal(err.name, 'TimeoutError');
    assert.equal(err.job.jobId, 'wait-slow');
    assert.equal(err.job.status, 'scheduled');
    assert.match(err.message, /wait-slow.*200 ms.*scheduled/);
  });

  test('abort in the middle stops polling and does not cancel the job', async () => {
    const start = new Date(Date.now() + 3_600_000);
    await client.scheduleDeviceMethod('wait-abort', '*', { methodName: 'reboot' }, start);
    const controller = new AbortController();
    let polls = 0;
    const waiting = client.waitForJob('wait-abort', {
      pollIntervalMs: 20,
      abortSignal: controller.signal,
      onProgress: () => polls++,
    });
    await sleep(150);
    assert.ok(polls >= 1);
    const aborted = Date.now();
    controller.abort();
    const err = await rejection(waiting);
    assert.ok(Date.now() - aborted < 200);
    assert.equal(err.name, 'AbortError');
    await hub.control('GET', 'requests?clear=true');
    await sleep(100);
    const { requests } = await hub.control('GET', 'requests');
    assert.equal(requests.filter((r) => r.path === '/jobs/v2/wait-abort').length, 0, 'polling stopped');
    const { jobStatus } = await client.getJob('wait-abort');
    assert.equal(jobStatus.status, 'scheduled', 'the job is not cancelled');
    assert.ok(!requests.some((r) => r.path.endsWith('/cancel')));
  });

  test('onProgress throwing rejects with the thrown value', async () => {
    await client.scheduleDeviceMethod('wait-throw', '*', { methodName: 'reboot' });
    const boom = new Error('boom');
    const err = await rejection(client.waitForJob('wait-throw', { pollIntervalMs: 10, onProgress: () => { throw boom; } }));
    assert.equal(err, boom);
  });

  test('bad arguments reject', async () => {
    assert.ok((await rejection(client.waitForJob(''))) instanceof ReferenceError);
    assert.ok((await rejection(client.waitForJob('j', { pollIntervalMs: -1 }))) instanceof TypeError);
    assert.ok((await rejection(client.waitForJob('j', { onProgress: 1 }))) instanceof TypeError);
    assert.equal((await rejection(client.waitForJob('j', { abortSignal: AbortSignal.abort() }))).name, 'AbortError');
  });
});

describe('abortSignal and retries', { timeout: 30_000 }, () => {
  test('abort in the middle of a retry backoff settles promptly', async () => {
    await hub.control('POST', 'reset');
    await hub.control('PUT', 'faults', { spec: '503:1' });
    try {
      const patient = JobClient.fromConnectionString(hub.connectionString, {
        ca,
        retry: { maxRetries: 5, initialDelayMs: 30_000, maxDelayMs: 30_000 },
      });
      const controller = new AbortController();
      const waiting = patient.waitForJob('any', { abortSignal: controller.signal });
      const pages = patient.listJobs({ abortSignal: controller.signal }).next();
      const deviceRows = patient.listDeviceJobs('any', { abortSignal: controller.signal }).next();
      // Let the first attempts fail with 503 so each call sits in a (long, jittered) backoff.
      let failed = 0;
      for (let i = 0; i < 100 && failed < 3; i++) {
        await sleep(20);
        failed = (await hub.control('GET', 'requests')).requests.filter((r) => r.status === 503).length;
      }
      assert.ok(failed >= 3, 'every call got a 503');
      await sleep(100);
      const before = (await hub.control('GET', 'requests')).requests.length;
      const aborted = Date.now();
      controller.abort();
      const results = await Promise.allSettled([waiting, pages, deviceRows]);
      const elapsed = Date.now() - aborted;
      assert.ok(elapsed < 200, `settled ${elapsed} ms after abort`);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.equal(r.reason.name, 'AbortError');
      }
      await sleep(150);
      const { requests } = await hub.control('GET', 'requests');
      assert.equal(requests.length, before, 'no attempt after the abort');
    } finally {
      await hub.control('DELETE', 'faults');
    }
  });

  test('an abort reason is kept as cause', async () => {
    const controller = new AbortController();
    const reason = new Error('user left');
    controller.abort(reason);
    const err = await rejection(client.listDeviceJobs('x', { abortSignal: controller.signal }).next());
    assert.equal(err.name, 'AbortError');
    assert.equal(err.cause, reason);
  });
});

describe('listDeviceJobs', { timeout: 30_000 }, () => {
  before(async () => {
    await hub.control('POST', 'reset');
    await hub.control('PUT', 'devices/device-0001/method', { status: 201, payload: { rebooted: 'soon' } });
    await hub.control('PUT', 'devices/device-0002/method', { offline: true });
    await client.scheduleDeviceMethod('rows', '*', {
      methodName: 'reboot',
      responseTimeoutInSeconds: 5,
      connectTimeoutInSeconds: 1,
    });
    // The offline device fails after its connect timeout on the emulator clock.
    await hub.control('POST', 'time/advance', { seconds: 5 });
    await client.waitForJob('rows', { pollIntervalMs: 20, timeoutMs: 10_000 });
    await hub.control('GET', 'requests?clear=true');
  });

  test('typed rows over several pages: method outcome and an offline device error', async () => {
    const rows = await collect(client.listDeviceJobs('rows', { maxPageSize: 4 }));
    assert.equal(rows.length, 10);
    assert.ok(rows.every((r) => r.jobId === 'rows' && r.jobType === 'scheduleDeviceMethod'));
    const byId = Object.fromEntries(rows.map((r) => [r.deviceId, r]));
    assert.deepEqual(byId['device-0000'].outcome.deviceMethodResponse, { status: 200, payload: { ok: true } });
    assert.equal(byId['device-0000'].status, 'completed');
    assert.deepEqual(byId['device-0001'].outcome.deviceMethodResponse, { status: 201, payload: { rebooted: 'soon' } });
    assert.equal(byId['device-0002'].status, 'failed');
    assert.equal(byId['device-0002'].error.code, 'DeviceNotOnline');
    assert.equal(typeof byId['device-0002'].error.description, 'string');
    const { requests } = await hub.control('GET', 'requests?clear=true');
    assert.equal(requests.length, 3, '10 rows, 4 per page');
    for (const r of requests) {
      assert.equal(r.method, 'POST');
      assert.equal(r.path, '/devices/query');
      assert.deepEqual(JSON.parse(r.body), { query: "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'rows'" });
      assert.equal(r.headers['x-ms-max-item-count'], '4');
    }
  });

  test('byPage and an id that needs escaping', async () => {
    const pages = await collect(client.listDeviceJobs('rows').byPage({ maxPageSize: 6 }));
    assert.deepEqual(pages.map((p) => p.length), [6, 4]);
    assert.equal(typeof pages[0].continuationToken, 'string');
    assert.deepEqual(await collect(client.listDeviceJobs("it's")), []);
    const { requests } = await hub.control('GET', 'requests?clear=true');
    assert.equal(JSON.parse(requests.at(-1).body).query, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'it\\'s'");
  });
});

describe('entries', { timeout: 30_000 }, () => {
  test('ESM import and CommonJS require give the same objects', async () => {
    const esm = await import('iothub-jobs');
    assert.equal(esm.JobClient, JobClient);
    assert.equal(esm.errors, errors);
    assert.equal(esm.Query, Query);
    assert.equal(esm.default.JobClient, JobClient);
    const cjs = require('iothub-jobs');
    assert.equal(cjs.JobClient, JobClient);
    assert.equal(require.resolve('iothub-jobs'), path.join(root, 'lib', 'main.js'));
    assert.equal(fileURLToPath(import.meta.resolve('iothub-jobs')), path.join(root, 'lib', 'main.mjs'));
  });

  test('a separate ESM and a CommonJS process list jobs through the package name', async () => {
    const code = (kind) =>
      kind === 'esm'
        ? "import { JobClient, errors } from 'iothub-jobs'; import { readFileSync } from 'node:fs';"
        : "const { JobClient, errors } = require('iothub-jobs'); const { readFileSync } = require('node:fs');";
    const body = `
      const c = JobClient.fromConnectionString(process.env.HUB_CS, { ca: readFileSync(process.env.HUB_CA, 'utf8') });
      (async () => { let n = 0; for await (const j of c.listJobs()) n++; console.log(JSON.stringify({ n, errors: typeof errors.TimeoutError })); })();`;
    for (const kind of ['esm', 'cjs']) {
      const out = await new Promise((resolve, reject) =>
        execFile(
          process.execPath,
          [kind === 'esm' ? '--input-type=module' : '--input-type=commonjs', '-e', code(kind) + body],
          { cwd: root, env: { ...process.env, HUB_CS: hub.connectionString, HUB_CA: hub.caPath }, timeout: 20_000 },
          (err, stdout, stderr) => (err ? reject(new Error(`${kind}: ${stderr}`)) : resolve(stdout)),
        ),
      );
      const jobs = (await client.createQuery().next()).result.length;
      assert.deepEqual(JSON.parse(out), { n: jobs, errors: 'function' }, kind);
    }
  });
});
