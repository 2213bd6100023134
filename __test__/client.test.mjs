// Tests of the binding itself (the package entry, argument handling, results, errors, callbacks,
// token credentials, process lifetime), against a small local HTTPS server started here.
// The side-by-side comparison with azure-iothub lives in parity.test.mjs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { createRequire } from 'node:module';

import { RecordingServer, CA_PATH, CA_PEM } from './helpers/recording-server.mjs';
import { JobClient as NamedJobClient, Query as NamedQuery, errors as namedErrors } from '../lib/main.js';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const pkg = require('..');
const { JobClient, Query, errors } = pkg;

const CA = CA_PEM;
const KEY_B64 = Buffer.from('0123456789abcdef0123456789abcdef').toString('base64');
const SCOPE = 'https://iothubs.azure.net/.default';

// ---------------------------------------------------------------------------------------------
// The hub: the shared recording server; `respond` sees each request with its body as text.

class Hub {
  constructor() {
    this.requests = [];
    this.respond = () => ({ json: { jobId: 'job-1', status: 'completed' } });
    this.server = new RecordingServer({
      keepAliveTimeout: 60_000,
      respond: (r) => {
        const rec = { method: r.method, url: r.url, headers: r.headers, body: r.body.toString('utf8') };
        this.requests.push(rec);
        return this.respond(rec);
      },
    });
  }
  async start() {
    await this.server.start();
    this.port = this.server.port;
    this.host = this.server.hostName;
    this.connectionString = this.server.connectionString(KEY_B64);
    return this;
  }
  reset(respond) {
    this.requests = [];
    if (respond) this.respond = respond;
  }
  client() {
    return JobClient.fromConnectionString(this.connectionString, { ca: CA, retry: false });
  }
  stop() {
    return this.server.close();
  }
}

const hub = new Hub();
before(() => hub.start());
after(() => hub.stop());

/** Calls `fn(cb)` and resolves with the callback's arguments. */
function viaCallback(fn) {
  return new Promise((resolve, reject) => {
    let returned;
    try {
      returned = fn((...args) => resolve({ args, returned }));
    } catch (e) {
      reject(e);
    }
  });
}

function runChild(code, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const lines = [];
    child.stdout.on('data', (d) => {
      stdout += d;
      for (const line of String(d).split('\n')) if (line) lines.push({ line, at: Date.now() });
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr, lines, exitedAt: Date.now() }));
  });
}

// ---------------------------------------------------------------------------------------------

describe('package entry', () => {
  test('exports JobClient, Query and errors (CommonJS and ESM named imports)', () => {
    assert.equal(typeof JobClient, 'function');
    assert.equal(typeof Query, 'function');
    assert.equal(typeof errors, 'object');
    assert.equal(NamedJobClient, JobClient);
    assert.equal(NamedQuery, Query);
    assert.equal(namedErrors, errors);
    assert.equal(typeof JobClient.fromConnectionString, 'function');
    assert.equal(typeof JobClient.fromSharedAccessSignature, 'function');
    assert.equal(typeof JobClient.fromTokenCredential, 'function');
  });

  test('errors: 33 real Error subclasses with azure-iot-common names', () => {
    const names = Object.keys(errors);
    assert.equal(names.length, 33);
    for (const name of names) {
      const E = errors[name];
      assert.equal(E.name, name);
      const e = new E('msg');
      assert.ok(e instanceof Error, name);
      assert.ok(e instanceof E, name);
      assert.equal(e.message, 'msg');
      assert.ok(Object.prototype.hasOwnProperty.call(e, 'name'), `${name}: own name`);
      assert.equal(e.name, name === 'DeviceRegistrationFailedError' ? 'ProvisioningRegistrationFailedError' : name);
      assert.match(e.stack, new RegExp(`^${e.name}: msg`));
    }
    const bare = new errors.ThrottlingError();
    assert.equal(bare.message, undefined);
  });

  test('a client instance has every method of azure-iothub JobClient', () => {
    const c = hub.client();
    for (const m of ['getJob', 'cancelJob', 'scheduleDeviceMethod', 'scheduleTwinUpdate', 'createQuery']) {
      assert.equal(typeof c[m], 'function', m);
    }
    assert.ok(c instanceof JobClient);
  });
});

describe('factories', () => {
  const cases = [
    ['fromConnectionString', [''], ReferenceError, "connectionString cannot be ''"],
    ['fromConnectionString', [null], ReferenceError, "connectionString cannot be 'null'"],
    ['fromConnectionString', [undefined], ReferenceError, "connectionString cannot be 'undefined'"],
    ['fromConnectionString', ['HostName=h;SharedAccessKey=k'], errors.ArgumentError, 'The connection string is missing the property: SharedAccessKeyName'],
    ['fromSharedAccessSignature', [''], ReferenceError, "sharedAccessSignature cannot be ''"],
    ['fromSharedAccessSignature', [null], ReferenceError, "sharedAccessSignature cannot be 'null'"],
    ['fromSharedAccessSignature', [undefined], ReferenceError, "sharedAccessSignature cannot be 'undefined'"],
    ['fromSharedAccessSignature', ['garbage'], errors.FormatError, 'Malformed signature'],
    ['fromTokenCredential', [undefined, { getToken: async () => null }], errors.ArgumentError, "config.host cannot be 'undefined'"],
    ['fromTokenCredential', ['', { getToken: async () => null }], errors.ArgumentError, "config.host cannot be ''"],
  ];
  for (const [factory, args, cls, message] of cases) {
    test(`${factory}(${args.map((a) => JSON.stringify(a) ?? 'undefined').join(', ')}) throws ${cls.name}: ${message}`, () => {
      assert.throws(
        () => JobClient[factory](...args),
        (e) => e instanceof cls && e.constructor === cls && e.message === message,
      );
    });
  }

  test('options are validated synchronously', () => {
    assert.throws(() => JobClient.fromConnectionString(hub.connectionString, { ca: 42 }), { name: 'TypeError', message: 'options.ca must be a string' });
    assert.throws(() => JobClient.fromConnectionString(hub.connectionString, { retry: 'no' }), { name: 'TypeError' });
    assert.throws(() => JobClient.fromConnectionString(hub.connectionString, { timeoutMs: 'x' }), { name: 'TypeError' });
    assert.throws(() => JobClient.fromConnectionString(hub.connectionString, 'opts'), { name: 'TypeError', message: 'options must be an object' });
    assert.ok(JobClient.fromConnectionString(hub.connectionString, undefined) instanceof JobClient);
    assert.ok(JobClient.fromConnectionString(hub.connectionString, { retry: { maxRetries: 1, initialDelayMs: 1, maxDelayMs: 2 }, timeoutMs: 5000, userAgentPrefix: 'me/1', apiVersion: '2021-04-12' }) instanceof JobClient);
  });

  test('retry options: retries transient failures; retry: false makes one attempt', async () => {
    let n = 0;
    hub.reset(() => (++n <= 2 ? { status: 503, body: '' } : { json: { jobId: 'r' } }));
    const retrying = JobClient.fromConnectionString(hub.connectionString, { ca: CA, retry: { maxRetries: 3, initialDelayMs: 1, maxDelayMs: 5 } });
    assert.deepEqual((await retrying.getJob('r')).jobStatus, { jobId: 'r' });
    assert.equal(hub.requests.length, 3);
    n = 0;
    hub.reset();
    await assert.rejects(hub.client().getJob('r'), errors.ServiceUnavailableError);
    assert.equal(hub.requests.length, 1);
  });

  test('timeoutMs bounds a call: TimeoutError', async () => {
    hub.reset(() => ({ json: {}, delayMs: 1500 }));
    const c = JobClient.fromConnectionString(hub.connectionString, { ca: CA, retry: false, timeoutMs: 200 });
    const t0 = Date.now();
    await assert.rejects(c.getJob('slow'), (e) => e instanceof errors.TimeoutError && e.name === 'TimeoutError');
    assert.ok(Date.now() - t0 < 1400);
  });

  test('userAgentPrefix and apiVersion reach the wire', async () => {
    hub.reset(() => ({ json: { jobId: 'a' } }));
    const c = JobClient.fromConnectionString(hub.connectionString, { ca: CA, userAgentPrefix: 'my-app/2', apiVersion: '2024-03-31' });
    await c.getJob('a');
    assert.equal(hub.requests.length, 1);
    assert.match(hub.requests[0].headers['user-agent'], /^my-app\/2 iothub-jobs\//);
    assert.equal(hub.requests[0].url, '/jobs/v2/a?api-version=2024-03-31');
  });
});

// ---------------------------------------------------------------------------------------------
// Validation, exact classes and messages, synchronous with a callback and a
// rejection without one. Each case is [label, call(client, ...maybeCallback), class, message].

const mp = { methodName: 'reboot' };
const validation = [
  ['getJob(undefined)', (c, cb) => c.getJob(undefined, cb), ReferenceError, "jobId cannot be 'undefined'"],
  ['getJob(null)', (c, cb) => c.getJob(null, cb), ReferenceError, "jobId cannot be 'null'"],
  ["getJob('')", (c, cb) => c.getJob('', cb), ReferenceError, "jobId cannot be ''"],
  ["cancelJob('')", (c, cb) => c.cancelJob('', cb), ReferenceError, "jobId cannot be ''"],
  ['cancelJob(null)', (c, cb) => c.cancelJob(null, cb), ReferenceError, "jobId cannot be 'null'"],
  ['scheduleDeviceMethod(null, …)', (c, cb) => c.scheduleDeviceMethod(null, 'q', mp, ...(cb ? [cb] : [])), ReferenceError, "jobId cannot be 'null'"],
  ['scheduleTwinUpdate(null, …)', (c, cb) => c.scheduleTwinUpdate(null, 'q', { tags: {} }, ...(cb ? [cb] : [])), ReferenceError, "jobId cannot be 'null'"],
  ["scheduleDeviceMethod('j', '')", (c, cb) => c.scheduleDeviceMethod('j', '', mp, ...(cb ? [cb] : [])), ReferenceError, "queryCondition cannot be ''"],
  ["scheduleDeviceMethod('j', null)", (c, cb) => c.scheduleDeviceMethod('j', null, mp, ...(cb ? [cb] : [])), ReferenceError, "queryCondition cannot be 'null'"],
  ["scheduleTwinUpdate('j', undefined)", (c, cb) => c.scheduleTwinUpdate('j', undefined, { tags: {} }, ...(cb ? [cb] : [])), ReferenceError, "queryCondition cannot be 'undefined'"],
  ["scheduleDeviceMethod('j', 42)", (c, cb) => c.scheduleDeviceMethod('j', 42, mp, ...(cb ? [cb] : [])), TypeError, 'queryCondition must be a sql WHERE clause string'],
  ["scheduleTwinUpdate('j', {})", (c, cb) => c.scheduleTwinUpdate('j', {}, { tags: {} }, ...(cb ? [cb] : [])), TypeError, 'queryCondition must be a sql WHERE clause string'],
  ["scheduleDeviceMethod('j', q, undefined)", (c, cb) => c.scheduleDeviceMethod('j', 'q', undefined, ...(cb ? [cb] : [])), ReferenceError, "methodParams cannot be 'undefined'"],
  ["scheduleDeviceMethod('j', q, null)", (c, cb) => c.scheduleDeviceMethod('j', 'q', null, ...(cb ? [cb] : [])), ReferenceError, "methodParams cannot be 'null'"],
  ["scheduleDeviceMethod('j', q, {})", (c, cb) => c.scheduleDeviceMethod('j', 'q', {}, ...(cb ? [cb] : [])), ReferenceError, "methodParams.methodName cannot be 'undefined'"],
  ["scheduleTwinUpdate('j', q, '')", (c, cb) => c.scheduleTwinUpdate('j', 'q', '', ...(cb ? [cb] : [])), ReferenceError, "patch cannot be ''"],
  ["scheduleTwinUpdate('j', q, 0)", (c, cb) => c.scheduleTwinUpdate('j', 'q', 0, ...(cb ? [cb] : [])), ReferenceError, "patch cannot be '0'"],
  ["scheduleTwinUpdate('j', q, null)", (c, cb) => c.scheduleTwinUpdate('j', 'q', null, ...(cb ? [cb] : [])), ReferenceError, "patch cannot be 'null'"],
  ['non-Date start time', (c, cb) => c.scheduleDeviceMethod('j', 'q', mp, 'tomorrow', 10, ...(cb ? [cb] : [])), TypeError, 'jobStartTime.toISOString is not a function'],
  ['invalid Date', (c, cb) => c.scheduleTwinUpdate('j', 'q', { tags: {} }, new Date(NaN), 10, ...(cb ? [cb] : [])), RangeError, 'Invalid time value'],
  // Validation order: jobId before queryCondition before methodParams…
  ['order: jobId first', (c, cb) => c.scheduleDeviceMethod('', 42, null, ...(cb ? [cb] : [])), ReferenceError, "jobId cannot be ''"],
  ['order: methodName before the start time', (c, cb) => c.scheduleDeviceMethod('j', 'q', {}, 'bad', 1, ...(cb ? [cb] : [])), ReferenceError, "methodParams.methodName cannot be 'undefined'"],
  ['order: start time before the queryCondition type', (c, cb) => c.scheduleDeviceMethod('j', 42, mp, 'bad', 1, ...(cb ? [cb] : [])), TypeError, 'jobStartTime.toISOString is not a function'],
];

describe('validation', () => {
  for (const [label, call, cls, message] of validation) {
    test(`${label}: rejects without a callback`, async () => {
      const c = hub.client();
      let p;
      assert.doesNotThrow(() => (p = call(c)));
      assert.ok(p instanceof Promise);
      await assert.rejects(p, (e) => e.constructor === cls && e.message === message);
    });
    test(`${label}: throws synchronously with a callback`, () => {
      const c = hub.client();
      let called = false;
      assert.throws(() => call(c, () => (called = true)), (e) => e.constructor === cls && e.message === message);
      assert.equal(called, false);
    });
  }

  test("getJob(0) and getJob(false) are accepted (/jobs/v2/0, /jobs/v2/false)", async () => {
    hub.reset(() => ({ json: { jobId: 'x' } }));
    const c = hub.client();
    await c.getJob(0);
    await c.getJob(false);
    assert.deepEqual(hub.requests.map((r) => r.url.split('?')[0]), ['/jobs/v2/0', '/jobs/v2/false']);
  });

  test('a truthy non-function callback: always a synchronous TypeError', () => {
    const c = hub.client();
    assert.throws(() => c.getJob('x', 5), { name: 'TypeError', message: 'Callback has to be a Function' });
    assert.throws(() => c.cancelJob('', 'cb'), { name: 'TypeError', message: 'Callback has to be a Function' });
    assert.throws(() => c.scheduleDeviceMethod('j', 'q', mp, new Date(), 5, {}), { message: 'Callback has to be a Function' });
    assert.throws(() => c.createQuery().next('tok', 1), { message: 'Callback has to be a Function' });
  });

  test('the callback must be the last parameter: always synchronous', () => {
    const c = hub.client();
    const fn = () => {};
    assert.throws(() => c.scheduleDeviceMethod('j', 'q', mp, fn, 3600), { name: 'TypeError', message: 'The callback must be the last parameter' });
    assert.throws(() => c.scheduleTwinUpdate('j', 'q', { tags: {} }, new Date(), fn, 3600), { name: 'TypeError', message: 'The callback must be the last parameter' });
  });

  test('any object with a toISOString method is a start time; a throwing getter propagates', async () => {
    hub.reset(() => ({ json: { jobId: 'j' } }));
    const c = hub.client();
    await c.scheduleTwinUpdate('j', 'q', { tags: {} }, { toISOString: () => '2030-01-01T00:00:00.000Z' }, 60);
    assert.equal(JSON.parse(hub.requests[0].body).startTime, '2030-01-01T00:00:00.000Z');
    const boom = new Error('getter');
    const params = { get methodName() { throw boom; } };
    await assert.rejects(c.scheduleDeviceMethod('j', 'q', params), (e) => e === boom);
    assert.throws(() => c.scheduleDeviceMethod('j', 'q', params, () => {}), (e) => e === boom);
  });

  test('createQuery validates nothing', () => {
    const c = hub.client();
    assert.ok(c.createQuery() instanceof Query);
    assert.ok(c.createQuery(42, {}, 'x') instanceof Query);
  });
});

// ---------------------------------------------------------------------------------------------

describe('requests and results', () => {
  test('getJob: promise resolves { jobStatus, response }', async () => {
    hub.reset(() => ({ json: { jobId: 'job-1', status: 'running' }, headers: { 'X-Custom': 'v' } }));
    const c = hub.client();
    const res = await c.getJob('job-1');
    assert.deepEqual(Object.keys(res), ['jobStatus', 'response']);
    assert.deepEqual(res.jobStatus, { jobId: 'job-1', status: 'running' });
    assert.equal(res.response.statusCode, 200);
    assert.equal(res.response.statusMessage, 'OK');
    assert.equal(res.response.headers['x-custom'], 'v');
    assert.equal(res.response.headers['content-type'], 'application/json; charset=utf-8');
    const r = hub.requests[0];
    assert.equal(r.method, 'GET');
    assert.equal(r.url, '/jobs/v2/job-1?api-version=2021-04-12');
    assert.match(r.headers.authorization, /^SharedAccessSignature sr=127\.0\.0\.1%3A\d+|^SharedAccessSignature sr=127\.0\.0\.1:\d+/);
    assert.match(r.headers['user-agent'], /^iothub-jobs\//);
    assert.match(r.headers['request-id'], /^[0-9a-f-]{36}$/);
  });

  test('cancelJob: callback gets (null, job, response); POST with empty body', async () => {
    hub.reset(() => ({ json: { jobId: 'job-2', status: 'cancelled' } }));
    const c = hub.client();
    const { args, returned } = await viaCallback((cb) => c.cancelJob('job-2', cb));
    assert.equal(returned, undefined);
    assert.equal(args.length, 3);
    assert.equal(args[0], null);
    assert.deepEqual(args[1], { jobId: 'job-2', status: 'cancelled' });
    assert.equal(args[2].statusCode, 200);
    assert.equal(hub.requests[0].method, 'POST');
    assert.equal(hub.requests[0].url, '/jobs/v2/job-2/cancel?api-version=2021-04-12');
    assert.equal(hub.requests[0].body, '');
  });

  test('a non-JSON or empty success body gives the empty string', async () => {
    const c = hub.client();
    hub.reset(() => ({ body: 'plain', headers: { 'content-type': 'text/plain' } }));
    assert.equal((await c.getJob('a')).jobStatus, '');
    hub.reset(() => ({ body: '', headers: { 'content-type': 'application/json' } }));
    assert.equal((await c.getJob('a')).jobStatus, '');
  });

  test('invalid JSON: SyntaxError (promise rejects; callback gets (err, undefined, response))', async () => {
    hub.reset(() => ({ body: '{nope', headers: { 'content-type': 'application/json' } }));
    const c = hub.client();
    await assert.rejects(c.getJob('a'), SyntaxError);
    const { args } = await viaCallback((cb) => c.getJob('a', cb));
    assert.ok(args[0] instanceof SyntaxError);
    assert.equal(args[1], undefined);
    assert.equal(args[2].statusCode, 200);
  });

  test('scheduleDeviceMethod: PUT body key order and values (callback form defaults)', async () => {
    hub.reset(() => ({ json: { jobId: 'j1' } }));
    const c = hub.client();
    const start = new Date('2030-05-06T07:08:09.010Z');
    await viaCallback((cb) => c.scheduleDeviceMethod('j1', "deviceId = 'd'", { methodName: 'm', payload: { a: [1, 'é'] }, connectTimeoutInSeconds: 7, extra: 1 }, start, cb));
    const r = hub.requests[0];
    assert.equal(r.method, 'PUT');
    assert.equal(r.url, '/jobs/v2/j1?api-version=2021-04-12');
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(
      r.body,
      '{"jobId":"j1","type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m","payload":{"a":[1,"é"]},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":7},"startTime":"2030-05-06T07:08:09.010Z","maxExecutionTimeInSeconds":3600,"queryCondition":"deviceId = \'d\'"}',
    );
  });

  test('scheduleTwinUpdate promise forms get the callback defaults (ours); numbers stay numbers', async () => {
    hub.reset(() => ({ json: { jobId: 7 } }));
    const c = hub.client();
    const before = Date.now();
    const res = await c.scheduleTwinUpdate(7, 'q', { tags: { x: 1 } });
    const body = JSON.parse(hub.requests[0].body);
    assert.deepEqual(Object.keys(body), ['jobId', 'type', 'updateTwin', 'startTime', 'maxExecutionTimeInSeconds', 'queryCondition']);
    assert.equal(body.jobId, 7);
    assert.equal(body.type, 'scheduleUpdateTwin');
    assert.equal(body.maxExecutionTimeInSeconds, 3600);
    const t = Date.parse(body.startTime);
    assert.ok(t >= before - 1 && t <= Date.now() + 1, body.startTime);
    assert.match(body.startTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(res.jobStatus, { jobId: 7 });
    // An explicit null start time stays null; falsy payload and timeout get the reference's defaults.
    hub.reset();
    await viaCallback((cb) => c.scheduleDeviceMethod('j', 'q', { methodName: 'm', payload: 0, responseTimeoutInSeconds: 0 }, null, 10, cb));
    assert.equal(hub.requests[0].body, '{"jobId":"j","type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m","payload":null,"responseTimeoutInSeconds":30},"startTime":null,"maxExecutionTimeInSeconds":10,"queryCondition":"q"}');
  });

  test('jobId is encoded in every path (ours)', async () => {
    hub.reset(() => ({ json: {} }));
    const c = hub.client();
    await c.getJob('a b/../c');
    await c.cancelJob('a b');
    assert.deepEqual(hub.requests.map((r) => r.url), ['/jobs/v2/a%20b%2F..%2Fc?api-version=2021-04-12', '/jobs/v2/a%20b/cancel?api-version=2021-04-12']);
  });
});

describe('errors', () => {
  const statuses = [
    [400, errors.ArgumentError],
    [401, errors.UnauthorizedError],
    [403, errors.TooManyDevicesError],
    [408, errors.DeviceTimeoutError],
    [409, errors.DeviceAlreadyExistsError],
    [412, errors.InvalidEtagError],
    [429, errors.ThrottlingError],
    [500, errors.InternalServerError],
    [502, errors.BadDeviceResponseError],
    [503, errors.ServiceUnavailableError],
    [504, errors.GatewayTimeoutError],
    [418, Error],
  ];
  for (const [status, cls] of statuses) {
    test(`${status} → ${cls.name} with .response and .responseBody (promise and callback)`, async () => {
      const body = JSON.stringify({ Message: 'ErrorCode:Something;it failed', ExceptionMessage: '' });
      hub.reset(() => ({ status, body, headers: { 'content-type': 'application/json; charset=utf-8' } }));
      const c = hub.client();
      const check = (e) => {
        assert.equal(e.constructor, cls);
        assert.ok(e instanceof Error);
        assert.equal(e.name, cls.name);
        assert.equal(e.message, 'it failed');
        assert.equal(e.response.statusCode, status);
        assert.equal(typeof e.response.statusMessage, 'string');
        assert.equal(e.response.headers['content-type'], 'application/json; charset=utf-8');
        assert.equal(e.responseBody, body);
        return true;
      };
      await assert.rejects(c.getJob('x'), check);
      const { args } = await viaCallback((cb) => c.getJob('x', cb));
      assert.equal(args.length, 1);
      check(args[0]);
    });
  }

  test('404 JobNotFound → JobNotFoundError (ours); unknown 404 → Error("Not found")', async () => {
    const c = hub.client();
    hub.reset(() => ({ status: 404, headers: { 'iothub-errorcode': 'JobNotFound', 'content-type': 'application/json' }, body: JSON.stringify({ Message: 'ErrorCode:JobNotFound;Job x not found', ExceptionMessage: '' }) }));
    await assert.rejects(c.getJob('x'), (e) => e instanceof errors.JobNotFoundError && e.name === 'JobNotFoundError');
    hub.reset(() => ({ status: 404, body: 'nothing' }));
    await assert.rejects(c.getJob('x'), (e) => e.constructor === Error && e.message === 'Not found' && e.responseBody === 'nothing');
  });

  test('a connection failure is an Error (no crash)', async () => {
    const c = JobClient.fromConnectionString(`HostName=127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=${KEY_B64}`, { ca: CA, retry: false });
    await assert.rejects(c.getJob('x'), (e) => e instanceof Error);
  });

  test('an untrusted certificate is refused (certificates always verified)', async () => {
    const c = JobClient.fromConnectionString(hub.connectionString, { retry: false });
    hub.reset();
    await assert.rejects(c.getJob('x'), (e) => e instanceof Error);
    assert.equal(hub.requests.length, 0);
  });
});

// ---------------------------------------------------------------------------------------------

describe('Query', () => {
  test('pages with the continuation token; hasMoreResults/continuationToken are own properties', async () => {
    const pages = { '': ['t1', [{ jobId: 'a' }]], t1: ['t2', [{ jobId: 'b' }]], t2: [undefined, [{ jobId: 'c' }]] };
    hub.reset((r) => {
      const [next, items] = pages[r.headers['x-ms-continuation'] || ''];
      return { json: items, headers: next ? { 'x-ms-continuation': next } : {} };
    });
    const c = hub.client();
    const q = c.createQuery('scheduleDeviceMethod', 'completed', 2);
    assert.deepEqual(Object.keys(q), ['hasMoreResults', 'continuationToken']);
    assert.equal(q.hasMoreResults, true);
    assert.equal(q.continuationToken, null);
    const seen = [];
    const first = await q.next();
    assert.deepEqual(Object.keys(first), ['result', 'message']);
    seen.push(...first.result);
    assert.equal(q.continuationToken, 't1');
    assert.equal(q.hasMoreResults, true);
    // promise next() without a token continues from the stored one (ours)
    seen.push(...(await q.next()).result);
    const { args } = await viaCallback((cb) => q.next(cb));
    assert.equal(args[0], null);
    seen.push(...args[1]);
    assert.equal(args[2].statusCode, 200);
    assert.deepEqual(seen.map((j) => j.jobId), ['a', 'b', 'c']);
    assert.equal(q.hasMoreResults, false);
    assert.equal(q.continuationToken, undefined);
    assert.equal(hub.requests[0].url, '/jobs/v2/query?api-version=2021-04-12&jobStatus=completed&jobType=scheduleDeviceMethod');
    assert.equal(hub.requests[0].headers['x-ms-max-item-count'], '2');
    assert.equal(hub.requests[0].headers['x-ms-continuation'], undefined);
    assert.deepEqual(hub.requests.slice(1).map((r) => r.headers['x-ms-continuation']), ['t1', 't2']);
    // an explicit token wins
    hub.reset();
    await q.next('t1');
    assert.equal(hub.requests[0].headers['x-ms-continuation'], 't1');
  });

  test('an error leaves the query state unchanged and reaches the callback alone', async () => {
    hub.reset(() => ({ status: 503, body: '' }));
    const c = hub.client();
    const q = c.createQuery();
    const { args } = await viaCallback((cb) => q.next(cb));
    assert.equal(args.length, 1);
    assert.ok(args[0] instanceof errors.ServiceUnavailableError);
    assert.equal(q.continuationToken, null);
    assert.equal(q.hasMoreResults, true);
  });

  test('nextAsTwin on a job page never crashes: the reference error is delivered; empty page → []', async () => {
    const c = hub.client();
    hub.reset(() => ({ json: [{ jobId: 'a' }], headers: { 'x-ms-continuation': 'n' } }));
    const q = c.createQuery();
    await assert.rejects(q.nextAsTwin(), { name: 'ReferenceError', message: "'registryClient' cannot be 'undefined'" });
    assert.equal(q.continuationToken, 'n');
    const { args } = await viaCallback((cb) => q.nextAsTwin(cb));
    assert.equal(args.length, 1);
    assert.ok(args[0] instanceof ReferenceError);
    hub.reset(() => ({ json: [] }));
    const empty = await c.createQuery().nextAsTwin();
    assert.deepEqual(empty.result, []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('token credentials', () => {
  function credential(behaviour) {
    const cred = {
      calls: [],
      async getToken(...args) {
        cred.calls.push({ args, self: this });
        return behaviour(cred.calls.length);
      },
    };
    return cred;
  }

  test('Bearer header; getToken(scope) called with one string and `this` = the credential', async () => {
    hub.reset(() => ({ json: { jobId: 'x' } }));
    const cred = credential(() => ({ token: 'tok-1', expiresOnTimestamp: Date.now() + 3600_000 }));
    const c = JobClient.fromTokenCredential(hub.host, cred, { ca: CA });
    await c.getJob('x');
    await c.getJob('x');
    assert.equal(hub.requests[0].headers.authorization, 'Bearer tok-1');
    assert.equal(hub.requests[1].headers.authorization, 'Bearer tok-1');
    assert.equal(cred.calls.length, 1, 'cached while far from expiry');
    assert.deepEqual(cred.calls[0].args, [SCOPE]);
    assert.equal(cred.calls[0].self, cred);
  });

  test('renewed when less than 9 minutes are left', async () => {
    hub.reset(() => ({ json: {} }));
    const cred = credential((n) => ({ token: `tok-${n}`, expiresOnTimestamp: Date.now() + 8 * 60_000 }));
    const c = JobClient.fromTokenCredential(hub.host, cred, { ca: CA });
    await c.getJob('x');
    await c.getJob('x');
    assert.equal(cred.calls.length, 2);
    assert.deepEqual(hub.requests.map((r) => r.headers.authorization), ['Bearer tok-1', 'Bearer tok-2']);
  });

  test('single flight: concurrent first calls share one getToken', async () => {
    hub.reset(() => ({ json: {} }));
    let release;
    const gate = new Promise((r) => (release = r));
    const cred = credential(async () => {
      await gate;
      return { token: 'shared', expiresOnTimestamp: Date.now() + 3600_000 };
    });
    const c = JobClient.fromTokenCredential(hub.host, cred, { ca: CA });
    const all = Promise.all([1, 2, 3, 4, 5].map((i) => c.getJob(`j${i}`)));
    await new Promise((r) => setTimeout(r, 50));
    release();
    await all;
    assert.equal(cred.calls.length, 1);
    assert.equal(hub.requests.length, 5);
    assert.ok(hub.requests.every((r) => r.headers.authorization === 'Bearer shared'));
  });

  test('a rejection reaches the caller as the same object (promise and callback); a sync throw too', async () => {
    hub.reset();
    const boom = new Error('no token for you');
    boom.extra = 42;
    const c = JobClient.fromTokenCredential(hub.host, { getToken: () => Promise.reject(boom) }, { ca: CA });
    await assert.rejects(c.getJob('x'), (e) => e === boom);
    const { args } = await viaCallback((cb) => c.cancelJob('x', cb));
    assert.equal(args.length, 1);
    assert.equal(args[0], boom);
    const plain = { reason: 'not an Error' };
    const c2 = JobClient.fromTokenCredential(hub.host, { getToken: () => Promise.reject(plain) }, { ca: CA });
    await assert.rejects(c2.getJob('x'), (e) => e === plain);
    const c3 = JobClient.fromTokenCredential(hub.host, { getToken() { throw boom; } }, { ca: CA });
    await assert.rejects(c3.getJob('x'), (e) => e === boom);
    assert.equal(hub.requests.length, 0);
  });

  test("getToken resolving null → Error('AccessToken creation failed')", async () => {
    const c = JobClient.fromTokenCredential(hub.host, { getToken: async () => null }, { ca: CA });
    await assert.rejects(c.getJob('x'), (e) => e.constructor === Error && e.message === 'AccessToken creation failed');
  });

  test('a credential without getToken fails on use, asynchronously', async () => {
    const c = JobClient.fromTokenCredential(hub.host, {}, { ca: CA });
    await assert.rejects(c.getJob('x'), { name: 'TypeError', message: 'this._config.tokenCredential.getToken is not a function' });
  });
});

// ---------------------------------------------------------------------------------------------

describe('process behaviour', () => {
  test('the production addon has no test-only exports (see panic.test.mjs)', () => {
    const native = require('../index.js');
    assert.equal(native.__panicSync, undefined);
    assert.equal(native.__panicAsync, undefined);
  });

  test("a callback runs in the caller's async context (AsyncLocalStorage), as Node's I/O callbacks do", async () => {
    hub.reset(() => ({ json: { jobId: 'als' } }));
    const { AsyncLocalStorage } = await import('node:async_hooks');
    const als = new AsyncLocalStorage();
    const c = hub.client();
    const seen = await Promise.all(
      ['a', 'b', 'c'].map(
        (store) => new Promise((resolve) => als.run(store, () => c.getJob('als', () => resolve(als.getStore())))),
      ),
    );
    assert.deepEqual(seen, ['a', 'b', 'c']);
    assert.equal(await als.run('p', () => c.getJob('als').then(() => als.getStore())), 'p');
  });

  test('microtasks queued by one callback run before the next callback, however many complete at once', async () => {
    hub.reset(() => ({ json: { jobId: 'tick' } }));
    const c = hub.client();
    const order = [];
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => new Promise((resolve) => {
        c.getJob('tick', () => {
          order.push(`cb${i}`);
          queueMicrotask(() => order.push(`mt${i}`));
          resolve();
        });
      })),
    );
    await new Promise((resolve) => setImmediate(resolve));
    for (let k = 0; k < order.length; k += 2) assert.equal(order[k + 1], order[k].replace('cb', 'mt'), order.join(' '));
  });

  const entry = JSON.stringify(path.join(root, 'lib', 'main.js'));

  test('a script that schedules a job and gets it exits right after its last callback', async () => {
    hub.reset((r) => ({ json: { jobId: 'life', status: r.method === 'PUT' ? 'queued' : 'running' } }));
    const code = `
      import { createRequire } from 'node:module';
      import { readFileSync } from 'node:fs';
      const { JobClient } = createRequire(import.meta.url)(${entry});
      const c = JobClient.fromConnectionString(process.env.CS, { ca: readFileSync(process.env.CA_PATH, 'utf8') });
      c.scheduleDeviceMethod('life', 'q', { methodName: 'm' }, (err) => {
        if (err) throw err;
        c.getJob('life', (err2, job) => {
          if (err2) throw err2;
          console.log('last-callback ' + job.status);
        });
      });`;
    const started = Date.now();
    const r = await runChild(code, { CS: hub.connectionString, CA_PATH });
    assert.equal(r.code, 0, r.stderr);
    const last = r.lines.find((l) => l.line.startsWith('last-callback'));
    assert.ok(last, r.stdout);
    assert.equal(last.line, 'last-callback running');
    // The hub keeps connections alive for 60 s; the process must not wait for them.
    assert.ok(r.exitedAt - last.at < 2000, `exited ${r.exitedAt - last.at} ms after the last callback`);
    assert.ok(r.exitedAt - started < 15_000);
  });

  test('worker threads: each has its own completion queue; one ended mid-call does not disturb the rest', async () => {
    const code = `
      import { Worker } from 'node:worker_threads';
      import { createRequire } from 'node:module';
      const work = (n) => \`
        const { JobClient } = require(\${JSON.stringify(${entry})});
        const { parentPort } = require('node:worker_threads');
        const c = JobClient.fromConnectionString(process.env.CS, { ca: require('node:fs').readFileSync(process.env.CA_PATH, 'utf8'), retry: false });
        Promise.all(Array.from({ length: \${n} }, (_, i) => c.getJob('w' + i))).then((r) => parentPort.postMessage(r.length));
      \`;
      const done = (w) => new Promise((ok, fail) => { w.once('message', ok); w.once('error', fail); });
      const a = new Worker(work(20), { eval: true, execArgv: [] });
      const b = new Worker(work(20), { eval: true, execArgv: [] });
      const doomed = new Worker(work(50), { eval: true, execArgv: [] });
      doomed.once('online', () => setTimeout(() => doomed.terminate(), 20));
      const { JobClient } = createRequire(import.meta.url)(${entry});
      const main = JobClient.fromConnectionString(process.env.CS, { ca: (await import('node:fs')).readFileSync(process.env.CA_PATH, 'utf8'), retry: false });
      const [na, nb, own] = await Promise.all([done(a), done(b), Promise.all([1, 2, 3].map((i) => main.getJob('m' + i)))]);
      console.log('results', na, nb, own.length);
      await Promise.all([a.terminate(), b.terminate()]);`;
    hub.reset(() => ({ json: { jobId: 'w', status: 'completed' }, delayMs: 50 }));
    const r = await runChild(code, { CS: hub.connectionString, CA_PATH });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^results 20 20 3$/m, r.stdout + r.stderr);
  });

  test('a JSON.stringify replaced by one that does not write JSON: an ArgumentError, nothing sent', async () => {
    // The request body is spliced from JSON.stringify's output; the core checks that it is JSON.
    const code = `
      JSON.stringify = () => '{not json';
      import { createRequire } from 'node:module';
      const { JobClient, errors } = createRequire(import.meta.url)(${entry});
      const c = JobClient.fromConnectionString(process.env.CS, { retry: false });
      try {
        await c.scheduleDeviceMethod('bad-json', 'q', { methodName: 'm' });
        console.log('resolved');
      } catch (e) {
        console.log(JSON.parse.name, e instanceof errors.ArgumentError, e.message);
      }`;
    hub.reset();
    const r = await runChild(code, { CS: hub.connectionString });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^parse true jobId is not a JSON value: /m, r.stdout);
    assert.equal(hub.requests.length, 0, 'a request was sent');
  });

  test('an idle client (and a token-credential client) does not keep the process alive', async () => {
    const code = `
      import { createRequire } from 'node:module';
      const { JobClient } = createRequire(import.meta.url)(${entry});
      globalThis.keep = [
        JobClient.fromConnectionString(process.env.CS),
        JobClient.fromTokenCredential('h.azure-devices.net', { getToken: async () => null }),
      ];
      console.log('loaded');`;
    const r = await runChild(code, { CS: hub.connectionString });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.exitedAt - r.lines[0].at < 2000);
  });

  test('a callback that throws surfaces as uncaughtException (no abort)', async () => {
    hub.reset(() => ({ json: { jobId: 'x' } }));
    const code = `
      import { createRequire } from 'node:module';
      import { readFileSync } from 'node:fs';
      const { JobClient } = createRequire(import.meta.url)(${entry});
      process.on('uncaughtException', (e) => { console.log('uncaught ' + e.message); process.exitCode = 0; });
      const c = JobClient.fromConnectionString(process.env.CS, { ca: readFileSync(process.env.CA_PATH, 'utf8') });
      c.getJob('x', () => { throw new Error('thrown by the callback'); });`;
    const r = await runChild(code, { CS: hub.connectionString, CA_PATH });
    assert.equal(r.signal, null);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /uncaught thrown by the callback/);
  });

  test('without a handler, a throwing callback ends the process like a Node event handler (exit code 1)', async () => {
    hub.reset(() => ({ json: { jobId: 'x' } }));
    const code = `
      import { createRequire } from 'node:module';
      import { readFileSync } from 'node:fs';
      const { JobClient } = createRequire(import.meta.url)(${entry});
      const c = JobClient.fromConnectionString(process.env.CS, { ca: readFileSync(process.env.CA_PATH, 'utf8') });
      c.getJob('x', () => { throw new Error('unhandled in callback'); });`;
    const r = await runChild(code, { CS: hub.connectionString, CA_PATH });
    assert.equal(r.signal, null);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unhandled in callback/);
  });
});
