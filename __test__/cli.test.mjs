// The `iothub-jobs` command line (lib/cli/), driven as a user drives it: the real binary
// (`node lib/cli/main.mjs`) in a child process against emulators started on port 0, reading its
// stdout, stderr and exit code; Ctrl-C as a real SIGINT; the progress bar in a real terminal
// (tmux, installed by scripts/ensure-tmux.sh when missing).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { JobClient } from '../lib/main.mjs';
import { startEmulator } from './helpers/emulator.mjs';
import { prerequisiteMissing } from './helpers/prerequisite.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(root, 'lib', 'cli', 'main.mjs');
const RUN = `${process.pid}-${Date.now()}`;
const BEARER = `cli-bearer.${RUN}`;
const IDENTITY_HEADER = `identity-header.${RUN}`;

let hub;
let tmp;
let client; // the test's own view of the hub

/** The child's environment: nothing from the developer's IoT Hub or proxy settings. */
function baseEnv(extra = {}) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (/^(IOTHUB_|IDENTITY_|AZURE_|NODE_EXTRA_CA_CERTS$|NODE_OPTIONS$)|_proxy$|_PROXY$/.test(k)) delete env[k];
  }
  return { ...env, ...extra };
}

const hubEnv = (target = hub) => ({ IOTHUB_CONNECTION_STRING: target.connectionString, IOTHUB_CA_FILE: target.caPath });

/** Runs the CLI to its end: `{ code, stdout, stderr }`. */
function cli(args, { env = hubEnv(), timeout = 20_000 } = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: baseEnv(env), timeout }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr });
    });
  });
}

/** Asserts the exit code, showing what the CLI said when it differs. */
function expectCode(result, code) {
  assert.equal(result.code, code, `exit ${result.code}, expected ${code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result;
}

/** An error as the CLI must print it: one line, `iothub-jobs: …`, no stack trace. */
function expectOneLineError(result, pattern) {
  const lines = result.stderr.trimEnd().split('\n');
  const last = lines.at(-1);
  assert.match(last, /^iothub-jobs: /);
  assert.match(last, pattern);
  assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
}

const json = (result) => JSON.parse(result.stdout);

async function requestsTo(pathname) {
  const { requests } = await hub.control('GET', 'requests');
  return requests.filter((r) => r.path === pathname);
}

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'iothub-jobs-cli-'));
  hub = await startEmulator({ devices: 5, args: ['--bearer-token', BEARER] });
  client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') });
});

after(async () => {
  await hub?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('help and usage errors', () => {
  test('--help lists every command, the auth and the exit codes; each command has its own --help', async () => {
    const general = expectCode(await cli(['--help']), 0);
    for (const command of ['schedule-method', 'schedule-twin', 'show', 'cancel', 'list', 'devices', 'wait', 'emulator']) {
      assert.match(general.stdout, new RegExp(`^  ${command} `, 'm'));
      const own = expectCode(await cli([command, '--help']), 0);
      assert.match(own.stdout, new RegExp(`^Usage: iothub-jobs ${command}`));
    }
    assert.match(general.stdout, /IOTHUB_CONNECTION_STRING/);
    assert.match(general.stdout, /130 interrupted/);
    const method = expectCode(await cli(['help', 'schedule-method']), 0).stdout;
    for (const option of ['--query-condition', '--start', '--ttl', '--method-name', '--method-payload', '--method-connect-timeout', '--method-response-timeout', '--wait', '--poll-interval', '--poll-duration', '--device-ids', '--waves', '--failure-threshold', '--max-concurrent-jobs', '--connection-string', '--hub', '--auth', '--ca', '--output']) {
      assert.ok(method.includes(option), `schedule-method --help shows ${option}`);
    }
    assert.match(expectCode(await cli(['schedule-twin', '-h']), 0).stdout, /--twin-patch JSON\|@FILE/);
  });

  test('bad command lines exit 2 with one line naming the problem, before anything is sent', async () => {
    const before = (await hub.control('GET', 'requests')).requests.length;
    const cases = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['show'], /a job id is required/],
      [['show', 'a', 'b'], /unexpected argument 'b'/],
      [['show', 'a', '--job-id', 'b'], /two different job ids/],
      [['list', '--colour'], /unknown option '--colour'/],
      [['list', '--output', 'yaml'], /--output must be table or json/],
      [['list', '--job-type', 'reboot'], /--job-type must be one of/],
      [['list', '--top', '0'], /--top must be a whole number at least 1/],
      [['schedule-method', '-q', '*'], /--method-name is required/],
      [['schedule-method', '--method-name', 'm'], /exactly one of --query-condition .* and --device-ids/],
      [['schedule-method', '-q', '*', '--method-name', 'm', '--ttl', 'soon'], /--ttl must be a whole number/],
      [['schedule-method', '-q', '*', '--method-name', 'm', '--start', 'tomorrow'], /--start must be an ISO 8601 time/],
      [['schedule-method', '-q', '*', '--method-name', 'm', '--method-payload', '{oops'], /--method-payload is not valid JSON/],
      [['schedule-method', '-q', '*', '--method-name', 'm', '--method-response-timeout', '1'], /--method-response-timeout must be a whole number 5\.\.300/],
      [['schedule-method', '-q', '*', '--method-name', 'm', '--wait', '--poll-interval', '-1'], /--poll-interval must be a number/],
      [['schedule-twin', '-q', '*'], /--twin-patch is required/],
      [['schedule-twin', '-q', '*', '--twin-patch', '{"status":"disabled"}'], /must be a JSON object with "tags"/],
      [['schedule-twin', '-q', '*', '--twin-patch', `@${path.join(tmp, 'missing.json')}`], /cannot read .*missing\.json \(ENOENT\)/],
      [['schedule-method', '--device-ids', 'a,a', '--method-name', 'm'], /device 'a' is listed twice/],
      [['schedule-method', '-q', '*', '--method-name', 'm', '--waves', '10,x'], /--waves must be positive whole numbers/],
      [['schedule-method', '-q', '*', '--method-name', 'm', '--failure-threshold', '2'], /--failure-threshold must be a number 0\.\.1/],
      [['show', 'j', '--hub', 'h.azure-devices.net'], /--hub needs --auth login or --auth identity/],
      [['show', 'j', '--auth', 'login'], /--auth login needs --hub/],
      [['show', 'j', '--auth', 'password'], /--auth must be one of key, login, identity/],
      [['show', 'j', '--ca', path.join(tmp, 'no-ca.pem')], /--ca: cannot read/],
      [['emulator', '--tier', 'S9'], /--tier must be one of S1, S2, S3/],
    ];
    for (const [args, pattern] of cases) {
      const result = expectCode(await cli(args), 2);
      expectOneLineError(result, pattern);
      assert.equal(result.stdout, '', `${args.join(' ')}: nothing on stdout`);
    }
    assert.equal((await hub.control('GET', 'requests')).requests.length, before, 'no request reached the hub');
  });
});

describe('jobs', () => {
  test('schedule-method sends what the options say and prints the new job (table, then json)', async () => {
    const payloadFile = path.join(tmp, 'payload.json');
    writeFileSync(payloadFile, JSON.stringify({ delay: 5, reason: 'cli' }));
    const table = expectCode(
      await cli(['schedule-method', '--job-id', 'cli-method-1', '-q', "tags.group = 'even'", '--method-name', 'reboot', '--method-payload', `@${payloadFile}`,
        '--method-connect-timeout', '7', '--method-response-timeout', '45', '--ttl', '120', '--start', '2026-01-02T03:04:05Z']),
      0,
    );
    assert.match(table.stdout, /^Job: +cli-method-1$/m);
    assert.match(table.stdout, /^Type: +scheduleDeviceMethod$/m);
    assert.match(table.stdout, /^Method: +reboot \(response timeout 45 s, connect timeout 7 s\)$/m);
    const [put] = await requestsTo('/jobs/v2/cli-method-1');
    assert.deepEqual(JSON.parse(put.body), {
      jobId: 'cli-method-1',
      type: 'scheduleDeviceMethod',
      cloudToDeviceMethod: { methodName: 'reboot', payload: { delay: 5, reason: 'cli' }, responseTimeoutInSeconds: 45, connectTimeoutInSeconds: 7 },
      queryCondition: "tags.group = 'even'",
      startTime: '2026-01-02T03:04:05.000Z',
      maxExecutionTimeInSeconds: 120,
    });

    const scheduled = json(expectCode(await cli(['schedule-method', '--job-id', 'cli-method-2', '-q', '*', '--method-name', 'ping', '-o', 'json']), 0));
    assert.equal(scheduled.jobId, 'cli-method-2');
    assert.equal(scheduled.cloudToDeviceMethod.methodName, 'ping');
    const body = JSON.parse((await requestsTo('/jobs/v2/cli-method-2'))[0].body);
    assert.equal(body.maxExecutionTimeInSeconds, 3600, 'the default --ttl is 3600 s, as in the Azure CLI');
    assert.ok(Math.abs(Date.parse(body.startTime) - Date.now()) < 60_000, 'the default --start is now');
    assert.equal(body.cloudToDeviceMethod.payload ?? null, null, 'no --method-payload: none sent');
  });

  test('a job id is generated when none is given', async () => {
    const job = json(expectCode(await cli(['schedule-method', '-q', '*', '--method-name', 'noop', '--output', 'json']), 0));
    assert.match(job.jobId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal((await client.getJob(job.jobId)).jobStatus.jobId, job.jobId);
  });

  test('schedule-method --wait: plain progress lines on a non-terminal stderr, the final job on stdout, exit 0', async () => {
    const result = expectCode(await cli(['schedule-method', '--job-id', 'cli-wait-1', '-q', '*', '--method-name', 'reboot', '--wait', '--poll-interval', '0.1']), 0);
    assert.match(result.stdout, /^Status: +completed$/m);
    assert.match(result.stdout, /^Devices: +5 \(succeeded 5, failed 0, running 0, pending 0\)$/m);
    assert.match(result.stderr, /^job cli-wait-1: completed, 5\/5 devices \(succeeded 5, failed 0, running 0, pending 0\)$/m);
    assert.doesNotMatch(result.stderr, /\r|\x1b\[/, 'no terminal control sequences when stderr is not a terminal');
  });

  test('schedule-twin --twin-patch @file --wait --output json: etag "*" added, twins patched, stdout is one JSON document', async () => {
    const patchFile = path.join(tmp, 'patch.json');
    writeFileSync(patchFile, JSON.stringify({ tags: { firmware: 'cli-2.0' }, properties: { desired: { interval: 30 } } }));
    const result = expectCode(
      await cli(['schedule-twin', '--job-id', 'cli-twin-1', '-q', "tags.group = 'odd'", '--twin-patch', `@${patchFile}`, '--wait', '--poll-interval', '0.1', '-o', 'json']),
      0,
    );
    const job = json(result);
    assert.equal(job.status, 'completed');
    assert.equal(job.deviceJobStatistics.succeededCount, 2);
    const body = JSON.parse((await requestsTo('/jobs/v2/cli-twin-1'))[0].body);
    assert.deepEqual(body.updateTwin, { etag: '*', tags: { firmware: 'cli-2.0' }, properties: { desired: { interval: 30 } } });
    const { devices } = await hub.control('GET', 'devices');
    const patched = devices.filter((d) => d.tags.firmware === 'cli-2.0').map((d) => d.deviceId);
    assert.deepEqual(patched, ['device-0001', 'device-0003']);
    assert.equal(devices.find((d) => d.deviceId === 'device-0001').desired.interval, 30);
    expectCode(await cli(['schedule-twin', '--job-id', 'cli-twin-2', '-q', '*', '--twin-patch', '{"etag":"*","tags":{"x":1}}']), 0);
    // An etag in the patch is sent as given; the hub takes only '*' for a twin job.
    const refused = expectCode(await cli(['schedule-twin', '--job-id', 'cli-twin-3', '-q', '*', '--twin-patch', '{"etag":"AAAA","tags":{"x":1}}']), 1);
    expectOneLineError(refused, /etag/);
    assert.equal(JSON.parse((await requestsTo('/jobs/v2/cli-twin-3'))[0].body).updateTwin.etag, 'AAAA');
  });

  test('show and list (filters, --top), as tables and as JSON', async () => {
    const shown = json(expectCode(await cli(['show', 'cli-wait-1', '-o', 'json']), 0));
    assert.equal(shown.status, 'completed');
    assert.equal(shown.deviceJobStatistics.deviceCount, 5);
    assert.match(expectCode(await cli(['show', '--job-id', 'cli-wait-1']), 0).stdout, /^Devices: +5 \(succeeded 5/m);

    const twins = json(expectCode(await cli(['list', '--job-type', 'scheduleUpdateTwin', '-o', 'json']), 0));
    assert.deepEqual(twins.map((j) => j.jobId), ['cli-twin-1', 'cli-twin-2']);
    const all = json(expectCode(await cli(['list', '-o', 'json', '--top', '-1']), 0));
    assert.ok(all.length >= 6);
    const top2 = json(expectCode(await cli(['list', '-o', 'json', '--top', '2']), 0));
    assert.deepEqual(top2.map((j) => j.jobId), all.slice(0, 2).map((j) => j.jobId));
    const completedMethods = json(expectCode(await cli(['list', '--job-type', 'scheduleDeviceMethod', '--job-status', 'completed', '-o', 'json']), 0));
    assert.ok(completedMethods.length > 0 && completedMethods.every((j) => j.type === 'scheduleDeviceMethod' && j.status === 'completed'));

    const table = expectCode(await cli(['list', '--job-type', 'scheduleUpdateTwin']), 0).stdout.trimEnd().split('\n');
    assert.match(table[0], /^JOB +TYPE +STATUS +START +DEVICES +SUCCEEDED +FAILED$/);
    assert.match(table[1], /^cli-twin-1 +scheduleUpdateTwin +completed +\S+ +2 +2 +0$/);
    assert.equal(table.length, 3);
    assert.equal(expectCode(await cli(['list', '--job-status', 'failed']), 0).stdout, 'no jobs\n');
  });

  test('devices: the summary by status and outcome, every device with --all (table, JSON lines, --status filter)', async () => {
    await hub.control('PUT', 'devices/device-0002/method', { offline: true });
    await hub.control('PUT', 'devices/device-0004/method', { status: 500, payload: { error: 'busy' } });
    try {
      expectCode(await cli(['schedule-method', '--job-id', 'cli-devices-1', '-q', '*', '--method-name', 'reboot', '--wait', '--poll-interval', '0.1']), 0);
    } finally {
      await hub.control('PUT', 'devices/*/method', { offline: false, status: 200, payload: { ok: true } });
    }
    const summary = json(expectCode(await cli(['devices', 'cli-devices-1', '-o', 'json']), 0));
    assert.deepEqual(
      { ...summary, jobStatistics: undefined },
      { jobId: 'cli-devices-1', jobStatus: 'completed', deviceCount: 5, byStatus: { completed: 4, failed: 1 }, byOutcome: { 'status 200': 3, 'status 500': 1, DeviceNotOnline: 1 }, jobStatistics: undefined },
    );
    const human = expectCode(await cli(['devices', 'cli-devices-1']), 0).stdout;
    assert.match(human, /^Job cli-devices-1: completed, 5 devices$/m);
    assert.match(human, /^DeviceNotOnline +1$/m);

    const lines = expectCode(await cli(['devices', 'cli-devices-1', '--all', '-o', 'json']), 0).stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 5, 'one JSON line per device');
    assert.equal(lines.find((r) => r.deviceId === 'device-0002').error.code, 'DeviceNotOnline');
    assert.deepEqual(lines.find((r) => r.deviceId === 'device-0004').outcome.deviceMethodResponse, { status: 500, payload: { error: 'busy' } });

    const failed = expectCode(await cli(['devices', 'cli-devices-1', '--all', '--status', 'failed']), 0).stdout.trimEnd().split('\n');
    assert.match(failed[0], /^DEVICE +STATUS +OUTCOME +DETAIL$/);
    assert.equal(failed.length, 2);
    assert.match(failed[1], /^device-0002 +failed +DeviceNotOnline +\S/);
  });

  test('cancel, and wait on failed / cancelled / unknown jobs: exit codes 3, 4, 5 with one-line messages', async () => {
    expectCode(await cli(['schedule-method', '--job-id', 'cli-future-1', '-q', '*', '--method-name', 'm', '--start', '2099-01-01T00:00:00Z']), 0);
    const cancelled = json(expectCode(await cli(['cancel', 'cli-future-1', '-o', 'json']), 0));
    assert.equal(cancelled.status, 'cancelled');
    const waitCancelled = expectCode(await cli(['wait', 'cli-future-1', '--poll-interval', '0.1']), 4);
    assert.match(waitCancelled.stdout, /^Status: +cancelled$/m);
    assert.match(waitCancelled.stderr, /^job cli-future-1 cancelled$/m);

    const failed = expectCode(await cli(['schedule-method', '--job-id', 'cli-bad-query', '-q', 'tags.x = = 1', '--method-name', 'm', '--wait', '--poll-interval', '0.1']), 3);
    assert.match(failed.stdout, /^Status: +failed$/m);
    assert.match(failed.stderr, /^job cli-bad-query failed: The query condition 'tags\.x = = 1' is invalid/m);

    for (const args of [['show', 'cli-no-such-job'], ['cancel', 'cli-no-such-job'], ['wait', 'cli-no-such-job'], ['devices', 'cli-no-such-job']]) {
      const result = expectCode(await cli(args), 5);
      expectOneLineError(result, /cli-no-such-job/);
    }
    // A failed schedule (the id is taken) is an ordinary error, exit 1.
    expectOneLineError(expectCode(await cli(['schedule-method', '--job-id', 'cli-wait-1', '-q', '*', '--method-name', 'm']), 1), /already exists|JobAlreadyExists/i);
  });

  test('wait --poll-duration: exit 7 and the job goes on', async () => {
    expectCode(await cli(['schedule-method', '--job-id', 'cli-future-2', '-q', '*', '--method-name', 'm', '--start', '2099-01-01T00:00:00Z']), 0);
    const started = Date.now();
    const result = expectCode(await cli(['wait', 'cli-future-2', '--poll-interval', '0.1', '--poll-duration', '0.5']), 7);
    assert.ok(Date.now() - started < 10_000);
    expectOneLineError(result, /job cli-future-2 is still scheduled after 0\.5 s \(--poll-duration\); it goes on/);
    assert.equal((await client.getJob('cli-future-2')).jobStatus.status, 'scheduled');
  });

  test('Ctrl-C while waiting: stops waiting, says the job goes on, exit 130; the job is not cancelled', async () => {
    expectCode(await cli(['schedule-method', '--job-id', 'cli-future-3', '-q', '*', '--method-name', 'm', '--start', '2099-01-01T00:00:00Z']), 0);
    const child = spawn(process.execPath, [MAIN, 'wait', 'cli-future-3', '--poll-interval', '0.1'], { env: baseEnv(hubEnv()), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    const polling = new Promise((resolve) => {
      child.stderr.setEncoding('utf8').on('data', (d) => {
        stderr += d;
        if (stderr.includes('job cli-future-3: scheduled')) resolve();
      });
    });
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
    await polling;
    const cancelsBefore = (await requestsTo('/jobs/v2/cli-future-3/cancel')).length;
    child.kill('SIGINT');
    assert.equal(await exited, 130);
    assert.equal(stdout, '');
    assert.match(stderr, /^iothub-jobs: stopped waiting; job cli-future-3 goes on \(cancel it with: iothub-jobs cancel cli-future-3\)$/m);
    assert.equal((await requestsTo('/jobs/v2/cli-future-3/cancel')).length, cancelsBefore, 'no cancel was sent');
    assert.equal((await client.getJob('cli-future-3')).jobStatus.status, 'scheduled');
  });
});

describe('authentication', () => {
  test('no credentials, a malformed connection string, a wrong key: exit 6, one line, no key in it', async () => {
    expectOneLineError(expectCode(await cli(['show', 'x'], { env: {} }), 6), /no credentials: set IOTHUB_CONNECTION_STRING/);
    expectOneLineError(expectCode(await cli(['show', 'x', '--connection-string', 'not a connection string'], { env: {} }), 6), /invalid connection string/);
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    const cs = hub.connectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${wrongKey}`);
    const result = expectCode(await cli(['show', 'cli-wait-1', '--connection-string', cs, '--ca', hub.caPath], { env: {} }), 6);
    expectOneLineError(result, /Unauthorized/i);
    const realKey = /SharedAccessKey=([^;]+)/.exec(hub.connectionString)[1];
    for (const secret of [wrongKey, realKey]) assert.ok(!result.stderr.includes(secret), 'no key in the message');
    assert.doesNotMatch(result.stderr, /sig=(?!<redacted>)/);
  });

  test('--connection-string wins over IOTHUB_CONNECTION_STRING', async () => {
    const env = { IOTHUB_CONNECTION_STRING: 'HostName=nowhere.invalid;SharedAccessKeyName=k;SharedAccessKey=a2V5', IOTHUB_CA_FILE: hub.caPath };
    expectCode(await cli(['show', 'cli-wait-1', '--connection-string', hub.connectionString], { env }), 0);
  });

  test('--hub HOST --auth login: the token of the Azure CLI found on PATH', async () => {
    const bin = mkdtempSync(path.join(tmp, 'az-'));
    const token = JSON.stringify({ accessToken: BEARER, expiresOn: '2099-01-01 00:00:00.000000', expires_on: Math.floor(Date.now() / 1000) + 3600, tokenType: 'Bearer' });
    writeFileSync(path.join(bin, 'az'), `#!/bin/sh\ncat <<'EOF'\n${token}\nEOF\n`);
    chmodSync(path.join(bin, 'az'), 0o755);
    const env = { PATH: `${bin}:${process.env.PATH}`, IOTHUB_CA_FILE: hub.caPath };
    const job = json(expectCode(await cli(['show', 'cli-wait-1', '--hub', hub.hostName, '--auth', 'login', '-o', 'json'], { env }), 0));
    assert.equal(job.status, 'completed');
    const [get] = (await requestsTo('/jobs/v2/cli-wait-1')).slice(-1);
    assert.equal(get.headers.authorization, `Bearer ${BEARER}`);

    writeFileSync(path.join(bin, 'az'), `#!/bin/sh\necho "ERROR: Please run 'az login' to setup account." >&2\nexit 1\n`);
    expectOneLineError(expectCode(await cli(['show', 'cli-wait-1', '--hub', hub.hostName, '--auth', 'login'], { env }), 6), /AzureCliCredential.*az login/);
  });

  test('--hub HOST --auth identity: a managed identity endpoint (IDENTITY_ENDPOINT + IDENTITY_HEADER)', async () => {
    const seen = [];
    const server = http.createServer((req, res) => {
      const url = new URL(req.url, 'http://x');
      seen.push(url.searchParams.get('client_id'));
      const ok = req.headers['x-identity-header'] === IDENTITY_HEADER;
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify(ok ? { access_token: BEARER, expires_on: String(Math.floor(Date.now() / 1000) + 3600), resource: url.searchParams.get('resource'), token_type: 'Bearer' } : { error: 'no' }));
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const env = { IDENTITY_ENDPOINT: `http://127.0.0.1:${server.address().port}/msi/token`, IDENTITY_HEADER, IOTHUB_CA_FILE: hub.caPath };
      expectCode(await cli(['show', 'cli-wait-1', '--hub', hub.hostName, '--auth', 'identity', '--client-id', 'user-assigned'], { env }), 0);
      assert.deepEqual(seen, ['user-assigned']);
      const denied = expectCode(await cli(['show', 'cli-wait-1', '--hub', hub.hostName, '--auth', 'identity'], { env: { ...env, IDENTITY_HEADER: 'wrong' } }), 6);
      expectOneLineError(denied, /Credential/);
      assert.ok(!denied.stderr.includes(IDENTITY_HEADER) && !denied.stderr.includes('wrong'), 'the identity header is not shown');
    } finally {
      server.close();
    }
  });
});

describe('fleet calls (--device-ids, --waves)', () => {
  test('--device-ids @file (one id per line) calls exactly those devices', async () => {
    const file = path.join(tmp, 'ids.txt');
    writeFileSync(file, 'device-0000\ndevice-0003\n\ndevice-0004\n');
    const result = json(expectCode(await cli(['schedule-method', '--job-id', 'cli-fleet-1', '--device-ids', `@${file}`, '--method-name', 'fleet-reboot', '--poll-interval', '0.1', '-o', 'json']), 0));
    assert.equal(result.status, 'completed');
    assert.equal(result.deviceCount, 3);
    assert.equal(result.succeededCount, 3);
    const { devices } = await hub.control('GET', 'devices');
    assert.deepEqual(devices.filter((d) => d.lastMethod?.methodName === 'fleet-reboot').map((d) => d.deviceId), ['device-0000', 'device-0003', 'device-0004']);
  });

  test('--device-ids as a JSON array with --waves: one wave per size, the last size repeating', async () => {
    const file = path.join(tmp, 'ids.json');
    writeFileSync(file, JSON.stringify(['device-0000', 'device-0001', 'device-0002', 'device-0003', 'device-0004']));
    const result = json(
      expectCode(await cli(['schedule-twin', '--job-id', 'cli-fleet-2', '--device-ids', `@${file}`, '--waves', '1,2', '--twin-patch', '{"tags":{"wave":"yes"}}', '--poll-interval', '0.1', '-o', 'json']), 0),
    );
    assert.equal(result.status, 'completed');
    assert.deepEqual(result.waves.map((w) => w.deviceCount), [1, 2, 2]);
    const { devices } = await hub.control('GET', 'devices');
    assert.equal(devices.filter((d) => d.tags.wave === 'yes').length, 5);
  });

  test('--failure-threshold stops the rollout after a failing wave: exit 3, the rest not attempted', async () => {
    await hub.control('PUT', 'devices/device-0000/method', { offline: true });
    try {
      const result = await cli(['schedule-method', '--job-id', 'cli-fleet-3', '--device-ids', 'device-0000,device-0001,device-0002', '--waves', '1', '--failure-threshold', '0', '--method-name', 'm', '--poll-interval', '0.1', '-o', 'json']);
      expectCode(result, 3);
      const doc = json(result);
      assert.equal(doc.status, 'stopped');
      assert.deepEqual(doc.notAttempted, ['device-0001', 'device-0002']);
    } finally {
      await hub.control('PUT', 'devices/*/method', { offline: false });
    }
  });
});

describe('emulator command', () => {
  test('starts the emulator, prints the export lines that reach it, stops on Ctrl-C', async () => {
    const child = spawn(process.execPath, [MAIN, 'emulator', '--devices', '3'], { env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
    let stdout = '';
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no export lines: ${stdout}`)), 15_000);
      child.stdout.setEncoding('utf8').on('data', (d) => {
        stdout += d;
        if (/^Then, /m.test(stdout)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    try {
      assert.match(stdout, /^iothub-emulator is listening on 127\.0\.0\.1:\d+ with 3 simulated devices\. Ctrl-C stops it\.$/m);
      const cs = /^export IOTHUB_CONNECTION_STRING='([^']+)'$/m.exec(stdout)[1];
      const ca = /^export IOTHUB_CA_FILE='([^']+)'$/m.exec(stdout)[1];
      const job = json(expectCode(await cli(['schedule-method', '-q', '*', '--method-name', 'reboot', '--wait', '--poll-interval', '0.1', '-o', 'json'], { env: { IOTHUB_CONNECTION_STRING: cs, IOTHUB_CA_FILE: ca } }), 0));
      assert.equal(job.deviceJobStatistics.succeededCount, 3);
    } finally {
      child.kill('SIGINT');
    }
    assert.equal(await exited, 0);
  });

  test('--output json prints the ready line as one JSON line', async () => {
    const child = spawn(process.execPath, [MAIN, 'emulator', '--output', 'json', '--tier', 'S1'], { env: baseEnv(), stdio: ['ignore', 'pipe', 'ignore'] });
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
    const line = await new Promise((resolve) => {
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (d) => {
        text += d;
        if (text.includes('\n')) resolve(text.split('\n')[0]);
      });
    });
    const ready = JSON.parse(line);
    assert.match(ready.connectionString, /^HostName=127\.0\.0\.1:\d+;SharedAccessKeyName=iothubowner;SharedAccessKey=/);
    assert.equal(readFileSync(ready.caPath, 'utf8').includes('BEGIN CERTIFICATE'), true);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  });
});

describe('terminal (tmux)', () => {
  let tmuxMissing = false;
  let slowHub;
  const socket = `iothub-jobs-cli-${RUN}`;
  const tmux = (args, env) =>
    new Promise((resolve, reject) =>
      execFile('tmux', ['-L', socket, ...args], { env: env ?? process.env }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );

  before(async () => {
    const ensure = await new Promise((resolve) =>
      execFile('sh', [path.join(root, 'scripts', 'ensure-tmux.sh')], { timeout: 240_000 }, (err, stdout) => resolve({ ok: !err, reason: stdout.trim() })),
    );
    if (!ensure.ok) {
      tmuxMissing = `tmux unavailable: ${ensure.reason}`;
      return;
    }
    // Four devices answering after 1.0, 1.6, 2.2 and 2.8 s: the bar has time to move.
    slowHub = await startEmulator({ devices: 4 });
    for (let i = 0; i < 4; i += 1) await slowHub.control('PUT', `devices/device-000${i}/method`, { delayMs: 1000 + i * 600 });
  });

  after(async () => {
    if (!tmuxMissing) await tmux(['kill-server']).catch(() => {});
    await slowHub?.stop();
  });

  test('wait on a terminal: one progress bar redrawn in place with device counts, then the job', async (t) => {
    if (tmuxMissing) return prerequisiteMissing(t, tmuxMissing);
    const slowClient = JobClient.fromConnectionString(slowHub.connectionString, { ca: readFileSync(slowHub.caPath, 'utf8') });
    await slowClient.scheduleDeviceMethod('cli-slow', '*', { methodName: 'reboot' });
    const command = `'${process.execPath}' '${MAIN}' wait cli-slow --poll-interval 0.1; echo "EXIT=$?"; sleep 60`;
    const env = baseEnv({ ...hubEnv(slowHub), TERM: 'xterm' });
    delete env.TMUX; // a fresh server of our own, even when the suite itself runs inside tmux
    await tmux(['new-session', '-d', '-s', 'cli', '-x', '200', '-y', '30', command], env);
    const screens = [];
    const deadline = Date.now() + 20_000;
    let screen = '';
    while (!/EXIT=\d+/.test(screen) && Date.now() < deadline) {
      screen = await tmux(['capture-pane', '-p', '-t', 'cli']);
      screens.push(screen);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.match(screen, /^EXIT=0$/m, `the wait ended with 0:\n${screen}`);
    const partial = screens.find((s) => /job cli-slow running \[#+\.+\] [123]\/4 devices \(succeeded [123], failed 0, running \d, pending \d\)/.test(s));
    assert.ok(partial, `a half-filled bar was on the screen at some point; last screen:\n${screen}`);
    const progressLines = screen.split('\n').filter((l) => /\/4 devices/.test(l));
    assert.equal(progressLines.length, 1, `the bar is redrawn on one line, not repeated:\n${screen}`);
    assert.match(progressLines[0], /^job cli-slow completed \[#{30}\] 4\/4 devices \(succeeded 4, failed 0, running 0, pending 0\) \d+s$/);
    assert.match(screen, /^Status: +completed$/m);
  });
});
