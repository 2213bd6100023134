// AZURE_LOG_LEVEL / DEBUG diagnostics on stderr, and that no secret ever reaches them.
//
// Each case runs a child process (the level is read from its environment when a client is
// created) against a local HTTPS fake hub (fixtures certificate) that answers 503 to the first
// attempt of every job and 200 afterwards, so every run shows attempts, statuses, durations and a
// retry decision. The fake also serves a token endpoint for the native client-secret credential.
// The fake records every Authorization header it receives, so the test knows the exact SAS
// signatures and bearer tokens that must not appear on stderr.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { RecordingServer, CA_PATH } from './helpers/recording-server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const RUN = randomBytes(6).toString('hex');
const KEY = Buffer.from(`key-material-${RUN}`).toString('base64');
const BEARER = `bearer-token-${RUN}`;
const CLIENT_SECRET = `client-secret-${RUN}`;
const ISSUED = `issued-token-${RUN}`;
const PATH_SECRET = `pathsig${RUN}`;

let server;
let host;
const authorizations = [];
const attemptsPerJob = new Map();

before(async () => {
  server = await new RecordingServer({
    respond: (req) => {
      const url = new URL(req.url, 'https://x')
      const json = (status, obj) => ({ status, json: obj })
      if (url.pathname.endsWith('/oauth2/v2.0/token')) {
        return json(200, { token_type: 'Bearer', expires_in: 3600, access_token: ISSUED })
      }
      if (req.headers.authorization) authorizations.push(req.headers.authorization)
      const m = /^\/jobs\/v2\/([^/]+)$/.exec(url.pathname)
      if (req.method !== 'GET' || !m) return json(404, { Message: 'not found' })
      const n = (attemptsPerJob.get(m[1]) ?? 0) + 1
      attemptsPerJob.set(m[1], n)
      if (n === 1) return json(503, { Message: 'ErrorCode:ServiceUnavailable;try again' })
      return json(200, { jobId: decodeURIComponent(m[1]), status: 'completed', type: 'scheduleDeviceMethod' })
    },
  }).start()
  host = server.hostName
})

after(() => server.close())

const SCRIPT = `
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
const require = createRequire(process.cwd() + '/');
const { JobClient } = require('./lib/main.js');
const cfg = JSON.parse(process.env.LOG_TEST_CONFIG);
const options = { ca: readFileSync(cfg.caPath, 'utf8'), retry: { initialDelayMs: 1, maxDelayMs: 5 } };
const tag = cfg.tag;

const sasClient = JobClient.fromConnectionString(
  'HostName=' + cfg.host + ';SharedAccessKeyName=iothubowner;SharedAccessKey=' + cfg.key, options);
await sasClient.getJob('cs-' + tag);
await sasClient.getJob('id-with-sig=' + cfg.pathSecret + '-' + tag);

const bearer = JobClient.fromTokenCredential(cfg.host,
  { getToken: async () => ({ token: cfg.bearer, expiresOnTimestamp: Date.now() + 3600e3 }) }, options);
await bearer.getJob('bearer-' + tag);

const native = JobClient.fromClientSecret(cfg.host, 'tenant-' + tag, 'client', cfg.clientSecret,
  { ...options, authorityHost: 'https://' + cfg.host });
await native.getJob('native-' + tag);
process.stdout.write('done\\n');
`;

/** Runs the script with `env` added; resolves with { code, stdout, stderr }. */
function run(tag, env) {
  const childEnv = { ...process.env };
  for (const k of Object.keys(childEnv)) {
    if (/^(https?|all|no)_proxy$/i.test(k) || k === 'AZURE_LOG_LEVEL' || k === 'DEBUG') delete childEnv[k];
  }
  Object.assign(childEnv, env, {
    LOG_TEST_CONFIG: JSON.stringify({
      host,
      key: KEY,
      bearer: BEARER,
      clientSecret: CLIENT_SECRET,
      pathSecret: PATH_SECRET,
      caPath: CA_PATH,
      tag,
    }),
  });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT], { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Every secret the run could have leaked: key, SAS signatures sent, tokens, client secret. */
function secrets() {
  const sigs = authorizations
    .map((a) => /sig=([^&]+)/.exec(a)?.[1])
    .filter(Boolean)
    .flatMap((s) => [s, decodeURIComponent(s)]);
  assert.ok(sigs.length > 0, 'the fake hub saw SAS signatures');
  return [KEY, Buffer.from(KEY, 'base64').toString(), BEARER, CLIENT_SECRET, ISSUED, PATH_SECRET, ...sigs];
}

function assertNoSecrets(stderr) {
  for (const s of secrets()) assert.ok(!stderr.includes(s), `stderr must not contain ${s.slice(0, 6)}…`);
  assert.doesNotMatch(stderr, /authorization/i);
  assert.doesNotMatch(stderr, /SharedAccessSignature sr=/);
}

describe('AZURE_LOG_LEVEL / DEBUG', () => {
  test('info: request lines, statuses, durations and retry decisions; no secrets', async () => {
    const { code, stdout, stderr } = await run('info', { AZURE_LOG_LEVEL: 'info' });
    assert.equal(code, 0, stderr);
    assert.equal(stdout, 'done\n');
    const lines = stderr.trim().split('\n');
    assert.ok(lines.every((l) => l.startsWith('iothub-jobs:')), stderr);
    assert.match(stderr, /^iothub-jobs:info GET \/jobs\/v2\/cs-info\?api-version=2021-04-12 -> 503 Service Unavailable in \d+ ms \(attempt 1, request-id [0-9a-f-]{36}\)$/m);
    assert.match(stderr, /^iothub-jobs:warning GET \/jobs\/v2\/cs-info\?api-version=2021-04-12: retry 1 of 10 in \d+ ms after: try again$/m);
    assert.match(stderr, /^iothub-jobs:info GET \/jobs\/v2\/cs-info\?api-version=2021-04-12 -> 200 OK in \d+ ms \(attempt 2, /m);
    assert.match(stderr, /GET \/jobs\/v2\/bearer-info\?api-version=2021-04-12 -> 200 OK/);
    assert.match(stderr, /GET \/jobs\/v2\/native-info\?api-version=2021-04-12 -> 200 OK/);
    assert.match(stderr, /^iothub-jobs:info identity: POST https:\/\/127\.0\.0\.1:\d+\/tenant-info\/oauth2\/v2\.0\/token -> 200 in \d+ ms$/m);
    // The job id carried `sig=<secret>` (URL-encoded in the path): blanked.
    assert.match(stderr, /id-with-sig%3DREDACTED/);
    assert.doesNotMatch(stderr, /sending/, 'attempt starts are verbose only');
    assertNoSecrets(stderr);
  });

  test('DEBUG=iothub-jobs* is verbose: attempt starts too', async () => {
    const { code, stderr } = await run('debug', { DEBUG: 'express:*,iothub-jobs*' });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /^iothub-jobs:verbose GET \/jobs\/v2\/cs-debug\?api-version=2021-04-12 sending \(attempt 1, request-id /m);
    assert.match(stderr, /^iothub-jobs:info GET \/jobs\/v2\/cs-debug\?api-version=2021-04-12 -> 200 OK/m);
    assertNoSecrets(stderr);
  });

  test('AZURE_LOG_LEVEL=verbose equals DEBUG; warning shows retry decisions only', async () => {
    const verbose = await run('verbose', { AZURE_LOG_LEVEL: 'VERBOSE' });
    assert.match(verbose.stderr, /iothub-jobs:verbose .* sending/);
    assertNoSecrets(verbose.stderr);
    const warning = await run('warning', { AZURE_LOG_LEVEL: 'warning' });
    assert.equal(warning.code, 0, warning.stderr);
    const lines = warning.stderr.trim().split('\n');
    assert.ok(lines.length >= 4, warning.stderr);
    assert.ok(lines.every((l) => l.startsWith('iothub-jobs:warning ') && l.includes(': retry 1 of 10 in ')), warning.stderr);
    assertNoSecrets(warning.stderr);
  });

  test('nothing without the variables, with other DEBUG namespaces, or when excluded', async () => {
    for (const [tag, env] of [
      ['none', {}],
      ['other', { DEBUG: 'express:*' }],
      ['excluded', { DEBUG: '*,-iothub-jobs*' }],
      ['unknown', { AZURE_LOG_LEVEL: 'loud' }],
    ]) {
      const { code, stderr } = await run(tag, env);
      assert.equal(code, 0, stderr);
      assert.equal(stderr, '', `${tag}: ${stderr}`);
    }
  });
});
