// Native Azure AD credentials (azure_identity inside the addon, no @azure/identity):
// fromManagedIdentity, fromWorkloadIdentity, fromClientSecret, fromAzureCli.
//
// Everything is local: an HTTPS "Entra" token endpoint (fixtures certificate, trusted through the
// `ca` option or NODE_EXTRA_CA_CERTS), an App Service-style managed identity endpoint
// (IDENTITY_ENDPOINT + IDENTITY_HEADER) over HTTP and over HTTPS, a federated token file, and a
// fake `az` on PATH. The emulator accepts exactly the tokens these fakes issue
// (`--bearer-token`), so a successful hub call proves the token travelled end to end. The
// environment is read by the credentials when the client is created (Node's `process.env`
// assignments are real `setenv`s), and every test restores what it changed.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, chmodSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { startEmulator } from './helpers/emulator.mjs';
import { RecordingServer } from './helpers/recording-server.mjs';

const require = createRequire(import.meta.url);
const { JobClient } = require('../lib/main.js');

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, 'fixtures');
const FIXTURE_CA = readFileSync(path.join(fixtures, 'ca.pem'), 'utf8');
const SCOPE = 'https://iothubs.azure.net/.default';
const RUN = randomBytes(6).toString('hex');
const SECRET = `cs-secret-${RUN}`;
const IDENTITY_HEADER = `ih-secret-${RUN}`;
const ASSERTION = `federated.jwt.${RUN}`;
const TOKENS = {
  clientSecret: `cs-token.${RUN}`,
  workload: `wi-token.${RUN}`,
  msiHttp: `mi-http-token.${RUN}`,
  msiHttps: `mi-https-token.${RUN}`,
  msiUser: `mi-user-token.${RUN}`,
  cli: `cli-token.${RUN}`,
};
const NOT_ACCEPTED = `stranger.${RUN}`;

const ENV_KEYS = [
  'IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'IDENTITY_SERVER_THUMBPRINT', 'IMDS_ENDPOINT', 'MSI_ENDPOINT', 'MSI_SECRET',
  'AZURE_TENANT_ID', 'AZURE_CLIENT_ID', 'AZURE_FEDERATED_TOKEN_FILE', 'AZURE_AUTHORITY_HOST',
  'NODE_EXTRA_CA_CERTS', 'PATH', 'HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy',
  'NO_PROXY', 'no_proxy',
];
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
function restoreEnv() {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  // Never let a developer's proxy settings leak into these loopback tests.
  for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy']) delete process.env[k];
}

let hub;
let hubCa;
let both; // hub CA + fixtures CA, for clients that talk to both
let entra;
let msiHttp;
let tmp;

/** One request-recording server for the Entra token endpoint (HTTPS) and the MSI endpoint. */
/**
 * The shared recording server (HTTPS, or HTTP with `tls: false`) with requests recorded as
 * { method, path, query, headers, body } and answered by `handler(rec, json)`.
 */
async function recorder(handler, { tls = true } = {}) {
  const requests = [];
  const json = (status, obj) => ({ status, json: obj });
  const server = new RecordingServer({
    tls,
    respond: (req) => {
      const url = new URL(req.url, 'http://x');
      const rec = { method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, body: req.body.toString('utf8') };
      requests.push(rec);
      return handler(rec, json);
    },
  });
  await server.start();
  return { server, requests };
}

/** Entra: POST /<tenant>/oauth2/v2.0/token; App Service MSI: GET /msi/token. */
function entraHandler(rec, json) {
  const form = Object.fromEntries(new URLSearchParams(rec.body));
  rec.form = form;
  const tenant = rec.path.split('/')[1];
  if (rec.path === '/msi/token') return msiHandler(rec, json, TOKENS.msiHttps);
  if (rec.method !== 'POST' || !rec.path.endsWith('/oauth2/v2.0/token')) return json(404, { error: 'not_found' });
  const ok = (token) => json(200, { token_type: 'Bearer', expires_in: 3600, ext_expires_in: 3600, access_token: token });
  const deny = () =>
    json(401, {
      error: 'invalid_client',
      error_description: 'AADSTS7000215: Invalid client secret provided.',
      error_codes: [7000215],
    });
  if (tenant === 'cs-tenant') return form.client_secret === SECRET && form.grant_type === 'client_credentials' ? ok(TOKENS.clientSecret) : deny();
  if (tenant === 'wi-tenant') {
    const good =
      form.client_assertion === ASSERTION &&
      form.client_assertion_type === 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' &&
      form.client_id === 'wi-client';
    return good ? ok(TOKENS.workload) : deny();
  }
  if (tenant === 'stranger') return ok(NOT_ACCEPTED);
  return deny();
}

function msiHandler(rec, json, token) {
  if (rec.headers['x-identity-header'] !== IDENTITY_HEADER) return json(401, { error: 'bad identity header' });
  if (rec.query.resource !== 'https://iothubs.azure.net' || rec.query['api-version'] !== '2019-08-01') {
    return json(400, { error: 'bad request' });
  }
  const expiresOn = String(Math.floor(Date.now() / 1000) + 3600);
  const chosen = rec.query.client_id === 'user-assigned-id' ? TOKENS.msiUser : token;
  return json(200, { access_token: chosen, expires_on: expiresOn, resource: rec.query.resource, token_type: 'Bearer' });
}

before(async () => {
  restoreEnv();
  hub = await startEmulator({ args: Object.values(TOKENS).flatMap((t) => ['--bearer-token', t]) });
  hubCa = readFileSync(hub.caPath, 'utf8');
  both = hubCa + '\n' + FIXTURE_CA;

  const e = await recorder(entraHandler);
  entra = { server: e.server, requests: e.requests, authorityHost: e.server.url, port: e.server.port };

  const m = await recorder((rec, json) => (rec.path === '/msi/token' ? msiHandler(rec, json, TOKENS.msiHttp) : json(404, {})), { tls: false });
  msiHttp = { server: m.server, requests: m.requests, endpoint: `${m.server.url}/msi/token` };

  tmp = mkdtempSync(path.join(tmpdir(), 'iothub-jobs-identity-'));
});

after(async () => {
  restoreEnv();
  await Promise.all([entra?.server.close(), msiHttp?.server.close()]);
  await hub?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

afterEach(() => restoreEnv());

/** A successful hub call: the bearer token was accepted. */
async function assertHubAccepts(client) {
  const { message } = await client.createQuery().next();
  assert.equal(message.statusCode, 200);
}

function entraRequests(tenant) {
  return entra.requests.filter((r) => r.path === `/${tenant}/oauth2/v2.0/token`);
}

describe('fromClientSecret', () => {
  test('gets a token from an HTTPS authority trusted through the ca option; cached across calls', async () => {
    const before = entraRequests('cs-tenant').length;
    const client = JobClient.fromClientSecret(hub.hostName, 'cs-tenant', 'cs-client', SECRET, {
      authorityHost: entra.authorityHost,
      ca: both,
    });
    await assertHubAccepts(client);
    await assertHubAccepts(client);
    const reqs = entraRequests('cs-tenant').slice(before);
    assert.equal(reqs.length, 1, 'one token request for two calls');
    assert.deepEqual(
      { ...reqs[0].form },
      { client_id: 'cs-client', client_secret: SECRET, grant_type: 'client_credentials', scope: SCOPE },
    );
    assert.match(reqs[0].headers['content-type'], /application\/x-www-form-urlencoded/);
  });

  test('AZURE_AUTHORITY_HOST and NODE_EXTRA_CA_CERTS (read at creation) work too', async () => {
    const caFile = path.join(tmp, 'both.pem');
    writeFileSync(caFile, both);
    process.env.NODE_EXTRA_CA_CERTS = caFile;
    process.env.AZURE_AUTHORITY_HOST = entra.authorityHost;
    const client = JobClient.fromClientSecret(hub.hostName, 'cs-tenant', 'cs-client-2', SECRET);
    restoreEnv();
    await assertHubAccepts(client);
  });

  test('an untrusted authority fails with a certificate error and sends nothing', async () => {
    const before = entraRequests('cs-tenant').length;
    const client = JobClient.fromClientSecret(hub.hostName, 'cs-tenant', 'cs-client-3', SECRET, {
      authorityHost: entra.authorityHost,
      ca: hubCa,
      retry: false,
    });
    await assert.rejects(client.createQuery().next(), (e) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /ClientSecretCredential authentication failed/);
      assert.match(e.message, /certificate|UnknownIssuer|invalid peer/i);
      assert.ok(!e.message.includes(SECRET));
      return true;
    });
    assert.equal(entraRequests('cs-tenant').length, before);
  });

  test('a rejected secret fails the call with the authority message, never the secret', async () => {
    const client = JobClient.fromClientSecret(hub.hostName, 'cs-tenant', 'cs-client', 'wrong-' + SECRET, {
      authorityHost: entra.authorityHost,
      ca: both,
    });
    await assert.rejects(client.getJob('some-job'), (e) => {
      assert.match(e.message, /AADSTS7000215/);
      assert.ok(!e.message.includes(SECRET));
      assert.ok(!JSON.stringify(e).includes(SECRET));
      return true;
    });
  });

  test('a token the hub does not know gives UnauthorizedError', async () => {
    const client = JobClient.fromClientSecret(hub.hostName, 'stranger', 'cs-client', SECRET, {
      authorityHost: entra.authorityHost,
      ca: both,
    });
    await assert.rejects(client.getJob('some-job'), { name: 'UnauthorizedError' });
  });

  test('arguments are checked when the client is created', () => {
    assert.throws(() => JobClient.fromClientSecret('', 't', 'c', 's'), { name: 'ArgumentError' });
    assert.throws(() => JobClient.fromClientSecret(hub.hostName, 't', 'c', ''), { name: 'ArgumentError' });
    assert.throws(() => JobClient.fromClientSecret(hub.hostName, 't', 'c', 42), TypeError);
    assert.throws(() => JobClient.fromClientSecret(hub.hostName, 'bad tenant!', 'c', 's', { authorityHost: entra.authorityHost }), /invalid tenant ID/);
    assert.throws(
      () => JobClient.fromClientSecret(hub.hostName, 't', 'c', 's', { authorityHost: 'http://127.0.0.1:1' }),
      /HTTPS/,
    );
    assert.throws(() => JobClient.fromClientSecret(hub.hostName, 't', 'c', 's', { authorityHost: 7 }), TypeError);
    assert.throws(() => JobClient.fromClientSecret(hub.hostName, 't', 'c', 's', { ca: 'not a pem' }), { name: 'ArgumentError' });
  });
});

describe('fromManagedIdentity', () => {
  test('App Service endpoint over HTTP (IDENTITY_ENDPOINT + IDENTITY_HEADER)', async () => {
    process.env.IDENTITY_ENDPOINT = msiHttp.endpoint;
    process.env.IDENTITY_HEADER = IDENTITY_HEADER;
    const before = msiHttp.requests.length;
    // IDENTITY_ENDPOINT is read at creation, IDENTITY_HEADER per token request (azure_identity).
    const client = JobClient.fromManagedIdentity(hub.hostName, { ca: hubCa });
    await assertHubAccepts(client);
    await assertHubAccepts(client);
    const reqs = msiHttp.requests.slice(before);
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].method, 'GET');
    assert.equal(reqs[0].query.resource, 'https://iothubs.azure.net');
    assert.equal(reqs[0].query.client_id, undefined);
    assert.equal(reqs[0].headers['x-identity-header'], IDENTITY_HEADER);
  });

  test('a user-assigned identity sends its clientId', async () => {
    process.env.IDENTITY_ENDPOINT = msiHttp.endpoint;
    process.env.IDENTITY_HEADER = IDENTITY_HEADER;
    const before = msiHttp.requests.length;
    const client = JobClient.fromManagedIdentity(hub.hostName, { clientId: 'user-assigned-id', ca: hubCa });
    await assertHubAccepts(client);
    assert.equal(msiHttp.requests.slice(before)[0].query.client_id, 'user-assigned-id');
  });

  test('an HTTPS identity endpoint is trusted through the ca option', async () => {
    process.env.IDENTITY_ENDPOINT = `${entra.authorityHost}/msi/token`;
    process.env.IDENTITY_HEADER = IDENTITY_HEADER;
    const client = JobClient.fromManagedIdentity(hub.hostName, { ca: both });
    await assertHubAccepts(client);
  });

  test('a wrong identity header fails with the endpoint answer, without the header value', async () => {
    process.env.IDENTITY_ENDPOINT = msiHttp.endpoint;
    process.env.IDENTITY_HEADER = 'wrong-' + IDENTITY_HEADER;
    const client = JobClient.fromManagedIdentity(hub.hostName, { ca: hubCa, retry: false });
    await assert.rejects(client.getJob('x'), (e) => {
      assert.match(e.message, /ManagedIdentityCredential authentication failed/);
      assert.ok(!e.message.includes(IDENTITY_HEADER));
      return true;
    });
  });
});

describe('fromWorkloadIdentity', () => {
  test('exchanges the federated token file at the authority (options)', async () => {
    const file = path.join(tmp, 'federated-token');
    writeFileSync(file, ASSERTION);
    const before = entraRequests('wi-tenant').length;
    const client = JobClient.fromWorkloadIdentity(hub.hostName, {
      tenantId: 'wi-tenant',
      clientId: 'wi-client',
      tokenFilePath: file,
      authorityHost: entra.authorityHost,
      ca: both,
    });
    await assertHubAccepts(client);
    const reqs = entraRequests('wi-tenant').slice(before);
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].form.scope, SCOPE);
    assert.equal(reqs[0].form.grant_type, 'client_credentials');
  });

  test('AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_FEDERATED_TOKEN_FILE / AZURE_AUTHORITY_HOST', async () => {
    const file = path.join(tmp, 'federated-token-env');
    writeFileSync(file, ASSERTION);
    Object.assign(process.env, {
      AZURE_TENANT_ID: 'wi-tenant',
      AZURE_CLIENT_ID: 'wi-client',
      AZURE_FEDERATED_TOKEN_FILE: file,
      AZURE_AUTHORITY_HOST: entra.authorityHost,
    });
    const client = JobClient.fromWorkloadIdentity(hub.hostName, { ca: both });
    restoreEnv();
    await assertHubAccepts(client);
  });

  test('missing settings and unreadable files are reported at creation', () => {
    assert.throws(() => JobClient.fromWorkloadIdentity(hub.hostName, { clientId: 'c', tokenFilePath: '/nonexistent' }), /tenant ID/);
    assert.throws(
      () => JobClient.fromWorkloadIdentity(hub.hostName, { tenantId: 't', clientId: 'c', tokenFilePath: path.join(tmp, 'missing') }),
      /federated token/,
    );
  });
});

describe('fromAzureCli', () => {
  function fakeAz(script) {
    const dir = mkdtempSync(path.join(tmp, 'az-'));
    const az = path.join(dir, 'az');
    writeFileSync(az, `#!/bin/sh\n${script}\n`);
    chmodSync(az, 0o755);
    return dir;
  }

  test('runs `az account get-access-token` found on PATH', async () => {
    const argsFile = path.join(tmp, 'az-args');
    const expires = Math.floor(Date.now() / 1000) + 3600;
    const out = JSON.stringify({
      accessToken: TOKENS.cli,
      expiresOn: '2099-01-01 00:00:00.000000',
      expires_on: expires,
      subscription: '00000000-0000-0000-0000-000000000000',
      tenant: '11111111-1111-1111-1111-111111111111',
      tokenType: 'Bearer',
    });
    const dir = fakeAz(`echo "$@" > '${argsFile}'\ncat <<'EOF'\n${out}\nEOF`);
    process.env.PATH = `${dir}:${savedEnv.PATH}`;
    const client = JobClient.fromAzureCli(hub.hostName, { ca: hubCa, tenantId: 'cli-tenant' });
    await assertHubAccepts(client);
    await assertHubAccepts(client);
    assert.ok(existsSync(argsFile));
    assert.equal(readFileSync(argsFile, 'utf8').trim(), `account get-access-token -o json --scope ${SCOPE} --tenant cli-tenant`);
  });

  test('a failing az reports its stderr', async () => {
    const dir = fakeAz(`echo "ERROR: Please run 'az login' to setup account." >&2\nexit 1`);
    process.env.PATH = `${dir}:${savedEnv.PATH}`;
    const client = JobClient.fromAzureCli(hub.hostName, { ca: hubCa });
    await assert.rejects(client.getJob('x'), /AzureCliCredential authentication failed.*az login/s);
  });

  test('without options', () => {
    assert.ok(JobClient.fromAzureCli(hub.hostName) instanceof JobClient);
    assert.throws(() => JobClient.fromAzureCli(undefined), TypeError);
  });
});

describe('common options on the native factories', () => {
  test('userAgentPrefix and apiVersion reach the hub; timeoutMs bounds a hanging token endpoint', async () => {
    await hub.control('DELETE', 'requests');
    const client = JobClient.fromClientSecret(hub.hostName, 'cs-tenant', 'cs-client', SECRET, {
      authorityHost: entra.authorityHost,
      ca: both,
      userAgentPrefix: 'native-test/1.0',
      apiVersion: '2020-09-30',
      timeoutMs: 20_000,
      retry: { maxRetries: 1, initialDelayMs: 1, maxDelayMs: 5 },
    });
    await assertHubAccepts(client);
    const { requests } = await hub.control('GET', 'requests');
    const query = requests.find((r) => r.path === '/jobs/v2/query');
    assert.ok(query, JSON.stringify(requests.map((r) => r.path)));
    const headers = Object.fromEntries(Object.entries(query.headers).map(([k, v]) => [k.toLowerCase(), v]));
    assert.match(String(headers['user-agent']), /^native-test\/1\.0 iothub-jobs\//);
    assert.match(JSON.stringify(query.query ?? query.path), /2020-09-30/);

    // A token endpoint that never answers: the call timeout ends the call.
    const hang = await new RecordingServer({ tls: false, fallback: { hang: true } }).start();
    try {
      process.env.IDENTITY_ENDPOINT = `${hang.url}/msi/token`;
      process.env.IDENTITY_HEADER = IDENTITY_HEADER;
      const slow = JobClient.fromManagedIdentity(hub.hostName, { ca: hubCa, timeoutMs: 300, retry: false });
      const started = Date.now();
      await assert.rejects(slow.getJob('x'), { name: 'TimeoutError' });
      assert.ok(Date.now() - started < 5_000);
    } finally {
      await hang.close();
    }
  });
});
