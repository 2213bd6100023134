// `JobClient.fromTokenCredential` with a real `@azure/identity` credential.
//
// A `ClientSecretCredential` is pointed at a local HTTPS token endpoint started here (it answers
// the two requests MSAL makes: `GET /<tenant>/v2.0/.well-known/openid-configuration`, then
// `POST /<tenant>/oauth2/v2.0/token` with a form body), and the jobs calls go to the emulator,
// started with `--bearer-token` for each token the endpoint will issue. The tenant id in the
// path picks the endpoint's behaviour, so every scenario gets its own credential and tokens.
//
// The credential runs in a child process because @azure/identity reaches the endpoint through
// Node's TLS, which trusts the test CA only through NODE_EXTRA_CA_CERTS, read at start. The child
// wraps the credential's own getToken (same instance, same `this`) to count calls and keep the
// object it rejected with, so `===` with what the jobs call rejected with is checked in the
// child. The hand-written-credential cases (sync throw, null token, non-Error rejection, missing
// getToken, `this` binding) are in client.test.mjs and not repeated here.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { startEmulator } from './helpers/emulator.mjs';
import { RecordingServer } from './helpers/recording-server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const fixtures = path.join(here, 'fixtures');
const TEST_CA_PATH = path.join(fixtures, 'ca.pem');
const SCOPE = 'https://iothubs.azure.net/.default';
const CLIENT_ID = 'c0ffee00-1111-2222-3333-444455556666';
const CLIENT_SECRET = 'not-a-real-secret';
const RUN = randomBytes(6).toString('hex'); // makes this run's tokens unique
const CHILD_TIMEOUT_MS = 30_000;

// Per-tenant behaviour of the token endpoint. `expiresIn` is what `expires_in` says.
// MSAL treats a cached token as expired 5 minutes before its end (tokenRenewalOffsetSeconds 300),
// our client refreshes 9 minutes before: 240 s is inside both windows, 480 s only inside ours.
const TENANTS = {
  basic: { expiresIn: 3600 },
  renew: { expiresIn: 240 },
  window: { expiresIn: 480 },
  flight: { expiresIn: 3600, delayMs: 400 },
  stranger: { expiresIn: 3600 }, // its tokens are not given to the emulator
  deny400: { status: 400 },
  deny401: { status: 401 },
  nodisco: { discovery: 404 },
};
const tokenFor = (tenant, n) => `${tenant}-${n}.${RUN}`;
// Every token the emulator accepts (a few per tenant, more than any scenario fetches).
const ACCEPTED = ['basic', 'renew', 'window', 'flight'].flatMap((t) => [1, 2, 3, 4].map((n) => tokenFor(t, n)));

// ---------------------------------------------------------------------------------------------
// The token endpoint.

class TokenEndpoint {
  constructor() {
    this.requests = [];
    this.issued = {};
    this.server = new RecordingServer({ respond: (req) => this.handle(req, req.body.toString('utf8')) });
  }
  async start() {
    await this.server.start();
    this.authorityHost = this.server.url;
    return this;
  }
  stop() {
    return this.server.close();
  }
  /** Recorded requests of one tenant, as { kind: 'discovery'|'token'|'other', method, path, headers, form }. */
  of(tenant) {
    return this.requests.filter((r) => r.tenant === tenant);
  }
  /** The scripted answer to one recorded request. */
  handle(req, body) {
    const url = new URL(req.url, this.authorityHost);
    const [, tenant, ...rest] = url.pathname.split('/');
    const sub = rest.join('/');
    const kind = sub === 'v2.0/.well-known/openid-configuration' ? 'discovery' : sub === 'oauth2/v2.0/token' ? 'token' : 'other';
    const rec = { tenant, kind, method: req.method, path: url.pathname, headers: req.headers };
    if (kind === 'token') rec.form = Object.fromEntries(new URLSearchParams(body));
    this.requests.push(rec);
    const behaviour = TENANTS[tenant];
    const json = (status, obj, delayMs) => ({ status, json: obj, delayMs });
    if (!behaviour || kind === 'other') return json(404, { error: 'not_found' });
    const base = `${this.authorityHost}/${tenant}`;
    if (kind === 'discovery') {
      if (req.method !== 'GET' || behaviour.discovery) return json(behaviour.discovery ?? 405, { error: 'not_found' });
      // The four fields MSAL requires (isOpenIdConfigResponse), plus the usual logout endpoint.
      return json(200, {
        token_endpoint: `${base}/oauth2/v2.0/token`,
        authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
        end_session_endpoint: `${base}/oauth2/v2.0/logout`,
        issuer: `${base}/v2.0`,
        jwks_uri: `${base}/discovery/v2.0/keys`,
      });
    }
    if (req.method !== 'POST') return json(405, { error: 'invalid_request' });
    if (behaviour.status) {
      return json(behaviour.status, {
        error: 'invalid_client',
        error_description: "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        error_codes: [7000215],
        timestamp: '2026-11-26 06:00:00Z',
        trace_id: '00000000-0000-0000-0000-000000000001',
        correlation_id: '00000000-0000-0000-0000-000000000002',
      });
    }
    const n = (this.issued[tenant] = (this.issued[tenant] ?? 0) + 1);
    rec.issued = tokenFor(tenant, n);
    return json(
      200,
      { token_type: 'Bearer', expires_in: behaviour.expiresIn, ext_expires_in: behaviour.expiresIn, access_token: rec.issued },
      behaviour.delayMs,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The child process: builds the credential and the client, runs `scenario`, prints one JSON line.

const PRELUDE = `
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as identity from '@azure/identity';
const require = createRequire(process.cwd() + '/');
const { JobClient, errors } = require('./lib/main.js');
const cfg = JSON.parse(process.env.IDENTITY_TEST_CONFIG);

const credential = new identity.ClientSecretCredential(cfg.tenant, cfg.clientId, cfg.clientSecret, {
  authorityHost: cfg.authorityHost,
  disableInstanceDiscovery: true,
});
// Count calls and keep what each one resolved or rejected with; the object stays the real credential.
const calls = [];
const thrown = [];
const realGetToken = credential.getToken;
credential.getToken = function (...args) {
  const call = { args: args.map((a) => (typeof a === 'string' ? a : a === undefined ? 'undefined' : typeof a)), thisIsCredential: this === credential };
  calls.push(call);
  return realGetToken.apply(this, args).then(
    (t) => { call.token = t.token; call.expiresInS = Math.round((t.expiresOnTimestamp - Date.now()) / 1000); return t; },
    (e) => { call.rejected = true; thrown.push(e); throw e; },
  );
};
const client = JobClient.fromTokenCredential(cfg.hubHostName, credential, { ca: readFileSync(cfg.hubCaPath, 'utf8') });

/** What the test needs to know about an error, plus whether it is the object getToken rejected with. */
function describeError(e) {
  const identityClass = Object.keys(identity).find((k) => /Error$/.test(k) && typeof identity[k] === 'function' && e instanceof identity[k] && e.constructor === identity[k]);
  return {
    isError: e instanceof Error,
    name: e?.name,
    constructor: e?.constructor?.name,
    identityClass: identityClass ?? null,
    message: e?.message,
    statusCode: e?.response?.statusCode,
    sameAsThrown: thrown.includes(e),
    sameAsLastThrown: thrown.length > 0 && e === thrown[thrown.length - 1],
    isUnauthorized: e instanceof errors.UnauthorizedError,
  };
}
const viaCallback = (fn) => new Promise((resolve) => fn((...args) => resolve(args)));
const out = {};
`;

const EPILOGUE = `
out.calls = calls;
process.stdout.write(JSON.stringify(out) + '\\n');
`;

/** Runs `scenario` (ESM source, may use `client`, `out`, ...) for `tenant` and resolves with its `out`. */
function runScenario(tenant, scenario) {
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: TEST_CA_PATH };
  for (const k of Object.keys(env)) if (/^(https?|all|no)_proxy$/i.test(k)) delete env[k];
  env.IDENTITY_TEST_CONFIG = JSON.stringify({
    tenant,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    authorityHost: tokens.authorityHost,
    hubHostName: hub.hostName,
    hubCaPath: hub.caPath,
  });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', PRELUDE + scenario + EPILOGUE], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`scenario ${tenant} exited with ${code ?? signal}\n${stderr}\n${stdout}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()));
      } catch (err) {
        reject(new Error(`scenario ${tenant}: no result (${err.message})\n${stderr}\n${stdout}`));
      }
    });
  });
}

/** The emulator's recorded REST requests since the last call (the control API is not recorded). */
async function hubRequests() {
  const { requests } = await hub.control('GET', 'requests?clear=true');
  return requests;
}

// ---------------------------------------------------------------------------------------------

const tokens = new TokenEndpoint();
let hub;

before(async () => {
  await tokens.start();
  hub = await startEmulator({ devices: 4, args: ACCEPTED.flatMap((t) => ['--bearer-token', t]) });
});
after(async () => {
  await hub?.stop();
  await tokens.stop();
});

describe('fromTokenCredential with @azure/identity ClientSecretCredential', () => {
  test('Bearer header from the token endpoint, scope requested, jobs calls succeed (promise and callback)', async () => {
    await hubRequests();
    const out = await runScenario(
      'basic',
      `
      const scheduled = await client.scheduleDeviceMethod('identity-basic', "deviceId = 'device-0001'", { methodName: 'reboot', payload: { n: 1 } });
      const got = await client.getJob('identity-basic');
      const [err, job, response] = await viaCallback((cb) => client.getJob('identity-basic', cb));
      out.scheduled = { jobId: scheduled.jobStatus.jobId, type: scheduled.jobStatus.type, statusCode: scheduled.response.statusCode };
      out.got = { jobId: got.jobStatus.jobId, method: got.jobStatus.cloudToDeviceMethod?.methodName, statusCode: got.response.statusCode };
      out.callback = { err: err ?? null, jobId: job?.jobId, statusCode: response?.statusCode };
      `,
    );
    const token = tokenFor('basic', 1);

    // What @azure/identity asked the endpoint for.
    const seen = tokens.of('basic');
    assert.deepEqual(seen.map((r) => `${r.kind} ${r.method}`), ['discovery GET', 'token POST']);
    const { form } = seen[1];
    assert.equal(form.scope, SCOPE, 'the IoT Hub scope, alone');
    assert.equal(form.grant_type, 'client_credentials');
    assert.equal(form.client_id, CLIENT_ID);
    assert.equal(form.client_secret, CLIENT_SECRET);

    // What our client asked the credential for, and what it got.
    assert.equal(out.calls.length, 1, 'a token valid for an hour is cached: one getToken for three calls');
    assert.deepEqual(out.calls[0].args, [SCOPE]);
    assert.equal(out.calls[0].thisIsCredential, true);
    assert.equal(out.calls[0].token, token);
    assert.ok(out.calls[0].expiresInS > 3500 && out.calls[0].expiresInS <= 3600, `expiresOnTimestamp from expires_in: ${out.calls[0].expiresInS}`);

    // What reached the hub.
    assert.deepEqual(out.scheduled, { jobId: 'identity-basic', type: 'scheduleDeviceMethod', statusCode: 200 });
    assert.deepEqual(out.got, { jobId: 'identity-basic', method: 'reboot', statusCode: 200 });
    assert.deepEqual(out.callback, { err: null, jobId: 'identity-basic', statusCode: 200 });
    const requests = await hubRequests();
    assert.deepEqual(
      requests.map((r) => `${r.method} ${r.path} ${r.status}`),
      ['PUT /jobs/v2/identity-basic 200', 'GET /jobs/v2/identity-basic 200', 'GET /jobs/v2/identity-basic 200'],
    );
    for (const r of requests) assert.equal(r.headers.authorization, `Bearer ${token}`);
  });

  test('renewal: a token with 4 minutes left is fetched again on the next call', async () => {
    await hubRequests();
    const out = await runScenario(
      'renew',
      `
      await client.scheduleDeviceMethod('identity-renew', '*', { methodName: 'ping' });
      await client.getJob('identity-renew');
      out.done = true;
      `,
    );
    assert.equal(out.done, true);
    assert.equal(out.calls.length, 2, 'getToken again: less than 9 minutes left');
    assert.deepEqual(out.calls.map((c) => c.token), [tokenFor('renew', 1), tokenFor('renew', 2)]);
    assert.deepEqual(tokens.of('renew').map((r) => r.kind), ['discovery', 'token', 'token'], 'a second token request reached the endpoint');
    assert.ok(tokens.of('renew').filter((r) => r.kind === 'token').every((r) => r.form.scope === SCOPE));
    const requests = await hubRequests();
    assert.deepEqual(
      requests.map((r) => [r.method, r.status, r.headers.authorization]),
      [
        ['PUT', 200, `Bearer ${tokenFor('renew', 1)}`],
        ['GET', 200, `Bearer ${tokenFor('renew', 2)}`],
      ],
    );
  });

  test('renewal window is 9 minutes: with 8 minutes left our client asks again (MSAL still serves its cache)', async () => {
    await hubRequests();
    const out = await runScenario(
      'window',
      `
      await client.getJob('identity-window').catch((e) => { out.first = e.name; });
      await client.getJob('identity-window').catch((e) => { out.second = e.name; });
      `,
    );
    // The job does not exist: both calls reach the hub and get JobNotFound, with the same token.
    assert.deepEqual([out.first, out.second], ['JobNotFoundError', 'JobNotFoundError']);
    assert.equal(out.calls.length, 2, 'getToken on each call: 8 minutes is inside the 9-minute window');
    assert.deepEqual(out.calls.map((c) => c.token), [tokenFor('window', 1), tokenFor('window', 1)]);
    assert.equal(tokens.of('window').filter((r) => r.kind === 'token').length, 1);
    const requests = await hubRequests();
    assert.deepEqual(requests.map((r) => [r.status, r.headers.authorization]), [
      [404, `Bearer ${tokenFor('window', 1)}`],
      [404, `Bearer ${tokenFor('window', 1)}`],
    ]);
  });

  test('single flight: 8 concurrent first calls make one getToken and one token request', async () => {
    await hubRequests();
    const out = await runScenario(
      'flight',
      `
      const ids = Array.from({ length: 8 }, (_, i) => 'identity-flight-' + i);
      const results = await Promise.all(ids.map((id) => client.scheduleDeviceMethod(id, '*', { methodName: 'ping' })));
      out.jobIds = results.map((r) => r.jobStatus.jobId);
      `,
    );
    assert.deepEqual(out.jobIds, Array.from({ length: 8 }, (_, i) => `identity-flight-${i}`));
    assert.equal(out.calls.length, 1, 'one getToken for 8 waiting calls');
    assert.deepEqual(tokens.of('flight').map((r) => r.kind), ['discovery', 'token']);
    const requests = await hubRequests();
    assert.equal(requests.length, 8);
    for (const r of requests) {
      assert.equal(r.status, 200);
      assert.equal(r.headers.authorization, `Bearer ${tokenFor('flight', 1)}`);
    }
  });

  test('a token the hub does not accept: 401 from the hub → UnauthorizedError (the Bearer header really is checked)', async () => {
    await hubRequests();
    const out = await runScenario(
      'stranger',
      `
      try { await client.getJob('identity-stranger'); } catch (e) { out.error = describeError(e); }
      `,
    );
    assert.equal(out.error.isUnauthorized, true, JSON.stringify(out.error));
    assert.equal(out.error.statusCode, 401);
    assert.equal(out.error.sameAsThrown, false);
    const requests = await hubRequests();
    assert.deepEqual(requests.map((r) => [r.status, r.headers.authorization]), [[401, `Bearer ${tokenFor('stranger', 1)}`]]);
  });

  for (const [tenant, status] of [['deny400', 400], ['deny401', 401]]) {
    test(`rejection passed through: token endpoint ${status} → @azure/identity's AuthenticationRequiredError, the same object (promise and callback)`, async () => {
      await hubRequests();
      const out = await runScenario(
        tenant,
        `
        try { await client.getJob('identity-denied'); out.promise = 'resolved'; } catch (e) { out.promise = describeError(e); }
        const args = await viaCallback((cb) => client.cancelJob('identity-denied', cb));
        out.callbackArgc = args.length;
        out.callback = describeError(args[0]);
        out.thrownCount = thrown.length;
        `,
      );
      for (const form of ['promise', 'callback']) {
        const e = out[form];
        assert.equal(e.identityClass, 'AuthenticationRequiredError', `${form}: ${JSON.stringify(e)}`);
        assert.equal(e.name, 'AuthenticationRequiredError');
        assert.match(e.message, /invalid_client/);
        assert.match(e.message, /AADSTS7000215/);
        assert.equal(e.sameAsLastThrown, true, `${form}: the object the credential rejected with`);
      }
      assert.equal(out.callbackArgc, 1, 'callback gets the error alone');
      assert.equal(out.thrownCount, 2, 'no token is cached after a failure: each call asks again');
      assert.equal(out.calls.length, 2);
      const tokenPosts = tokens.of(tenant).filter((r) => r.kind === 'token');
      assert.ok(tokenPosts.length >= 2 && tokenPosts.every((r) => r.form.scope === SCOPE));
      assert.deepEqual(await hubRequests(), [], 'nothing is sent to the hub without a token');
    });
  }

  test("rejection passed through: no OpenID configuration → @azure/identity's CredentialUnavailableError, the same object", async () => {
    await hubRequests();
    const out = await runScenario(
      'nodisco',
      `
      try { await client.scheduleTwinUpdate('identity-nodisco', '*', { etag: '*', tags: { a: 1 } }); out.promise = 'resolved'; } catch (e) { out.promise = describeError(e); }
      `,
    );
    assert.equal(out.promise.identityClass, 'CredentialUnavailableError', JSON.stringify(out.promise));
    assert.equal(out.promise.sameAsLastThrown, true);
    assert.deepEqual(tokens.of('nodisco').map((r) => r.kind), ['discovery']);
    assert.deepEqual(await hubRequests(), []);
  });
});
