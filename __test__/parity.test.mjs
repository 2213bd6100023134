// Side-by-side parity suite: every scenario runs through azure-iothub@1.16.6 (the reference) and
// through iothub-jobs (ours) against one local recording HTTPS server, and the requests, results
// and errors must be identical — except for the allowed differences, each asserted explicitly in
// the "allowed differences" section (and listed in the README's "Differences from azure-iothub" table).
//
// Harness: __test__/parity/{server,clients,harness}.mjs. Set PARITY_OURS=reference to run the
// "ours" side with the reference (harness self-check: parity tests pass, difference tests fail).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { RecordingServer } from './helpers/recording-server.mjs';
import { sides, ours, oursLoadFailure, referenceVersion, oursVersion, reference, referenceErrors, OURS_IS_REFERENCE } from './parity/clients.mjs';
import {
  KEY,
  POLICY,
  connectionString,
  sasToken,
  parseSas,
  assertValidSas,
  callPromise,
  callCallback,
  normOutcome,
  normRequest,
  assertSideHeaders,
  runBoth,
} from './parity/harness.mjs';
import { prerequisite } from './helpers/prerequisite.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const NOT_LOADED = prerequisite(!ours && `iothub-jobs did not load from the package root: ${oursLoadFailure && oursLoadFailure.message}`);

let server;
let pair;

before(async () => {
  server = await new RecordingServer().start();
  pair = sides(server);
});
after(async () => {
  if (server) await server.close();
});

test('iothub-jobs loads from the package root and exports { JobClient, Query, errors }', () => {
  assert.ok(ours, NOT_LOADED || 'not loaded');
  assert.equal(typeof ours.JobClient, 'function');
  assert.equal(typeof ours.JobClient.fromConnectionString, 'function');
  assert.equal(typeof ours.JobClient.fromSharedAccessSignature, 'function');
  assert.equal(typeof ours.JobClient.fromTokenCredential, 'function');
  assert.equal(typeof ours.Query, 'function');
  assert.equal(typeof ours.errors, 'object');
});

// ---------------------------------------------------------------------------------------------
// shared helpers

const JOB = {
  jobId: 'job-1',
  type: 'scheduleDeviceMethod',
  status: 'queued',
  cloudToDeviceMethod: { methodName: 'reboot', payload: null, responseTimeoutInSeconds: 30 },
  queryCondition: "deviceId = 'd1'",
  createdTime: '2026-01-01T00:00:00Z',
  startTime: '2026-01-01T00:00:00Z',
  endTime: '9999-12-31T23:59:59.9999999Z',
  maxExecutionTimeInSeconds: 3600,
  deviceJobStatistics: { deviceCount: 1, failedCount: 0, succeededCount: 0, runningCount: 0, pendingCount: 1 },
};
/** A syntactically valid SAS string for `host` (the signature is not checked by the test server). */
const sasFor = (host, { se = 4102444800, order = ['sr', 'sig', 'skn', 'se'] } = {}) => {
  const f = { sr: host, sig: 'c2lnbmF0dXJl%3D', skn: 'iothubowner', se: String(se) };
  return 'SharedAccessSignature ' + order.map((k) => `${k}=${f[k]}`).join('&');
};
const okJob = (extra = {}) => ({ status: 200, headers: { 'x-ms-request-id': 'srv-1', ...extra }, json: JOB });
const Q = "deviceId IN ['d1','d2']";
const START = new Date('2030-05-06T07:08:09.010Z');
const cs = (side, opts) => side.fromConnectionString(connectionString(server), opts);
const noMessageForSyntaxError = { messageFor: (e) => !(e instanceof SyntaxError) };

/**
 * Runs `run(client, side)` (returning a callPromise/callCallback outcome) on both sides and
 * asserts identical outcome and identical requests. Returns the raw results for further checks.
 */
async function parity({ script, make = cs, run, oursOpts, maskSas = true, normOpts, authMode = 'sas-key', skn = POLICY, key = KEY }) {
  const res = await runBoth(server, pair, {
    script,
    scenario: async (side) => {
      const client = make(side, side.isReference ? undefined : oursOpts);
      return run(client, side);
    },
  });
  const refOut = normOutcome(res.ref.outcome, normOpts);
  const oursOut = normOutcome(res.ours.outcome, normOpts);
  const refReqs = res.ref.requests.map((r) => normRequest(r, { maskSas, now: res.ref.window }));
  const oursReqs = res.ours.requests.map((r) => normRequest(r, { maskSas, now: res.ours.window }));
  assert.deepEqual(oursReqs, refReqs, 'requests (ours vs azure-iothub)');
  assert.deepEqual(oursOut, refOut, 'outcome (ours vs azure-iothub)');
  assertSideHeaders('azure-iothub', res.ref.requests, { userAgent: `azure-iothub/${referenceVersion}` });
  assertSideHeaders('iothub-jobs', res.ours.requests, { userAgent: OURS_IS_REFERENCE ? `azure-iothub/${referenceVersion}` : `iothub-jobs/${oursVersion}` });
  if (authMode === 'sas-key') {
    // both sides' tokens must be correctly signed for this host, policy and key
    for (const r of [...res.ref.requests, ...res.ours.requests]) assertValidSas(r.headers.authorization, { sr: server.hostName, skn, key });
  }
  return res;
}

const describeOurs = (name, fn) => describe(name, { skip: NOT_LOADED }, fn);

// ---------------------------------------------------------------------------------------------
describeOurs('getJob / cancelJob: wire, results, both forms', () => {
  for (const f of ['promise', 'callback']) {
    test(`getJob('job-1') ${f}`, () =>
      parity({
        script: (s) => s.reply(okJob()),
        run: (c) => (f === 'promise' ? callPromise(() => c.getJob('job-1')) : callCallback((cb) => c.getJob('job-1', cb))),
      }));
    test(`cancelJob('job-1') ${f}`, () =>
      parity({
        script: (s) => s.reply(okJob()),
        run: (c) => (f === 'promise' ? callPromise(() => c.cancelJob('job-1')) : callCallback((cb) => c.cancelJob('job-1', cb))),
      }));
  }
  for (const id of [0, false, 42, 'JOB-Upper_9.x~']) {
    test(`getJob(${JSON.stringify(id)}) is accepted and sent as /jobs/v2/${String(id)}`, async () => {
      const res = await parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => c.getJob(id)) });
      assert.equal(res.ours.requests[0].path, `/jobs/v2/${String(id)}`);
    });
    test(`cancelJob(${JSON.stringify(id)}) callback`, () =>
      parity({ script: (s) => s.reply(okJob()), run: (c) => callCallback((cb) => c.cancelJob(id, cb)) }));
  }
  test('cancel answered 204 with no body: result is the empty string', () =>
    parity({ script: (s) => s.reply({ status: 204 }), run: (c) => callCallback((cb) => c.cancelJob('job-1', cb)) }));
  test('JSON body without application/json content-type: result is the empty string', () =>
    parity({
      script: (s) => s.reply({ status: 200, headers: { 'content-type': 'text/plain' }, body: JSON.stringify(JOB) }),
      run: (c) => callPromise(() => c.getJob('job-1')),
    }));
  test('no content-type at all: result is the empty string', () =>
    parity({ script: (s) => s.reply({ status: 200, body: JSON.stringify(JOB) }), run: (c) => callPromise(() => c.getJob('job-1')) }));
  test('empty body with application/json: result is the empty string', () =>
    parity({
      script: (s) => s.reply({ status: 200, headers: { 'content-type': 'application/json' }, body: '' }),
      run: (c) => callCallback((cb) => c.getJob('job-1', cb)),
    }));
  test('content-type "application/json" without charset, and 201: parsed', () =>
    parity({
      script: (s) => s.reply({ status: 201, headers: { 'content-type': 'application/json' }, body: JSON.stringify(JOB) }),
      run: (c) => callPromise(() => c.getJob('job-1')),
    }));
  test('unknown job fields and unknown enum values are kept as given', () =>
    parity({
      script: (s) =>
        s.reply({ json: { ...JOB, status: 'someFutureStatus', type: 'someFutureType', extra: { nested: [1, 'two', null] }, failureReason: null } }),
      run: (c) => callPromise(() => c.getJob('job-1')),
    }));
  test('a JSON array / a JSON string / a number as body are returned as parsed', async () => {
    for (const json of [[1, 2], 'str', 12.5, null, true]) {
      await parity({ script: (s) => s.reply({ json }), run: (c) => callPromise(() => c.getJob('job-1')) });
    }
  });
  for (const f of ['promise', 'callback']) {
    test(`invalid JSON with application/json: SyntaxError (${f}; message not compared)`, () =>
      parity({
        script: (s) => s.reply({ status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, body: '{"jobId": ' }),
        run: (c) => (f === 'promise' ? callPromise(() => c.getJob('job-1')) : callCallback((cb) => c.getJob('job-1', cb))),
        normOpts: noMessageForSyntaxError,
      }));
  }
  test('response headers reach the caller lower-cased, multi-valued ones as Node joins them', () =>
    parity({
      script: (s) =>
        s.reply({
          status: 200,
          headers: { 'X-Ms-Request-Id': 'abc', 'IoTHub-Custom': 'v', ETag: '"e1"', 'content-type': 'application/json; charset=utf-8' },
          body: JSON.stringify(JOB),
        }),
      run: (c) => callPromise(() => c.getJob('job-1')),
    }));
  test('a custom reason phrase reaches response.statusMessage (success and error)', async () => {
    await parity({ script: (s) => s.reply({ ...okJob(), statusMessage: 'Fine Thanks' }), run: (c) => callPromise(() => c.getJob('job-1')) });
    await parity({
      script: (s) => s.reply({ status: 409, statusMessage: 'Already There', json: { Message: 'ErrorCode:JobAlreadyExists;dup' } }),
      run: (c) => callCallback((cb) => c.cancelJob('job-1', cb)),
      oursOpts: { retry: false },
    });
  });
  for (const [label, body] of [
    ['whitespace only', '  \n'],
    ['a UTF-8 BOM before the JSON', '\uFEFF{"jobId":"job-1"}'],
    ['trailing garbage after the JSON', '{"jobId":"job-1"} x'],
  ]) {
    test(`application/json body with ${label}: same result or SyntaxError (message not compared)`, () =>
      parity({
        script: (s) => s.reply({ status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, body }),
        run: (c) => callCallback((cb) => c.getJob('job-1', cb)),
        normOpts: noMessageForSyntaxError,
      }));
  }
  test('a 302 redirect is not followed (one request, plain Error)', () =>
    parity({
      script: (s) =>
        s.respond((r) => (r.path === '/jobs/v2/job-1' ? { status: 302, headers: { location: '/jobs/v2/other?api-version=2021-04-12' }, body: '' } : okJob())),
      run: (c) => callPromise(() => c.getJob('job-1')),
      oursOpts: { retry: false },
    }));
  test('non-UTF-8-sensitive ASCII body split across TCP writes is reassembled', () =>
    parity({
      script: (s) =>
        s.reply({ status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, chunks: ['{"jobId":"jo', 'b-1","status":"running"}'] }),
      run: (c) => callPromise(() => c.getJob('job-1')),
    }));
});

// ---------------------------------------------------------------------------------------------
describeOurs('scheduleDeviceMethod / scheduleTwinUpdate: every overload with identical wire format', () => {
  const methodParams = { methodName: 'reboot', payload: { delay: 5, why: 'test' }, responseTimeoutInSeconds: 45 };
  const patch = { etag: '*', tags: { b: 1, a: 2 }, properties: { desired: { z: null, y: { x: 'w' } } } };
  const ops = [
    ['scheduleDeviceMethod', methodParams],
    ['scheduleTwinUpdate', patch],
  ];
  for (const [op, arg] of ops) {
    const cases = [
      ['(id, q, p, cb) — startTime now, max 3600', (c, cb) => c[op]('job-1', Q, arg, cb)],
      ['(id, q, p, date, cb) — max 3600', (c, cb) => c[op]('job-1', Q, arg, START, cb)],
      ['(id, q, p, date, max, cb)', (c, cb) => c[op]('job-1', Q, arg, START, 120, cb)],
      ['(id, q, p, null, 10, cb) — startTime null', (c, cb) => c[op]('job-1', Q, arg, null, 10, cb)],
      ['(id, q, p, undefined, undefined, cb) — startTime null, max omitted', (c, cb) => c[op]('job-1', Q, arg, undefined, undefined, cb)],
      ['(id, q, p, date, 0, cb) — max 0 kept', (c, cb) => c[op]('job-1', Q, arg, START, 0, cb)],
    ];
    for (const [label, call] of cases) {
      test(`${op}${label} callback`, () => parity({ script: (s) => s.reply(okJob()), run: (c) => callCallback((cb) => call(c, cb)) }));
    }
    test(`${op}(id, q, p, date, max) promise`, () =>
      parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => c[op]('job-1', Q, arg, START, 120)) }));
    test(`${op}(id, q, p, null, 10) promise — startTime null`, () =>
      parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => c[op]('job-1', Q, arg, null, 10)) }));
    test(`${op}: numeric jobId stays a JSON number, path uses String(id)`, async () => {
      const res = await parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => c[op](42, Q, arg, START, 60)) });
      assert.equal(res.ours.requests[0].path, '/jobs/v2/42');
      assert.match(res.ours.requests[0].body.toString(), /^\{"jobId":42,/);
    });
    test(`${op}: jobId with reserved characters is encodeURIComponent-ed in the PUT path`, async () => {
      const id = "a b/c?d#e&f=g+h%i'(j)*!~ü";
      const res = await parity({ script: (s) => s.reply(okJob()), run: (c) => callCallback((cb) => c[op](id, Q, arg, START, 60, cb)) });
      assert.equal(res.ours.requests[0].path, '/jobs/v2/' + encodeURIComponent(id));
    });
    test(`${op}: error status is translated the same (409)`, () =>
      parity({
        script: (s) => s.reply({ status: 409, json: { Message: 'ErrorCode:JobAlreadyExists;A job with id job-1 already exists', ExceptionMessage: 'Tracking ID:x' } }),
        run: (c) => callPromise(() => c[op]('job-1', Q, arg, START, 60)),
        oursOpts: { retry: false },
      }));
  }

  test('exact body of scheduleDeviceMethod: key order jobId, type, cloudToDeviceMethod, startTime, maxExecutionTimeInSeconds, queryCondition', async () => {
    const res = await parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', Q, methodParams, START, 120)) });
    const expected = JSON.stringify({
      jobId: 'job-1',
      type: 'scheduleDeviceMethod',
      cloudToDeviceMethod: { methodName: 'reboot', payload: { delay: 5, why: 'test' }, responseTimeoutInSeconds: 45 },
      startTime: '2030-05-06T07:08:09.010Z',
      maxExecutionTimeInSeconds: 120,
      queryCondition: Q,
    });
    assert.equal(res.ref.requests[0].body.toString(), expected);
    assert.equal(res.ours.requests[0].body.toString(), expected);
    assert.equal(res.ours.requests[0].headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(res.ours.requests[0].headers['content-length'], String(Buffer.byteLength(expected)));
  });
  test('exact body of scheduleTwinUpdate: patch as given (key order kept), type scheduleUpdateTwin', async () => {
    const res = await parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => c.scheduleTwinUpdate('job-1', Q, patch, START, 120)) });
    const expected =
      '{"jobId":"job-1","type":"scheduleUpdateTwin","updateTwin":{"etag":"*","tags":{"b":1,"a":2},"properties":{"desired":{"z":null,"y":{"x":"w"}}}},' +
      `"startTime":"2030-05-06T07:08:09.010Z","maxExecutionTimeInSeconds":120,"queryCondition":${JSON.stringify(Q)}}`;
    assert.equal(res.ours.requests[0].body.toString(), expected);
  });

  test('scheduleTwinUpdate without an etag: both send the patch as given (no etag added) and get the same 412 PreconditionFailed', async () => {
    const res = await parity({
      script: (s) =>
        s.reply({
          status: 412,
          json: {
            Message: "ErrorCode:PreconditionFailed;The etag in the request does not match the etag of the existing resource, as per RFC7232: a scheduleUpdateTwin job takes only etag '*'",
            ExceptionMessage: 'Tracking ID:abc-G:1-TimeStamp:01/02/2026 03:04:05',
          },
        }),
      run: (c) => callPromise(() => c.scheduleTwinUpdate('job-1', Q, { tags: { a: 1 } }, START, 60)),
      oursOpts: { retry: false },
    });
    for (const side of [res.ref, res.ours]) assert.ok(!side.requests[0].body.toString().includes('etag'));
  });

  for (const payload of [undefined, null, 0, '', false]) {
    test(`falsy payload ${JSON.stringify(payload) ?? 'undefined'} becomes null`, () =>
      parity({
        script: (s) => s.reply(okJob()),
        run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload }, START, 60)),
      }));
  }
  for (const payload of ['text', 7, true, [1, { a: 'b' }], { nested: { deep: [null, 1.5, -2] } }]) {
    test(`payload ${JSON.stringify(payload)} is sent as given`, () =>
      parity({
        script: (s) => s.reply(okJob()),
        run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload }, START, 60)),
      }));
  }
  for (const t of [undefined, 0, null, 5, 300]) {
    test(`responseTimeoutInSeconds ${t} (falsy → 30)`, () =>
      parity({
        script: (s) => s.reply(okJob()),
        run: (c) => callCallback((cb) => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', responseTimeoutInSeconds: t }, START, 60, cb)),
      }));
  }
  test('unknown methodParams fields are dropped', () =>
    parity({
      script: (s) => s.reply(okJob()),
      run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload: 1, somethingElse: 'x', timeoutInSeconds: 9 }, START, 60)),
    }));
  test('JSON.stringify semantics inside payload and patch: undefined members dropped, numbers, unicode, escapes', () =>
    parity({
      script: (s) => s.reply(okJob()),
      run: (c) =>
        callPromise(() =>
          c.scheduleTwinUpdate(
            'job-1',
            Q,
            {
              tags: { drop: undefined, keep: 1, int: 10, float: 1.5, neg: -3, exp: 1e21, small: 1e-7, negZero: -0, big: 12345678901234 },
              properties: { desired: { s: 'ü € 😀 "q" \\ \n \t \u0001 \u2028 </script>', arr: [undefined, 1, null], empty: {}, emptyArr: [] } },
            },
            START,
            60,
          ),
        ),
    }));
  test('a Date inside the patch is serialised with toJSON (as JSON.stringify does)', () =>
    parity({
      script: (s) => s.reply(okJob()),
      run: (c) => callPromise(() => c.scheduleTwinUpdate('job-1', Q, { tags: { when: new Date('2031-01-02T03:04:05.006Z') } }, START, 60)),
    }));
  test('startTime keeps milliseconds (toISOString)', () =>
    parity({
      script: (s) => s.reply(okJob()),
      run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm' }, new Date(Date.UTC(2031, 0, 2, 3, 4, 5, 7)), 60)),
    }));
  test('an object with toISOString() is accepted as start time (duck typing)', () =>
    parity({
      script: (s) => s.reply(okJob()),
      run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm' }, { toISOString: () => '2032-01-01T00:00:00.000Z' }, 60)),
    }));
  // Plain-JavaScript callers are not held to the typings: the reference sends whatever
  // JSON.stringify makes of the values it was given.
  for (const [label, call] of [
    ["patch is a string", (c) => c.scheduleTwinUpdate('job-1', Q, 'just a string', START, 60)],
    ['patch is an array', (c) => c.scheduleTwinUpdate('job-1', Q, [1, 'two'], START, 60)],
    ['patch is a number', (c) => c.scheduleTwinUpdate('job-1', Q, 5, START, 60)],
    ['patch is true', (c) => c.scheduleTwinUpdate('job-1', Q, true, START, 60)],
    ["maxExecutionTimeInSeconds is the string '60'", (c) => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm' }, START, '60')],
    ['maxExecutionTimeInSeconds is 1.5', (c) => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm' }, START, 1.5)],
    ['maxExecutionTimeInSeconds is null', (c) => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm' }, START, null)],
    ['methodName is a number', (c) => c.scheduleDeviceMethod('job-1', Q, { methodName: 42 }, START, 60)],
    ["responseTimeoutInSeconds is the string '45'", (c) => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', responseTimeoutInSeconds: '45' }, START, 60)],
    ['payload is a Buffer', (c) => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload: Buffer.from('hi') }, START, 60)],
    ['payload is a Map (serialises as {})', (c) => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload: new Map([['a', 1]]) }, START, 60)],
    ['payload object with toJSON()', (c) => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload: { toJSON: () => ({ custom: true }) } }, START, 60)],
    ['payload with a function member (dropped)', (c) => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload: { f() {}, a: 1 } }, START, 60)],
    ['jobId is true', (c) => c.scheduleDeviceMethod(true, Q, { methodName: 'm' }, START, 60)],
    ['jobId is 0', (c) => c.scheduleTwinUpdate(0, Q, { tags: {} }, START, 60)],
  ]) {
    test(`loosely typed JS argument: ${label}`, () => parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => call(c)) }));
  }
  test('a payload with a BigInt: same TypeError as JSON.stringify (no request)', () =>
    parity({
      run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload: { n: 1n } }, START, 60)),
      normOpts: { messageFor: () => false },
    }));
  test('a circular payload: TypeError as JSON.stringify (message not compared, no request)', () => {
    const payload = { a: 1 };
    payload.self = payload;
    return parity({
      run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload }, START, 60)),
      normOpts: { messageFor: () => false },
    });
  });
  test('queryCondition is sent verbatim (quotes, unicode)', () =>
    parity({
      script: (s) => s.reply(okJob()),
      run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', `tags.name = 'Zoë "x"' AND properties.reported.t > 5`, { methodName: 'm' }, START, 60)),
    }));
});

// ---------------------------------------------------------------------------------------------
describeOurs('argument validation: same class, message, sync throw vs rejection', () => {
  const mp = { methodName: 'm' };
  const fn = () => {};
  // [label, call(c, cb?) , forms]: with a callback the reference throws synchronously, without
  // one it rejects. Each case runs in promise form (no callback) and in callback form.
  const cases = [
    ['getJob(undefined)', (c, ...cb) => c.getJob(undefined, ...cb)],
    ['getJob(null)', (c, ...cb) => c.getJob(null, ...cb)],
    ["getJob('')", (c, ...cb) => c.getJob('', ...cb)],
    ['cancelJob(undefined)', (c, ...cb) => c.cancelJob(undefined, ...cb)],
    ['cancelJob(null)', (c, ...cb) => c.cancelJob(null, ...cb)],
    ["cancelJob('')", (c, ...cb) => c.cancelJob('', ...cb)],
  ];
  for (const op of ['scheduleDeviceMethod', 'scheduleTwinUpdate']) {
    const good = op === 'scheduleDeviceMethod' ? mp : { tags: { a: 1 } };
    cases.push(
      [`${op}(null, q, p)`, (c, ...cb) => c[op](null, Q, good, ...cb)],
      [`${op}(undefined, q, p)`, (c, ...cb) => c[op](undefined, Q, good, ...cb)],
      [`${op}('', q, p)`, (c, ...cb) => c[op]('', Q, good, ...cb)],
      [`${op}('j', '', p)`, (c, ...cb) => c[op]('j', '', good, ...cb)],
      [`${op}('j', null, p)`, (c, ...cb) => c[op]('j', null, good, ...cb)],
      [`${op}('j', undefined, p)`, (c, ...cb) => c[op]('j', undefined, good, ...cb)],
      [`${op}('j', 42, p)`, (c, ...cb) => c[op]('j', 42, good, ...cb)],
      [`${op}('j', {}, p)`, (c, ...cb) => c[op]('j', {}, good, ...cb)],
      [`${op}('j', q, p, '2030-01-01') non-Date start`, (c, ...cb) => c[op]('j', Q, good, '2030-01-01', ...(cb.length ? [60, ...cb] : []))],
      [`${op}('j', q, p, 1234) number start`, (c, ...cb) => c[op]('j', Q, good, 1234, ...(cb.length ? [60, ...cb] : []))],
      [`${op}('j', q, p, {}) object start`, (c, ...cb) => c[op]('j', Q, good, {}, ...(cb.length ? [60, ...cb] : []))],
      [`${op}('j', q, p, new Date(NaN)) invalid Date`, (c, ...cb) => c[op]('j', Q, good, new Date(NaN), ...(cb.length ? [60, ...cb] : []))],
      // validation order: jobId, queryCondition falsy, params, methodName, callback position, start time, queryCondition type
      [`${op}(null, '', null) → jobId first`, (c, ...cb) => c[op](null, '', null, ...cb)],
      [`${op}('j', '', null) → queryCondition before params`, (c, ...cb) => c[op]('j', '', null, ...cb)],
      [`${op}('j', 42, null) → params before queryCondition type`, (c, ...cb) => c[op]('j', 42, null, ...cb)],
      [`${op}('j', 42, p, 'bad') → start time before queryCondition type`, (c, ...cb) => c[op]('j', 42, good, 'bad', ...(cb.length ? [60, ...cb] : []))],
    );
  }
  cases.push(
    ["scheduleDeviceMethod('j', q, undefined)", (c, ...cb) => c.scheduleDeviceMethod('j', Q, undefined, ...cb)],
    ["scheduleDeviceMethod('j', q, null)", (c, ...cb) => c.scheduleDeviceMethod('j', Q, null, ...cb)],
    ["scheduleDeviceMethod('j', q, {})", (c, ...cb) => c.scheduleDeviceMethod('j', Q, {}, ...cb)],
    ["scheduleDeviceMethod('j', q, {methodName: ''})", (c, ...cb) => c.scheduleDeviceMethod('j', Q, { methodName: '' }, ...cb)],
    ["scheduleDeviceMethod('j', q, {methodName: null})", (c, ...cb) => c.scheduleDeviceMethod('j', Q, { methodName: null }, ...cb)],
    ["scheduleDeviceMethod('j', 42, {}) → methodName before queryCondition type", (c, ...cb) => c.scheduleDeviceMethod('j', 42, {}, ...cb)],
    ["scheduleTwinUpdate('j', q, '')", (c, ...cb) => c.scheduleTwinUpdate('j', Q, '', ...cb)],
    ["scheduleTwinUpdate('j', q, 0)", (c, ...cb) => c.scheduleTwinUpdate('j', Q, 0, ...cb)],
    ["scheduleTwinUpdate('j', q, null)", (c, ...cb) => c.scheduleTwinUpdate('j', Q, null, ...cb)],
    ["scheduleTwinUpdate('j', q, undefined)", (c, ...cb) => c.scheduleTwinUpdate('j', Q, undefined, ...cb)],
    ["scheduleTwinUpdate('j', q, false)", (c, ...cb) => c.scheduleTwinUpdate('j', Q, false, ...cb)],
  );
  for (const [label, call] of cases) {
    test(`${label} — promise form`, () => parity({ run: (c) => callPromise(() => call(c)) }));
    test(`${label} — callback form`, () => parity({ run: (c) => callCallback((cb) => call(c, cb)) }));
  }

  // Callback position and callback type errors (always synchronous throws).
  const always = [];
  for (const op of ['scheduleDeviceMethod', 'scheduleTwinUpdate']) {
    const good = op === 'scheduleDeviceMethod' ? mp : { tags: { a: 1 } };
    always.push(
      [`${op}(…, fn, 3600)`, (c) => c[op]('j', Q, good, fn, 3600)],
      [`${op}(…, date, fn, 3600)`, (c) => c[op]('j', Q, good, START, fn, 3600)],
      [`${op}(…, fn, undefined, fn)`, (c) => c[op]('j', Q, good, fn, undefined, fn)],
      [`${op}(…, date, fn, fn)`, (c) => c[op]('j', Q, good, START, fn, fn)],
      [`${op}(…, date, 60, 'not a function')`, (c) => c[op]('j', Q, good, START, 60, 'not a function')],
      [`${op}(…, date, 60, 42)`, (c) => c[op]('j', Q, good, START, 60, 42)],
      [`${op}(null, …, date, 60, {}) → callback type before jobId`, (c) => c[op](null, Q, good, START, 60, {})],
      [`${op}('j', 42, {methodName…}, fn, 5) → callback position before queryCondition type`, (c) => c[op]('j', 42, good, fn, 5)],
    );
  }
  always.push(
    ["getJob('j', 42)", (c) => c.getJob('j', 42)],
    ["getJob('j', 'cb')", (c) => c.getJob('j', 'cb')],
    ["cancelJob('j', {})", (c) => c.cancelJob('j', {})],
    ['getJob(undefined, true) → callback type before jobId', (c) => c.getJob(undefined, true)],
  );
  for (const [label, call] of always) {
    test(`${label} throws synchronously`, async () => {
      const res = await parity({ run: (c) => callPromise(() => call(c)) });
      assert.equal(res.ref.outcome.sync, 'throw');
    });
  }
  // Falsy non-functions in the callback slot mean "no callback": promise form.
  for (const v of [null, 0, '', false]) {
    test(`getJob('job-1', ${JSON.stringify(v)}) is the promise form`, () =>
      parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => c.getJob('job-1', v)) }));
    test(`scheduleDeviceMethod(…, date, 60, ${JSON.stringify(v)}) is the promise form`, () =>
      parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => c.scheduleDeviceMethod('job-1', Q, mp, START, 60, v)) }));
  }
  test('createQuery validates nothing (no throw for odd arguments)', () =>
    parity({
      run: (c) =>
        callPromise(() => {
          c.createQuery(undefined, undefined, undefined);
          c.createQuery(null, null, null);
          c.createQuery(42, {}, 'x');
          return Promise.resolve('created');
        }),
    }));
});

// ---------------------------------------------------------------------------------------------
describeOurs('error translation: class, message, .response, .responseBody', () => {
  const env1 = (code, text) => ({ Message: `ErrorCode:${code};${text}`, ExceptionMessage: 'Tracking ID:abc-G:1-TimeStamp:01/02/2026 03:04:05' });
  const statuses = [
    [400, env1('ArgumentInvalid', 'The job id is invalid'), 'ArgumentError'],
    [401, env1('IotHubUnauthorizedAccess', 'Unauthorized'), 'UnauthorizedError'],
    [403, env1('IotHubQuotaExceeded', 'Quota exceeded'), 'TooManyDevicesError'],
    [404, env1('DeviceNotFound', 'Device d1 not found'), 'DeviceNotFoundError'],
    [404, env1('IotHubNotFound', 'Hub not found'), 'IotHubNotFoundError'],
    [404, env1('SomethingElse', 'Other thing not found'), 'Error'],
    [404, '', 'Error'],
    [404, 'not json', 'Error'],
    [408, env1('DeviceTimeout', 'Timed out'), 'DeviceTimeoutError'],
    [409, env1('JobAlreadyExists', 'Exists'), 'DeviceAlreadyExistsError'],
    [412, env1('PreconditionFailed', 'Etag mismatch'), 'InvalidEtagError'],
    [429, env1('ThrottlingException', 'Slow down'), 'ThrottlingError'],
    [500, env1('ServerError', 'Boom'), 'InternalServerError'],
    [502, env1('BadGateway', 'Bad device response'), 'BadDeviceResponseError'],
    [503, env1('ServiceUnavailable', 'Try later'), 'ServiceUnavailableError'],
    [504, env1('GatewayTimeout', 'Gateway timeout'), 'GatewayTimeoutError'],
    [300, '', 'Error'],
    [413, env1('MessageTooLarge', 'Too large'), 'Error'],
    [418, 'I am a teapot', 'Error'],
    [501, env1('NotImplemented', 'Nope'), 'Error'],
    [505, '', 'Error'],
  ];
  for (const [status, body, cls] of statuses) {
    const bodyText = typeof body === 'string' ? body : JSON.stringify(body);
    const label = `${status} ${typeof body === 'string' ? JSON.stringify(body) : body.Message.split(';')[0]} → ${cls}`;
    for (const f of ['promise', 'callback']) {
      test(`${label} (${f})`, async () => {
        const res = await parity({
          script: (s) => s.reply({ status, headers: { 'content-type': 'application/json; charset=utf-8', 'x-ms-request-id': 'r1' }, body: bodyText }),
          run: (c) => (f === 'promise' ? callPromise(() => c.getJob('job-1')) : callCallback((cb) => c.getJob('job-1', cb))),
          oursOpts: { retry: false },
        });
        const refErr = f === 'promise' ? res.ref.outcome.error : res.ref.outcome.args[0];
        const oursErr = f === 'promise' ? res.ours.outcome.error : res.ours.outcome.args[0];
        assert.equal(refErr.constructor.name, cls, 'reference class (oracle sanity)');
        assert.equal(res.ours.requests.length, 1, 'ours: a single attempt with retry: false');
        assert.ok(oursErr instanceof Error, 'ours: instanceof Error');
        if (cls !== 'Error') {
          assert.ok(oursErr instanceof pair.ours.errors[cls], `ours: instanceof errors.${cls}`);
          assert.ok(Object.prototype.hasOwnProperty.call(oursErr, 'name') || oursErr.name === cls, 'ours: name');
        }
        assert.equal(oursErr.responseBody, bodyText, 'ours: .responseBody is the raw body');
        assert.equal(oursErr.response.statusCode, status, 'ours: .response.statusCode');
      });
    }
  }
  // With default options ours retries only transient statuses (see the allowed differences);
  // everything else is a single attempt with the reference's error, options or not.
  for (const status of [400, 401, 403, 404, 409, 412, 413, 418, 501, 502, 505]) {
    test(`${status} with default options: not retried, same error`, async () => {
      const res = await parity({
        script: (s) => s.reply({ status, headers: { 'content-type': 'application/json; charset=utf-8' }, body: JSON.stringify(env1('Code', `status ${status}`)) }),
        run: (c) => callPromise(() => c.getJob('job-1')),
      });
      assert.equal(res.ours.requests.length, 1);
    });
  }
  // Bodies the reference's envelope-1 parser does not understand: 'Error: ' + body (404: 'Not found').
  for (const [status, body] of [
    [400, '{"Message":"ErrorCode:ArgumentInvalid;"}'],
    [400, '{"Message":"ErrorCode:;some text"}'],
    [400, '{"Message":"no code here;some text"}'],
    [400, '{"Message":42}'],
    [400, '[1,2]'],
    [400, 'null'],
    [400, '"a json string"'],
    [404, '{"Message":"ErrorCode:DeviceNotFound;"}'],
    [404, '{"message":"ErrorCode:DeviceNotFound;lower-case key"}'],
    [500, '<html><body>Bad gateway</body></html>'],
  ]) {
    test(`${status} with body ${body}: same class and message`, () =>
      parity({ script: (s) => s.reply({ status, headers: { 'content-type': 'application/json' }, body }), run: (c) => callPromise(() => c.getJob('job-1')), oursOpts: { retry: false } }));
  }
  test("message from a non-JSON body is 'Error: ' + body", async () => {
    const res = await parity({
      script: (s) => s.reply({ status: 500, body: 'upstream exploded' }),
      run: (c) => callPromise(() => c.cancelJob('job-1')),
      oursOpts: { retry: false },
    });
    assert.equal(res.ours.outcome.error.message, 'Error: upstream exploded');
  });
  test("JSON body without Message: 'Error: ' + body", () =>
    parity({
      script: (s) => s.reply({ status: 400, json: { error: 'x' } }),
      run: (c) => callPromise(() => c.getJob('job-1')),
      oursOpts: { retry: false },
    }));
  test("Message without 'ErrorCode:' prefix: 'Error: ' + body", () =>
    parity({
      script: (s) => s.reply({ status: 400, json: { Message: 'just text' } }),
      run: (c) => callPromise(() => c.getJob('job-1')),
      oursOpts: { retry: false },
    }));
  test('empty error body: "Error: "', () =>
    parity({ script: (s) => s.reply({ status: 400, body: '' }), run: (c) => callPromise(() => c.getJob('job-1')), oursOpts: { retry: false } }));
  test('error on cancel and on the PUT carry the same translation', async () => {
    await parity({
      script: (s) => s.reply({ status: 412, json: env1('PreconditionFailed', 'nope') }),
      run: (c) => callCallback((cb) => c.cancelJob('job-1', cb)),
      oursOpts: { retry: false },
    });
    await parity({
      script: (s) => s.reply({ status: 400, json: env1('ArgumentInvalid', 'bad query') }),
      run: (c) => callCallback((cb) => c.scheduleDeviceMethod('job-1', Q, mp(), START, 60, cb)),
      oursOpts: { retry: false },
    });
  });
  function mp() {
    return { methodName: 'm' };
  }
  test('a connection refused / reset error is passed through as an Error, asynchronously', async () => {
    const res = await runBoth(server, pair, {
      script: (s) => s.respond(() => ({ hang: true })),
      scenario: async (side) => {
        const c = cs(side, side.isReference ? undefined : { retry: false });
        const p = callCallback((cb) => c.getJob('job-1', cb), { timeoutMs: 15000 });
        // drop the connection once the request has arrived (unanswered)
        const until = Date.now() + 10000;
        while (server.requests.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
        server.dropConnections();
        return p;
      },
    });
    for (const [label, r] of [
      ['ref', res.ref.outcome],
      ['ours', res.ours.outcome],
    ]) {
      assert.equal(r.sync, 'return', label);
      assert.equal(r.kind, 'callback', label);
      assert.ok(r.args[0] instanceof Error, `${label}: an Error`);
      assert.equal(r.args.length, 1, `${label}: single argument`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
describeOurs('query paging', () => {
  const page = (jobs, token, extra = {}) => ({
    status: 200,
    headers: { 'content-type': 'application/json; charset=utf-8', 'x-ms-item-type': 'jobResponse', ...(token ? { 'x-ms-continuation': token } : {}), ...extra },
    body: JSON.stringify(jobs),
  });
  const jobs = (n, from = 0) => Array.from({ length: n }, (_, i) => ({ ...JOB, jobId: `job-${from + i}` }));

  test('initial state: hasMoreResults true, continuationToken null; an instance of the exported Query', () =>
    parity({
      run: (c, side) =>
        callPromise(async () => {
          const q = c.createQuery();
          return { hasMoreResults: q.hasMoreResults, continuationToken: q.continuationToken, isQuery: q instanceof side.Query };
        }),
    }));
  for (const [label, args] of [
    ['createQuery()', []],
    ["createQuery('scheduleDeviceMethod')", ['scheduleDeviceMethod']],
    ["createQuery(undefined, 'running')", [undefined, 'running']],
    ["createQuery('scheduleUpdateTwin', 'completed', 5)", ['scheduleUpdateTwin', 'completed', 5]],
    ["createQuery('a b&c', 'x/y=z', 0) — encoded, page size 0 not sent", ['a b&c', 'x/y=z', 0]],
    ["createQuery('', '', 100)", ['', '', 100]],
  ]) {
    test(`${label}: request and result (promise next())`, () =>
      parity({ script: (s) => s.reply(page(jobs(2), 'tok-1')), run: (c) => callPromise(() => c.createQuery(...args).next()) }));
    test(`${label}: request and result (callback next(cb))`, () =>
      parity({ script: (s) => s.reply(page(jobs(2), 'tok-1')), run: (c) => callCallback((cb) => c.createQuery(...args).next(cb)) }));
  }
  test('callback paging over three pages: tokens sent, hasMoreResults and continuationToken after each page', async () => {
    const script = (s) => s.reply(page(jobs(2, 0), 'tok 1+/='), page(jobs(2, 2), 'tok-2'), page(jobs(1, 4), null));
    const res = await parity({
      script,
      run: (c) =>
        callPromise(async () => {
          const q = c.createQuery('scheduleDeviceMethod', undefined, 2);
          const states = [];
          while (q.hasMoreResults) {
            const o = await callCallback((cb) => q.next(cb));
            states.push({ ids: o.args[1].map((j) => j.jobId), hasMoreResults: q.hasMoreResults, continuationToken: q.continuationToken, argc: o.args.length });
            if (states.length > 5) break;
          }
          return states;
        }),
    });
    assert.deepEqual(
      res.ours.requests.map((r) => r.headers['x-ms-continuation']),
      [undefined, 'tok 1+/=', 'tok-2'],
    );
  });
  test('next(token) promise and next(token, cb): the explicit token is sent', () =>
    parity({
      script: (s) => s.reply(page(jobs(1), 'tok-next')),
      run: (c) =>
        callPromise(async () => {
          const q = c.createQuery();
          const a = await q.next('explicit-1');
          const b = await callCallback((cb) => q.next('explicit-2', cb));
          return { a: a.result.length, b: b.args[1].length, ct: q.continuationToken, more: q.hasMoreResults };
        }),
    }));
  test('promise next() after the last page: hasMoreResults false, continuationToken undefined', () =>
    parity({
      script: (s) => s.reply(page([], null)),
      run: (c) =>
        callPromise(async () => {
          const q = c.createQuery();
          const r = await q.next();
          return { result: r.result, more: q.hasMoreResults, ct: q.continuationToken, hasCt: 'continuationToken' in q };
        }),
    }));
  for (const f of ['promise', 'callback']) {
    test(`query error (429) is translated and the state is unchanged (${f})`, () =>
      parity({
        script: (s) => s.reply({ status: 429, json: { Message: 'ErrorCode:ThrottlingException;slow' } }),
        oursOpts: { retry: false },
        run: (c) =>
          callPromise(async () => {
            const q = c.createQuery();
            const o = f === 'promise' ? await callPromise(() => q.next()) : await callCallback((cb) => q.next(cb));
            return { o: normOutcome(o), more: q.hasMoreResults, ct: q.continuationToken };
          }),
      }));
  }
  test('nextAsTwin(token) and nextAsTwin(token, cb) on empty pages send the token', () =>
    parity({
      script: (s) => s.reply(page([], 'tok-x')),
      run: (c) =>
        callPromise(async () => {
          const q = c.createQuery();
          const a = await q.nextAsTwin('t-1');
          const b = normOutcome(await callCallback((cb) => q.nextAsTwin('t-2', cb)));
          const d = normOutcome(await callCallback((cb) => q.nextAsTwin(cb)));
          return { a: a.result, b, d, ct: q.continuationToken, more: q.hasMoreResults };
        }),
    }));
  test("next(null) / next('') promise: no continuation header", () =>
    parity({
      script: (s) => s.reply(page([], 'tok-x')),
      run: (c) =>
        callPromise(async () => {
          const q = c.createQuery();
          await q.next(null);
          await q.next('');
          return q.continuationToken;
        }),
    }));
  test("createQuery page size given as the string '7' / 2.5: header as String(value)", () =>
    parity({
      script: (s) => s.reply(page([], null)),
      run: (c) =>
        callPromise(async () => {
          await c.createQuery(undefined, undefined, '7').next();
          await c.createQuery(undefined, undefined, 2.5).next();
          return 'done';
        }),
    }));
  test('nextAsTwin on an empty page: empty array, no crash (both)', () =>
    parity({ script: (s) => s.reply(page([], null)), run: (c) => callPromise(() => c.createQuery().nextAsTwin()) }));
  test('query result with non-JSON content type is the empty string', () =>
    parity({ script: (s) => s.reply({ status: 200, body: '[]' }), run: (c) => callPromise(() => c.createQuery().next()) }));
});

// ---------------------------------------------------------------------------------------------
describeOurs('connection strings, shared access signatures, token credentials', () => {
  const factoryCase = (label, make) =>
    test(label, () =>
      parity({
        make: () => null,
        run: (_c, side) => callPromise(() => make(side)),
      }));
  for (const v of ['', null, undefined]) {
    factoryCase(`fromConnectionString(${JSON.stringify(v)}) throws ReferenceError`, (side) => side.fromConnectionString(v));
    factoryCase(`fromSharedAccessSignature(${JSON.stringify(v)}) throws ReferenceError`, (side) => side.fromSharedAccessSignature(v));
  }
  for (const v of [42, true, { HostName: 'h' }, ['HostName=h']]) {
    factoryCase(`fromConnectionString(${JSON.stringify(v)}) (not a string) → as the reference`, (side) => side.fromConnectionString(v));
    factoryCase(`fromSharedAccessSignature(${JSON.stringify(v)}) (not a string) → as the reference`, (side) => side.fromSharedAccessSignature(v));
  }
  const cred = { getToken: async () => ({ token: 't', expiresOnTimestamp: Date.now() + 3600e3 }) };
  factoryCase('fromTokenCredential(undefined, cred) throws ArgumentError', (side) => side.fromTokenCredential(undefined, cred));
  factoryCase("fromTokenCredential('', cred) throws ArgumentError", (side) => side.fromTokenCredential('', cred));
  factoryCase('fromTokenCredential(null, cred) throws ArgumentError', (side) => side.fromTokenCredential(null, cred));

  const badConnectionStrings = [
    'garbage',
    'SharedAccessKey=abc',
    'HostName=h;SharedAccessKey=abc',
    'HostName=h;SharedAccessKeyName=p',
    'SharedAccessKeyName=p;SharedAccessKey=abc',
    'HostName=;SharedAccessKeyName=p;SharedAccessKey=abc',
    'HostName=h;SharedAccessKeyName=;SharedAccessKey=abc',
    'hostname=h;SharedAccessKeyName=p;SharedAccessKey=abc',
    ' HostName=h;SharedAccessKeyName=p;SharedAccessKey=abc',
    'HostName=h; SharedAccessKeyName=p;SharedAccessKey=abc',
    'HostName=h;SharedAccessKeyName=p;SharedAccessKey=',
    '=h;SharedAccessKeyName=p;SharedAccessKey=abc',
    ';;;',
  ];
  for (const s of badConnectionStrings) {
    factoryCase(`fromConnectionString(${JSON.stringify(s)}) → missing property`, (side) => side.fromConnectionString(s));
  }

  test('connection string: last duplicate wins, extra keys ignored, values split on the first "="', () =>
    parity({
      make: (side, o) =>
        side.fromConnectionString(
          `HostName=wrong.example;DeviceId=x;HostName=${server.hostName};SharedAccessKeyName=nope;SharedAccessKeyName=${POLICY};Extra=a=b;SharedAccessKey=${KEY};GatewayHostName=gw`,
          o,
        ),
      script: (s) => s.reply(okJob()),
      run: (c) => callPromise(() => c.getJob('job-1')),
    }));
  for (const [label, key] of [
    ['URL-safe alphabet', 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8-_w=='],
    ['no padding', 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'],
    ['junk characters skipped', 'AAEC AwQF.BgcI*CQoL\nDA0ODxAREhMUFRYXGBkaGxwdHh8='],
    ['data after "=" ignored', 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=ABCD'],
    ['not base64 at all', '!!!!'],
  ]) {
    test(`SharedAccessKey decoded like Node's lenient base64 (${label})`, () =>
      parity({
        make: (side, o) => side.fromConnectionString(connectionString(server, { key }), o),
        key,
        script: (s) => s.reply(okJob()),
        run: (c) => callPromise(() => c.getJob('job-1')),
      }));
  }
  test('HostName used verbatim (mixed-case DNS name) in sr and in the Host header', async () => {
    const host = `LocalHost:${server.port}`;
    const res = await runBoth(server, pair, {
      script: (s) => s.reply(okJob()),
      scenario: (side) => callPromise(() => side.fromConnectionString(`HostName=${host};SharedAccessKeyName=${POLICY};SharedAccessKey=${KEY}`).getJob('job-1')),
    });
    assert.deepEqual(normOutcome(res.ours.outcome), normOutcome(res.ref.outcome));
    assert.deepEqual(res.ours.requests.map((r) => normRequest(r)), res.ref.requests.map((r) => normRequest(r)));
    for (const r of [...res.ref.requests, ...res.ours.requests]) {
      assert.equal(r.headers.host, host);
      assertValidSas(r.headers.authorization, { sr: host, skn: POLICY, key: KEY });
    }
  });
  test("policy name with reserved characters: skn encoded with %21 %27 %28 %29 %2a", async () => {
    const skn = "my policy (1)!*'";
    const res = await parity({
      make: (side, o) => side.fromConnectionString(connectionString(server, { policy: skn }), o),
      skn,
      script: (s) => s.reply(okJob()),
      run: (c) => callPromise(() => c.getJob('job-1')),
    });
    assert.equal(parseSas(res.ours.requests[0].headers.authorization).skn, 'my%20policy%20%281%29%21%2a%27');
  });
  test('token fields in order sr, sig, skn, se; se is a fresh 1-hour expiry', async () => {
    const res = await parity({ script: (s) => s.reply(okJob()), run: (c) => callPromise(() => c.getJob('job-1')) });
    for (const [label, side] of [
      ['ref', res.ref],
      ['ours', res.ours],
    ]) {
      const f = parseSas(side.requests[0].headers.authorization);
      assert.deepEqual(f.order, ['sr', 'sig', 'skn', 'se'], label);
      const se = Number(f.se);
      assert.ok(se > side.window.to / 1000, `${label}: se in the future`);
      assert.ok(se <= Math.ceil(side.window.to / 1000 + 3600) + 1, `${label}: se at most one hour ahead (${se})`);
      assert.ok(se >= Math.ceil(side.window.from / 1000 + 3600) - 600, `${label}: close to one hour ahead (${se})`);
    }
  });

  test('SAS test vectors reproduced by the suite\'s own signer', () => {
    assert.equal(sasToken('host', 'policy', 'key', 12345), 'SharedAccessSignature sr=host&sig=88JmrIsVYOGmRSjCO1x1LLbv0K001Gikh1rjfJqbQXA%3D&skn=policy&se=12345');
    assert.equal(
      sasToken('myhub.azure-devices.net', 'iothubowner', 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=', 1700000000),
      'SharedAccessSignature sr=myhub.azure-devices.net&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&skn=iothubowner&se=1700000000',
    );
    assert.equal(
      sasToken('MyHub.Azure-Devices.net', "my policy (1)!*'", 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', 4102444800),
      'SharedAccessSignature sr=MyHub.Azure-Devices.net&sig=MLiUXS9L0xv4Hvhud1MM%2BtNS1OCKfxAj1vivfvGmK0Q%3D&skn=my%20policy%20%281%29%21%2a%27&se=4102444800',
    );
    assert.equal(
      sasToken('h.azure-devices.net', undefined, 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', 1700000000),
      'SharedAccessSignature sr=h.azure-devices.net&sig=2OKt4%2BY0%2B6cqcTg9nowxljYyZyhM3Q5Yo3lToHFIa4Q%3D&se=1700000000',
    );
  });

  test('frozen clock Date.now() = 1700000000123: the reference vector; ours signs the same way', async () => {
    const FROZEN = 1700000000123;
    const vector = 'SharedAccessSignature sr=myhub.azure-devices.net&sig=zjBNBNz1v32aH%2B3GMeKqgApksZZaAhMhRDSjEiydoM8%3D&skn=iothubowner&se=1700003601';
    // The reference vector is for HostName myhub.azure-devices.net; the same computation for
    // the recording server's host name is what both clients must send.
    assert.equal(sasToken('myhub.azure-devices.net', 'iothubowner', KEY, 1700003601), vector);
    const expected = sasToken(server.hostName, POLICY, KEY, 1700003601);
    const realNow = Date.now;
    let res;
    try {
      Date.now = () => FROZEN;
      res = await runBoth(server, pair, {
        script: (s) => s.reply(okJob()),
        scenario: async (side) => callPromise(() => cs(side).getJob('job-1')),
      });
    } finally {
      Date.now = realNow;
    }
    assert.equal(res.ref.requests[0].headers.authorization, expected, 'reference under the frozen clock');
    const oursAuth = res.ours.requests[0].headers.authorization;
    if (oursAuth !== expected) {
      // Ours reads the system clock, not Date.now: it must still be the same signature scheme.
      const se = assertValidSas(oursAuth, { sr: server.hostName, skn: POLICY, key: KEY });
      assert.ok(se > realNow() / 1000 && se <= Math.ceil(realNow() / 1000 + 3600) + 1, `ours se ${se}`);
    }
  });

  // ---- fromSharedAccessSignature ----
  test('fromSharedAccessSignature: the string is sent verbatim, host from sr', async () => {
    const sas = sasFor(server.hostName);
    const res = await parity({
      make: (side, o) => side.fromSharedAccessSignature(sas, o),
      authMode: 'verbatim',
      maskSas: false,
      script: (s) => s.reply(okJob()),
      run: (c) =>
        callPromise(async () => {
          await c.getJob('job-1');
          await c.cancelJob('job-1');
          return c.scheduleDeviceMethod('job-1', Q, { methodName: 'm' }, START, 60);
        }),
    });
    for (const r of res.ours.requests) assert.equal(r.headers.authorization, sas);
  });
  test('fromSharedAccessSignature: fields in any order, extra fields kept verbatim', async () => {
    const sas = sasFor(server.hostName, { order: ['se', 'skn', 'sig', 'sr'] }) + '&extra=1';
    const res = await parity({
      make: (side, o) => side.fromSharedAccessSignature(sas, o),
      authMode: 'verbatim',
      maskSas: false,
      script: (s) => s.reply(okJob()),
      run: (c) => callCallback((cb) => c.getJob('job-1', cb)),
    });
    assert.equal(res.ours.requests[0].headers.authorization, sas);
  });
  const badSas = [
    'garbage',
    'SharedAccessSignature',
    'SharedAccessSignature ',
    'Foo sr=a&sig=b&skn=c&se=1',
    'SharedAccessSignature sr=a&sig=b&skn=c&se=1 extra',
    'SharedAccessSignature  sr=a&sig=b&skn=c&se=1',
    'SharedAccessSignature\tsr=a&sig=b&skn=c&se=1 ',
    'SharedAccessSignature sr=a&sig=b',
    'SharedAccessSignature se=1',
    'SharedAccessSignature sig=b&skn=c&se=1',
    'SharedAccessSignature sr=a&skn=c&se=1',
    'SharedAccessSignature sr=a&sig=b&se=1',
    'SharedAccessSignature sr=a&sig=b&skn=c',
    'SharedAccessSignature sr=&sig=b&skn=c&se=1',
    'sharedaccesssignature sr=a&sig=b&skn=c&se=1',
  ];
  for (const s of badSas) {
    factoryCase(`fromSharedAccessSignature(${JSON.stringify(s)}) → FormatError / ArgumentError`, (side) => side.fromSharedAccessSignature(s));
  }
  test("fromSharedAccessSignature: the first part only has to contain 'SharedAccessSignature'; a tab separates too", async () => {
    for (const prefix of ['xSharedAccessSignaturex ', 'SharedAccessSignature\t']) {
      const sas = prefix + `sr=${server.hostName}&sig=abc&skn=p&se=4102444800`;
      await parity({
        make: (side, o) => side.fromSharedAccessSignature(sas, o),
        authMode: 'verbatim',
        maskSas: false,
        script: (s) => s.reply(okJob()),
        run: (c) => callPromise(() => c.getJob('job-1')),
      });
    }
  });

  // ---- fromTokenCredential with a hand-written credential ----
  function recordingCredential({ token = 'tok-abc', lifetimeMs = 3600e3, delayMs = 0, result } = {}) {
    const calls = [];
    return {
      calls,
      getToken(...args) {
        calls.push(args);
        const value = result !== undefined ? result : { token: `${token}-${calls.length}`, expiresOnTimestamp: Date.now() + lifetimeMs };
        return new Promise((r) => setTimeout(() => r(value), delayMs));
      },
    };
  }
  test('fromTokenCredential: getToken(scope) with one string argument, Authorization: Bearer <token>, cached while fresh', async () => {
    const creds = {};
    const res = await parity({
      make: (side, o) => side.fromTokenCredential(server.hostName, (creds[side.isReference ? 'ref' : 'ours'] = recordingCredential()), o),
      authMode: 'bearer',
      maskSas: false,
      script: (s) => s.reply(okJob()),
      run: (c) =>
        callPromise(async () => {
          await c.getJob('job-1');
          await c.cancelJob('job-1');
          return normOutcome(await callCallback((cb) => c.scheduleTwinUpdate('job-1', Q, { tags: { a: 1 } }, START, 60, cb)));
        }),
    });
    assert.deepEqual(creds.ref.calls, [['https://iothubs.azure.net/.default']]);
    assert.deepEqual(creds.ours.calls, creds.ref.calls, 'ours: getToken calls and their arguments');
    for (const r of res.ours.requests) assert.equal(r.headers.authorization, 'Bearer tok-abc-1');
  });
  test('fromTokenCredential: a token expiring within 9 minutes is fetched again for the next request', async () => {
    const creds = {};
    await parity({
      make: (side, o) => side.fromTokenCredential(server.hostName, (creds[side.isReference ? 'ref' : 'ours'] = recordingCredential({ lifetimeMs: 8 * 60e3 })), o),
      authMode: 'bearer',
      maskSas: false,
      script: (s) => s.reply(okJob()),
      run: (c) =>
        callPromise(async () => {
          await c.getJob('job-1');
          await c.getJob('job-2');
          return c.getJob('job-3');
        }),
    });
    assert.equal(creds.ref.calls.length, 3);
    assert.equal(creds.ours.calls.length, 3, 'ours: refetched for each request (token always within 9 minutes of expiry)');
  });
  test('fromTokenCredential: getToken rejecting is passed through as the same object, asynchronously', async () => {
    const rejections = {};
    const res = await runBoth(server, pair, {
      scenario: async (side) => {
        const e = (rejections[side.isReference ? 'ref' : 'ours'] = Object.assign(new Error('credential unavailable'), { code: 'CredUnavailable' }));
        const c = side.fromTokenCredential(server.hostName, { getToken: () => Promise.reject(e) });
        return callCallback((cb) => c.getJob('job-1', cb));
      },
    });
    assert.equal(res.ref.outcome.sync, 'return');
    assert.equal(res.ref.outcome.args[0], rejections.ref);
    assert.equal(res.ours.outcome.sync, 'return', 'ours: asynchronous');
    assert.equal(res.ours.outcome.args.length, 1, 'ours: a single argument');
    assert.equal(res.ours.outcome.args[0], rejections.ours, 'ours: the same object');
    assert.equal(res.ours.requests.length, 0);
  });
  test("fromTokenCredential: getToken resolving null → Error('AccessToken creation failed')", async () => {
    const res = await parity({
      make: (side, o) => side.fromTokenCredential(server.hostName, { getToken: async () => null }, o),
      authMode: 'bearer',
      run: (c) => callPromise(() => c.getJob('job-1')),
    });
    assert.equal(res.ours.outcome.error.message, 'AccessToken creation failed');
  });
  test('fromTokenCredential: getToken that throws synchronously / returns a plain object (not a promise)', async () => {
    await parity({
      make: (side, o) => side.fromTokenCredential(server.hostName, { getToken: () => { throw new TypeError('sync failure'); } }, o),
      authMode: 'bearer',
      run: (c) => callCallback((cb) => c.getJob('job-1', cb)),
    });
    await parity({
      make: (side, o) => side.fromTokenCredential(server.hostName, { getToken: () => ({ token: 'plain', expiresOnTimestamp: Date.now() + 3600e3 }) }, o),
      authMode: 'bearer',
      maskSas: false,
      script: (s) => s.reply(okJob()),
      run: (c) => callPromise(() => c.getJob('job-1')),
    });
  });
  test('fromTokenCredential: a credential without a getToken function fails asynchronously with a TypeError (message not compared)', () =>
    parity({
      make: (side, o) => side.fromTokenCredential(server.hostName, { getToken: 5 }, o),
      authMode: 'bearer',
      run: (c) => callCallback((cb) => c.getJob('job-1', cb)),
      normOpts: { messageFor: () => false },
    }));
  for (const cred of [undefined, null]) {
    test(`fromTokenCredential(host, ${cred}): the reference sends the request without Authorization`, () =>
      parity({
        make: (side, o) => side.fromTokenCredential(server.hostName, cred, o),
        authMode: 'none',
        maskSas: false,
        script: (s) => s.reply(okJob()),
        run: (c) => callPromise(() => c.getJob('job-1')),
      }));
  }
  test('fromTokenCredential: validation errors stay synchronous in callback form', () =>
    parity({
      make: (side, o) => side.fromTokenCredential(server.hostName, recordingCredential(), o),
      authMode: 'bearer',
      run: (c) => callCallback((cb) => c.getJob(undefined, cb)),
    }));
});

// ---------------------------------------------------------------------------------------------
// Allowed differences: each test asserts what the reference does AND what ours does.
describeOurs('allowed differences (reference does X, ours does Y)', () => {
  const mp = { methodName: 'm' };

  test('fromSharedAccessSignature with an expired se: reference sends it and gets 401, ours fails fast without sending', async () => {
    const sas = sasFor(server.hostName, { se: 1000 });
    const unauthorized = { status: 401, json: { Message: 'ErrorCode:IotHubUnauthorizedAccess;Unauthorized', ExceptionMessage: 'x' } };
    const res = await runBoth(server, pair, {
      script: (s) => s.reply(unauthorized),
      scenario: (side) => callPromise(() => side.fromSharedAccessSignature(sas).getJob('job-1')),
    });
    assert.equal(res.ref.requests.length, 1, 'reference: the expired token is sent');
    assert.equal(res.ref.requests[0].headers.authorization, sas);
    assert.equal(res.ref.outcome.error.name, 'UnauthorizedError');
    assert.equal(res.ours.requests.length, 0, 'ours: nothing is sent');
    assert.equal(res.ours.outcome.kind, 'reject');
    assert.equal(res.ours.outcome.error.name, 'UnauthorizedError', 'ours: same class');
    assert.match(res.ours.outcome.error.message, /expired/);
    assert.doesNotMatch(res.ours.outcome.error.message, /sig=/, 'no signature in the message');
  });

  test('token without expiresOnTimestamp: reference caches it forever, ours fetches a fresh one per call', async () => {
    const calls = { ref: 0, ours: 0 };
    const res = await runBoth(server, pair, {
      script: (s) => s.reply(okJob()),
      scenario: async (side) => {
        const k = side.isReference ? 'ref' : 'ours';
        const c = side.fromTokenCredential(server.hostName, { getToken: async () => ({ token: `nx-${++calls[k]}` }) });
        await c.getJob('job-1');
        return callPromise(() => c.getJob('job-2'));
      },
    });
    assert.equal(calls.ref, 1, 'reference: one getToken call, the token is never refreshed');
    assert.deepEqual(res.ref.requests.map((r) => r.headers.authorization), ['Bearer nx-1', 'Bearer nx-1']);
    assert.equal(calls.ours, 2, 'ours: a token of unknown lifetime is used for one call only');
    assert.deepEqual(res.ours.requests.map((r) => r.headers.authorization), ['Bearer nx-1', 'Bearer nx-2']);
  });

  test('jobId encoded in every path: getJob/cancelJob("a b")', async () => {
    const res = await runBoth(server, pair, {
      script: (s) => s.reply(okJob()),
      scenario: async (side) => {
        const c = cs(side);
        return { get: await callPromise(() => c.getJob('a b')), cancelCb: await callCallback((cb) => c.cancelJob('a b', cb)) };
      },
    });
    assert.equal(res.ref.outcome.get.kind, 'reject');
    assert.equal(res.ref.outcome.get.error.code, 'ERR_UNESCAPED_CHARACTERS', 'reference: Node refuses the raw path');
    assert.equal(res.ref.outcome.cancelCb.sync, 'throw', 'reference: callback form throws synchronously');
    assert.equal(res.ref.outcome.cancelCb.error.code, 'ERR_UNESCAPED_CHARACTERS');
    assert.equal(res.ref.requests.length, 0);
    assert.equal(res.ours.outcome.get.kind, 'resolve', 'ours: resolves');
    assert.equal(res.ours.outcome.cancelCb.kind, 'callback');
    assert.equal(res.ours.outcome.cancelCb.args[0], null);
    assert.deepEqual(
      res.ours.requests.map((r) => `${r.method} ${r.path}`),
      ['GET /jobs/v2/a%20b', 'POST /jobs/v2/a%20b/cancel'],
    );
  });
  test('jobId encoded in every path: getJob("../devices/x") cannot walk to another resource', async () => {
    const res = await runBoth(server, pair, {
      script: (s) => s.reply(okJob()),
      scenario: async (side) => {
        const c = cs(side);
        await callPromise(() => c.getJob('../devices/x'));
        return callPromise(() => c.cancelJob('x/../../y?z'));
      },
    });
    assert.deepEqual(
      res.ref.requests.map((r) => `${r.method} ${r.path}${r.rawQuery}`),
      ['GET /jobs/v2/../devices/x?api-version=2021-04-12', 'POST /jobs/v2/x/../../y?z/cancel?api-version=2021-04-12'],
    );
    assert.deepEqual(
      res.ours.requests.map((r) => `${r.method} ${r.path}${r.rawQuery}`),
      ['GET /jobs/v2/..%2Fdevices%2Fx?api-version=2021-04-12', 'POST /jobs/v2/x%2F..%2F..%2Fy%3Fz/cancel?api-version=2021-04-12'],
    );
  });

  for (const op of ['scheduleDeviceMethod', 'scheduleTwinUpdate']) {
    const arg = op === 'scheduleDeviceMethod' ? mp : { tags: { a: 1 } };
    test(`${op}(id, q, p) promise: reference sends startTime null and no maxExecutionTimeInSeconds, ours now and 3600`, async () => {
      const res = await runBoth(server, pair, {
        script: (s) => s.reply(okJob()),
        scenario: (side) => callPromise(() => cs(side)[op]('job-1', Q, arg)),
      });
      const refBody = JSON.parse(res.ref.requests[0].body);
      const oursBody = JSON.parse(res.ours.requests[0].body);
      assert.equal(refBody.startTime, null);
      assert.ok(!('maxExecutionTimeInSeconds' in refBody));
      const t = Date.parse(oursBody.startTime);
      assert.ok(t >= res.ours.window.from - 1000 && t <= res.ours.window.to + 1000, `ours: startTime is now (${oursBody.startTime})`);
      assert.match(oursBody.startTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ours: toISOString format');
      assert.equal(oursBody.maxExecutionTimeInSeconds, 3600);
      assert.deepEqual(Object.keys(oursBody), ['jobId', 'type', op === 'scheduleDeviceMethod' ? 'cloudToDeviceMethod' : 'updateTwin', 'startTime', 'maxExecutionTimeInSeconds', 'queryCondition']);
      assert.deepEqual(normOutcome(res.ours.outcome), normOutcome(res.ref.outcome), 'same result');
    });
    test(`${op}(id, q, p, date) promise: reference omits maxExecutionTimeInSeconds, ours sends 3600`, async () => {
      const res = await runBoth(server, pair, {
        script: (s) => s.reply(okJob()),
        scenario: (side) => callPromise(() => cs(side)[op]('job-1', Q, arg, START)),
      });
      const refBody = JSON.parse(res.ref.requests[0].body);
      const oursBody = JSON.parse(res.ours.requests[0].body);
      assert.equal(refBody.startTime, START.toISOString());
      assert.ok(!('maxExecutionTimeInSeconds' in refBody));
      assert.equal(oursBody.startTime, START.toISOString());
      assert.equal(oursBody.maxExecutionTimeInSeconds, 3600);
    });
  }

  test('connectTimeoutInSeconds: reference drops it, ours passes it through (after responseTimeoutInSeconds)', async () => {
    const res = await runBoth(server, pair, {
      script: (s) => s.reply(okJob()),
      scenario: (side) =>
        callPromise(() => cs(side).scheduleDeviceMethod('job-1', Q, { methodName: 'm', payload: { a: 1 }, responseTimeoutInSeconds: 15, connectTimeoutInSeconds: 20 }, START, 60)),
    });
    assert.deepEqual(JSON.parse(res.ref.requests[0].body).cloudToDeviceMethod, { methodName: 'm', payload: { a: 1 }, responseTimeoutInSeconds: 15 });
    const c2d = JSON.parse(res.ours.requests[0].body).cloudToDeviceMethod;
    assert.deepEqual(c2d, { methodName: 'm', payload: { a: 1 }, responseTimeoutInSeconds: 15, connectTimeoutInSeconds: 20 });
    assert.deepEqual(Object.keys(c2d), ['methodName', 'payload', 'responseTimeoutInSeconds', 'connectTimeoutInSeconds']);
  });

  test('UTF-8 character split across two TCP writes: reference corrupts it, ours decodes the whole body', async () => {
    const text = 'job-ü€😀';
    const body = Buffer.from(JSON.stringify({ ...JOB, jobId: text }));
    const at = body.indexOf(Buffer.from('€')) + 1; // inside the 3-byte euro sign
    const res = await runBoth(server, pair, {
      script: (s) => s.reply({ status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, chunks: [body.subarray(0, at), body.subarray(at)], chunkDelayMs: 60 }),
      scenario: (side) => callPromise(() => cs(side).getJob('job-1')),
    });
    assert.notEqual(res.ref.outcome.value.jobStatus.jobId, text, 'reference: corrupted');
    assert.match(res.ref.outcome.value.jobStatus.jobId, /\uFFFD/);
    assert.equal(res.ours.outcome.value.jobStatus.jobId, text, 'ours: intact');
  });
  test('UTF-8 split inside an error body: reference corrupts .responseBody and the message, ours does not', async () => {
    const raw = Buffer.from(JSON.stringify({ Message: 'ErrorCode:ArgumentInvalid;Gerät „x“ ungültig', ExceptionMessage: '' }));
    const at = raw.indexOf(Buffer.from('ä')) + 1;
    const res = await runBoth(server, pair, {
      script: (s) => s.reply({ status: 400, headers: { 'content-type': 'application/json; charset=utf-8' }, chunks: [raw.subarray(0, at), raw.subarray(at)], chunkDelayMs: 60 }),
      scenario: (side) => callPromise(() => cs(side, side.isReference ? undefined : { retry: false }).getJob('job-1')),
    });
    assert.match(res.ref.outcome.error.responseBody, /\uFFFD/);
    assert.equal(res.ours.outcome.error.responseBody, raw.toString());
    assert.equal(res.ours.outcome.error.message, 'Gerät „x“ ungültig');
    assert.equal(res.ours.outcome.error.constructor.name, 'ArgumentError');
  });

  // ---- error envelopes ----
  const diffError = async ({ status, headers = {}, body, call = (c) => c.getJob('job-1') }) => {
    const bodyText = typeof body === 'string' ? body : JSON.stringify(body);
    const res = await runBoth(server, pair, {
      script: (s) => s.reply({ status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers }, body: bodyText }),
      scenario: (side) => callPromise(() => call(cs(side, side.isReference ? undefined : { retry: false }))),
    });
    assert.equal(res.ref.outcome.kind, 'reject');
    assert.equal(res.ours.outcome.kind, 'reject');
    assert.equal(res.ours.outcome.error.responseBody, bodyText, 'ours: .responseBody');
    assert.equal(res.ours.outcome.error.response.statusCode, status, 'ours: .response.statusCode');
    return { ref: res.ref.outcome.error, ours: res.ours.outcome.error, bodyText };
  };
  test("JobNotFound (404, envelope 1 + iothub-errorcode): reference Error('Not found'), ours JobNotFoundError", async () => {
    const { ref, ours: o } = await diffError({
      status: 404,
      headers: { 'iothub-errorcode': 'JobNotFound' },
      body: { Message: 'ErrorCode:JobNotFound;Job with id job-1 not found', ExceptionMessage: 'Tracking ID:1' },
    });
    assert.equal(ref.constructor, Error);
    assert.equal(ref.message, 'Not found');
    assert.ok(o instanceof pair.ours.errors.JobNotFoundError, `ours: ${o.constructor.name}`);
    assert.equal(o.name, 'JobNotFoundError');
    assert.equal(o.message, 'Job with id job-1 not found');
  });
  test('JobNotFound from the body alone (no header): ours JobNotFoundError', async () => {
    const { ref, ours: o } = await diffError({ status: 404, body: { Message: 'ErrorCode:JobNotFound;gone', ExceptionMessage: '' }, call: (c) => c.cancelJob('job-1') });
    assert.equal(ref.message, 'Not found');
    assert.ok(o instanceof pair.ours.errors.JobNotFoundError, `ours: ${o.constructor.name}`);
    assert.equal(o.message, 'gone');
  });
  test('envelope 2 (Message holding escaped JSON): reference "Error: <body>" / Error("Not found"), ours parses errorCode/message', async () => {
    const inner = { errorCode: 404001, trackingId: 't-1', message: 'Device d9 not found', timestampUtc: '2026-01-01T00:00:00Z' };
    const { ref, ours: o } = await diffError({
      status: 404,
      headers: { 'iothub-errorcode': 'DeviceNotFound' },
      body: { Message: JSON.stringify(inner), ExceptionMessage: '' },
    });
    assert.equal(ref.constructor, Error);
    assert.equal(ref.message, 'Not found');
    assert.ok(o instanceof pair.ours.errors.DeviceNotFoundError, `ours: ${o.constructor.name}`);
    assert.equal(o.message, 'Device d9 not found');
  });
  test('envelope 2 on a 400: same class, reference message "Error: <body>", ours the inner message', async () => {
    const inner = { errorCode: 400004, trackingId: 't-2', message: 'Invalid query condition', timestampUtc: '2026-01-01T00:00:00Z' };
    const { ref, ours: o, bodyText } = await diffError({ status: 400, body: { Message: JSON.stringify(inner), ExceptionMessage: '' } });
    assert.equal(ref.constructor.name, 'ArgumentError');
    assert.equal(ref.message, 'Error: ' + bodyText);
    assert.ok(o instanceof pair.ours.errors.ArgumentError);
    assert.equal(o.message, 'Invalid query condition');
  });
  test('envelope 3 (bare {errorCode, message}): reference "Error: <body>", ours the message', async () => {
    const body = { errorCode: 429001, trackingId: 't-3', message: 'Throttled', timestampUtc: '2026-01-01T00:00:00Z' };
    const { ref, ours: o, bodyText } = await diffError({ status: 429, body });
    assert.equal(ref.constructor.name, 'ThrottlingError');
    assert.equal(ref.message, 'Error: ' + bodyText);
    assert.ok(o instanceof pair.ours.errors.ThrottlingError);
    assert.equal(o.message, 'Throttled');
  });
  test('iothub-errorcode header preferred over the body code (404)', async () => {
    const { ref, ours: o } = await diffError({
      status: 404,
      headers: { 'iothub-errorcode': 'DeviceNotFound' },
      body: { Message: 'ErrorCode:IotHubNotFound;hub gone', ExceptionMessage: '' },
    });
    assert.equal(ref.constructor.name, 'IotHubNotFoundError', 'reference: from the body');
    assert.ok(o instanceof pair.ours.errors.DeviceNotFoundError, `ours: from the header (${o.constructor.name})`);
  });
  test('iothub-errorcode header with an empty body (404 IotHubNotFound)', async () => {
    const { ref, ours: o } = await diffError({ status: 404, headers: { 'iothub-errorcode': 'IotHubNotFound' }, body: '' });
    assert.equal(ref.message, 'Not found');
    assert.equal(ref.constructor, Error);
    assert.ok(o instanceof pair.ours.errors.IotHubNotFoundError, `ours: ${o.constructor.name}`);
    assert.equal(o.message, 'Not found');
  });
  test("JobNotFound header with an empty body (404): reference Error('Not found'), ours JobNotFoundError('Not found')", async () => {
    const { ref, ours: o } = await diffError({ status: 404, headers: { 'iothub-errorcode': 'JobNotFound' }, body: '' });
    assert.equal(ref.constructor, Error);
    assert.equal(ref.message, 'Not found');
    assert.ok(o instanceof pair.ours.errors.JobNotFoundError, `ours: ${o.constructor.name}`);
    assert.equal(o.message, 'Not found');
  });
  test("envelope 1 with a second ';': reference truncates the message, ours may keep the whole text", async () => {
    const { ref, ours: o } = await diffError({ status: 400, body: { Message: 'ErrorCode:ArgumentInvalid;first part; second part', ExceptionMessage: '' } });
    assert.equal(ref.message, 'first part');
    assert.ok(['first part', 'first part; second part'].includes(o.message), `ours: ${JSON.stringify(o.message)}`);
    assert.equal(o.constructor.name, 'ArgumentError');
  });

  // ---- query ----
  test('promise Query.next() without argument: reference re-reads page 1 forever, ours follows the stored token', async () => {
    const res = await runBoth(server, pair, {
      script: (s) =>
        s.respond((r) => {
          const tok = r.headers['x-ms-continuation'];
          const pageNo = tok === 'p2' ? 2 : tok === 'p3' ? 3 : 1;
          return {
            status: 200,
            headers: { 'content-type': 'application/json; charset=utf-8', ...(pageNo < 3 ? { 'x-ms-continuation': `p${pageNo + 1}` } : {}) },
            body: JSON.stringify([{ ...JOB, jobId: `page-${pageNo}` }]),
          };
        }),
      scenario: async (side) => {
        const q = cs(side).createQuery();
        const seen = [];
        for (let i = 0; i < 3 && q.hasMoreResults; i++) seen.push((await q.next()).result[0].jobId);
        return { seen, more: q.hasMoreResults };
      },
    });
    assert.deepEqual(res.ref.outcome, { seen: ['page-1', 'page-1', 'page-1'], more: true }, 'reference: stuck on page 1');
    assert.deepEqual(res.ours.outcome, { seen: ['page-1', 'page-2', 'page-3'], more: false }, 'ours: pages through');
    assert.deepEqual(
      res.ours.requests.map((r) => r.headers['x-ms-continuation']),
      [undefined, 'p2', 'p3'],
    );
  });
  test('which next()/nextAsTwin() calls use the stored token: reference only cb-only and nextAsTwin forms, ours also next() and next(undefined, cb)', async () => {
    const res = await runBoth(server, pair, {
      script: (s) => s.reply({ status: 200, headers: { 'content-type': 'application/json', 'x-ms-continuation': 'T' }, body: '[]' }),
      scenario: async (side) => {
        const q = cs(side).createQuery();
        await q.next(); // first page: no token yet
        await callCallback((cb) => q.next(cb));
        await callCallback((cb) => q.next(undefined, cb));
        await callCallback((cb) => q.next(null, cb));
        await q.next();
        await q.next(undefined);
        await callCallback((cb) => q.nextAsTwin(undefined, cb));
        await q.nextAsTwin();
        return 'done';
      },
    });
    const sent = (r) => r.requests.map((x) => x.headers['x-ms-continuation'] ?? '-');
    assert.deepEqual(sent(res.ref), ['-', 'T', '-', '-', '-', '-', 'T', 'T'], 'reference');
    assert.deepEqual(sent(res.ours), ['-', 'T', 'T', '-', 'T', 'T', 'T', 'T'], 'ours');
  });
  for (const f of ['promise', 'callback']) {
    test(`nextAsTwin() on a non-empty job page (${f}): reference crashes the process, ours answers and survives`, async () => {
      server.reset();
      server.respond(() => ({
        status: 200,
        headers: { 'content-type': 'application/json; charset=utf-8' },
        body: JSON.stringify([JOB, { ...JOB, jobId: 'job-2' }]),
      }));
      const run = (sideName) =>
        new Promise((resolve) => {
          const child = spawn(process.execPath, [path.join(here, 'parity', 'next-as-twin-child.mjs'), sideName, String(server.port), f], {
            env: { ...process.env },
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d) => (stdout += d));
          child.stderr.on('data', (d) => (stderr += d));
          const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
          child.on('exit', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout, stderr });
          });
        });
      const [ref, o] = await Promise.all([run('ref'), run('ours')]);
      assert.notEqual(ref.code, 0, 'reference: the process dies');
      assert.match(ref.stderr, /registryClient/, 'reference: uncaught ReferenceError from Twin');
      assert.doesNotMatch(ref.stdout, /OUTCOME/);
      assert.equal(o.code, 0, `ours: exits normally (stderr: ${o.stderr.slice(0, 500)})`);
      const line = o.stdout.split('\n').find((l) => l.startsWith('OUTCOME '));
      assert.ok(line, 'ours: the call completed');
      const outcome = JSON.parse(line.slice('OUTCOME '.length));
      assert.equal(outcome.sync, 'return', `ours: no synchronous throw (${line})`);
      assert.ok(['resolve', 'reject', 'callback'].includes(outcome.kind), line);
    });
  }

  // ---- identity ----
  test('User-Agent: reference azure-iothub/1.16.6, ours iothub-jobs/<package version>', async () => {
    const res = await runBoth(server, pair, {
      script: (s) => s.reply(okJob()),
      scenario: (side) => callPromise(() => cs(side).getJob('job-1')),
    });
    assert.equal(res.ref.requests[0].headers['user-agent'], 'azure-iothub/1.16.6');
    assert.equal(res.ours.requests[0].headers['user-agent'], `iothub-jobs/${oursVersion}`);
  });
  test('errors: reference does not export them, ours exports all 33 classes (real Error subclasses, reference names)', () => {
    assert.equal(reference.errors, undefined, 'reference: no errors export');
    const names = Object.keys(referenceErrors).filter((k) => typeof referenceErrors[k] === 'function');
    assert.equal(names.length, 33);
    for (const n of names) {
      const Ours = pair.ours.errors[n];
      assert.equal(typeof Ours, 'function', `ours: errors.${n}`);
      const e = new Ours('msg');
      const r = new referenceErrors[n]('msg');
      assert.ok(e instanceof Error, `${n} instanceof Error`);
      assert.ok(e instanceof Ours, `${n} instanceof itself`);
      assert.equal(e.name, r.name, `${n}.name`);
      assert.equal(e.message, 'msg');
      assert.equal(Object.prototype.hasOwnProperty.call(e, 'name'), Object.prototype.hasOwnProperty.call(r, 'name'), `${n}: name is an own property`);
      assert.equal(Ours.name, n, 'class name');
      assert.equal(typeof e.stack, 'string');
    }
    assert.equal(new pair.ours.errors.DeviceRegistrationFailedError('x').name, 'ProvisioningRegistrationFailedError');
  });

  // ---- retry (on by default in ours; the reference never retries) ----
  test('503 then 200 with default options: reference fails on the 503, ours retries and succeeds', async () => {
    const res = await runBoth(server, pair, {
      script: (s) => s.reply({ status: 503, headers: { 'retry-after': '0' }, json: { Message: 'ErrorCode:ServiceUnavailable;busy' } }, okJob()),
      scenario: (side) => callPromise(() => cs(side).getJob('job-1')),
    });
    assert.equal(res.ref.outcome.kind, 'reject');
    assert.equal(res.ref.outcome.error.constructor.name, 'ServiceUnavailableError');
    assert.equal(res.ref.requests.length, 1);
    assert.equal(res.ours.outcome.kind, 'resolve', 'ours: retried');
    assert.equal(res.ours.requests.length, 2);
    assert.equal(res.ours.outcome.value.jobStatus.jobId, 'job-1');
    const [a, b] = res.ours.requests;
    assert.equal(a.path, b.path);
  });
  test('no answer: reference waits forever, ours gives up after timeoutMs with an Error', async () => {
    server.reset();
    server.respond(() => ({ hang: true }));
    const waitFor = async (pred, ms, what) => {
      const until = Date.now() + ms;
      while (!pred()) {
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const refClient = pair.ref.fromConnectionString(connectionString(server));
    let refSettled = false;
    const refP = callPromise(() => refClient.getJob('job-1')).finally(() => (refSettled = true));
    await waitFor(() => server.requests.length === 1, 10000, 'the reference request');
    const refSentAt = Date.now();
    const oursClient = pair.ours.fromConnectionString(connectionString(server), { retry: false, timeoutMs: 300 });
    const started = Date.now();
    const oursOutcome = await Promise.race([
      callPromise(() => oursClient.getJob('job-1')),
      new Promise((r) => setTimeout(() => r({ kind: 'still pending after 10 s' }), 10000).unref()),
    ]);
    const elapsed = Date.now() - started;
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - refSentAt))));
    assert.equal(refSettled, false, 'reference: still pending after 1 s without an answer');
    assert.equal(oursOutcome.kind, 'reject', 'ours: rejects');
    assert.ok(oursOutcome.error instanceof Error);
    assert.ok(elapsed >= 250 && elapsed < 5000, `ours: after about timeoutMs (${elapsed} ms)`);
    server.dropConnections();
    await waitFor(() => refSettled, 10000, 'the reference to fail once the connection drops');
    assert.equal((await refP).kind, 'reject', 'reference: only fails when the connection drops');
  });
  test('content-type matched case-insensitively (ours may; reference does not)', async () => {
    const res = await runBoth(server, pair, {
      script: (s) => s.reply({ status: 200, headers: { 'content-type': 'Application/JSON; charset=utf-8' }, body: JSON.stringify(JOB) }),
      scenario: (side) => callPromise(() => cs(side).getJob('job-1')),
    });
    assert.equal(res.ref.outcome.value.jobStatus, '', 'reference: not parsed');
    const j = res.ours.outcome.value.jobStatus;
    assert.ok(j === '' || (j && j.jobId === 'job-1'), 'ours: either');
  });
  test('concurrent first requests with a token credential: reference calls getToken once per request, ours once (single flight)', async () => {
    const creds = {};
    const res = await runBoth(server, pair, {
      script: (s) => s.reply(okJob()),
      scenario: async (side) => {
        const cred = (creds[side.isReference ? 'ref' : 'ours'] = { n: 0, getToken: () => (cred.n++, new Promise((r) => setTimeout(() => r({ token: `t${cred.n}`, expiresOnTimestamp: Date.now() + 3600e3 }), 100))) });
        const c = side.fromTokenCredential(server.hostName, cred);
        return Promise.all([c.getJob('a'), c.getJob('b'), c.getJob('c')]).then(() => 'ok');
      },
    });
    assert.equal(res.ref.outcome, 'ok');
    assert.equal(creds.ref.n, 3, 'reference: one getToken per waiting request');
    assert.equal(res.ours.outcome, 'ok');
    assert.equal(creds.ours.n, 1, 'ours: a single getToken');
    assert.equal(res.ours.requests.length, 3);
  });
  test('HostName with a port and a ca option: reference has neither, ours reaches 127.0.0.1:<port> with the given CA', async () => {
    // The reference always connects to port 443 and only trusts the system store (this suite
    // redirects it in-process); ours takes both from its inputs.
    const c = pair.ours.fromConnectionString(connectionString(server));
    server.reset();
    server.reply(okJob());
    const r = await c.getJob('job-1');
    assert.equal(r.jobStatus.jobId, 'job-1');
    assert.equal(server.requests[0].headers.host, server.hostName);
    // Without the CA, certificate verification fails (always verified).
    if (!pair.ours.isReference) {
      const bare = ours.JobClient.fromConnectionString(connectionString(server), { retry: false });
      const o = await callPromise(() => bare.getJob('job-1'));
      assert.equal(o.kind, 'reject', 'ours: untrusted certificate rejected');
    }
  });
});
