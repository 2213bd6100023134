// Windows x64, run here under Wine (`npm run setup:platforms` installs Wine, MinGW-w64 and the
// official Windows node.exe of the host's version; `npm run build:platforms win32-x64-msvc` builds
// the addon and iothub-emulator.exe):
//   - the official node.exe loads the package from a node_modules laid out as npm installs it on
//     Windows (main package + iothub-jobs-win32-x64-msvc) and runs a jobs flow against the
//     emulator running natively: promise and callback forms, JobNotFoundError, abort;
//   - the command line (`show`, `wait`) in node.exe, IOTHUB_CA_FILE a Windows path, and Ctrl-C;
//   - iothub-emulator.exe under Wine serves a method job scheduled by the native client.
// Skipped, saying what to run, when Wine, node.exe or the Windows builds are absent.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { startEmulator } from './helpers/emulator.mjs';
import { PLATFORMS, binaryName } from '../scripts/platforms/targets.mjs';
import { binaryPath, checkPlatform } from '../scripts/platforms/check.mjs';
import { NODE_EXE, WINEPREFIX, runWindowsNode, spawnWine, wineReady, winePath } from '../scripts/platforms/wine.mjs';
import { EMULATOR_EXE, MINGW } from '../scripts/platforms/windows.mjs';
import { prerequisite } from './helpers/prerequisite.mjs';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const win32 = PLATFORMS.find((p) => p.name === 'win32-x64-msvc');
const SETUP_FIRST = 'no Wine or Windows node.exe: run `npm run setup:platforms` (root) first';
const BUILD_FIRST = 'no Windows build: run `npm run build:platforms win32-x64-msvc` first';
const addonSkip = prerequisite(!wineReady() ? SETUP_FIRST : !existsSync(binaryPath(win32)) && BUILD_FIRST);
const emulatorSkip = prerequisite(!wineReady() ? SETUP_FIRST : !existsSync(EMULATOR_EXE) && BUILD_FIRST);
const DEVICES = 3;

let work;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'iothub-jobs-windows-'));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const lastJson = (stdout) => JSON.parse(stdout.trim().split('\n').pop());
const explain = (result) => `exit ${result.code ?? result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;

test('check:platforms rejects a DLL that is no addon and needs the MinGW libwinpthread DLL', { skip: prerequisite(spawnSync(`${MINGW}-gcc`, ['--version']).status !== 0 && SETUP_FIRST) }, () => {
  const source = path.join(work, 'not-an-addon.c');
  writeFileSync(source, '#include <pthread.h>\n__declspec(dllexport) unsigned long long self(void) { return (unsigned long long)pthread_self(); }\n');
  const dll = path.join(work, 'not-an-addon.dll');
  execFileSync(`${MINGW}-gcc`, ['-shared', '-o', dll, source, '-lwinpthread']);
  assert.throws(() => checkPlatform(win32, dll), (err) => {
    assert.match(err.message, /no napi_register_module_v1 export: not a Node addon/);
    assert.match(err.message, /does not import GetProcAddress/);
    assert.match(err.message, /needs libraries beyond the C library: libwinpthread-1\.dll/);
    return true;
  });
});

describe('the win32 addon in the official node.exe under Wine', { skip: addonSkip, timeout: 600_000 }, () => {
  let hub;
  let app;
  let env;
  before(async () => {
    hub = await startEmulator({ devices: DEVICES });
    // What `npm install iothub-jobs` lays out on Windows: the package's published files and the
    // platform package its loader asks for on node.exe.
    app = path.join(work, 'app');
    const main = path.join(app, 'node_modules', 'iothub-jobs');
    for (const file of ['package.json', 'index.js', 'lib']) cpSync(path.join(ROOT, file), path.join(main, file), { recursive: true });
    cpSync(path.join(ROOT, 'npm', win32.name), path.join(app, 'node_modules', `iothub-jobs-${win32.name}`), { recursive: true });
    cpSync(path.join(ROOT, '__test__', 'windows', 'flow.cjs'), path.join(app, 'flow.cjs'));
    env = { HUB_CS: hub.connectionString, HUB_CA: winePath(hub.caPath), IOTHUB_CONNECTION_STRING: hub.connectionString, IOTHUB_CA_FILE: winePath(hub.caPath) };
  });
  after(() => hub?.stop());

  const cli = (args, options) => runWindowsNode([winePath(path.join(app, 'node_modules', 'iothub-jobs', 'lib', 'cli', 'main.mjs')), ...args], { cwd: app, env, ...options });

  test('require loads iothub-jobs-win32-x64-msvc; a method job, both call forms, JobNotFoundError, abort', async () => {
    const result = await runWindowsNode([winePath(path.join(app, 'flow.cjs'))], { cwd: app, env });
    assert.equal(result.code, 0, explain(result));
    const out = lastJson(result.stdout);
    assert.equal(out.platform, 'win32');
    assert.equal(out.arch, 'x64');
    assert.deepEqual(out.natives, [`${winePath(app)}\\node_modules\\iothub-jobs-${win32.name}\\${binaryName(win32)}`]);
    assert.equal(out.scheduledStatus, 200);
    assert.equal(out.status, 'completed');
    assert.equal(out.succeeded, DEVICES);
    assert.deepEqual(out.callback, { status: 'completed', method: 'reboot', statusCode: 200 });
    assert.deepEqual(out.notFound, { isJobNotFoundError: true, name: 'JobNotFoundError' });
    assert.deepEqual(out.abort, { name: 'AbortError', polled: true, after: 'scheduled' });
    // The hub saw the job the Windows process made, and ran it on every device.
    const { JobClient } = require('..');
    const native = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') });
    const { jobStatus } = await native.getJob(out.jobId);
    assert.equal(jobStatus.cloudToDeviceMethod.methodName, 'reboot');
    assert.equal(jobStatus.deviceJobStatistics.succeededCount, DEVICES);
  });

  test('iothub-jobs schedule-method --wait, show and wait (IOTHUB_CA_FILE a Windows path)', async () => {
    const scheduled = await cli(['schedule-method', '--job-id', 'cli-win', '--method-name', 'reboot', '--query-condition', '*', '--wait', '--poll-interval', '0.1', '--output', 'json']);
    assert.equal(scheduled.code, 0, explain(scheduled));
    assert.equal(JSON.parse(scheduled.stdout).status, 'completed');
    const shown = await cli(['show', 'cli-win', '--output', 'json']);
    assert.equal(shown.code, 0, explain(shown));
    const job = JSON.parse(shown.stdout);
    assert.equal(job.jobId, 'cli-win');
    assert.equal(job.deviceJobStatistics.succeededCount, DEVICES);
    const waited = await cli(['wait', 'cli-win', '--poll-interval', '0.1', '--output', 'json']);
    assert.equal(waited.code, 0, explain(waited));
    assert.equal(JSON.parse(waited.stdout).status, 'completed');
    const missing = await cli(['show', 'no-such-job']);
    assert.equal(missing.code, 5, explain(missing));
    assert.match(missing.stderr, /^iothub-jobs: .*no-such-job/m);
    const badCa = await cli(['show', 'cli-win'], { env: { ...env, IOTHUB_CA_FILE: 'Z:\\no\\such\\ca.pem' } });
    assert.equal(badCa.code, 2, explain(badCa));
    assert.match(badCa.stderr, /IOTHUB_CA_FILE: cannot read Z:\\no\\such\\ca\.pem \(ENOENT\)/);
  });

  test('Ctrl-C (SIGINT, which Wine turns into CTRL_C_EVENT) stops `wait`: exit 130, the job goes on', async () => {
    const { JobClient } = require('..');
    const native = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') });
    await native.scheduleDeviceMethod('cli-win-later', '*', { methodName: 'reboot' }, new Date(Date.now() + 3_600_000));
    const { child, exited, output } = await spawnWine(NODE_EXE, [winePath(path.join(app, 'node_modules', 'iothub-jobs', 'lib', 'cli', 'main.mjs')), 'wait', 'cli-win-later', '--poll-interval', '0.1'], { cwd: app, env });
    // Wait until it polls (its progress line names the job), then press Ctrl-C.
    for (const deadline = Date.now() + 60_000; !(await output()).stderr.includes('cli-win-later'); await sleep(100)) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `wait never showed progress: ${JSON.stringify(await output())}`);
    }
    child.kill('SIGINT');
    const result = await exited;
    assert.equal(result.code, 130, explain(result));
    assert.match(result.stderr, /stopped waiting; job cli-win-later goes on/);
    assert.equal((await native.getJob('cli-win-later')).jobStatus.status, 'scheduled');
  });
});

describe('iothub-emulator.exe under Wine', { skip: emulatorSkip, timeout: 300_000 }, () => {
  let emulator;
  let ready;
  before(async () => {
    emulator = await spawnWine(EMULATOR_EXE, ['--port', '0', '--devices', String(DEVICES)]);
    for (const deadline = Date.now() + 120_000; !(await emulator.output()).stdout.includes('\n'); await sleep(100)) {
      if (Date.now() > deadline || emulator.child.exitCode !== null) throw new Error(`no ready line: ${JSON.stringify(await emulator.output())}`);
    }
    ready = lastJson((await emulator.output()).stdout);
  });
  after(async () => {
    if (emulator?.child.exitCode === null) emulator.child.kill('SIGKILL');
    await emulator?.exited;
  });

  test('serves a method job scheduled and waited for by the native client', async () => {
    // The ready line is the Windows process's: its CA path is a Windows one.
    const ca = readFileSync(unixPath(ready.caPath), 'utf8');
    const { JobClient } = require('..');
    const client = JobClient.fromConnectionString(ready.connectionString, { ca });
    await client.scheduleDeviceMethod('from-linux', '*', { methodName: 'reboot', payload: { to: 'wine' } });
    const done = await client.waitForJob('from-linux', { pollIntervalMs: 50, timeoutMs: 60_000 });
    assert.equal(done.status, 'completed');
    assert.equal(done.deviceJobStatistics.succeededCount, DEVICES);
    const rows = [];
    for await (const row of client.listDeviceJobs('from-linux')) rows.push(row);
    assert.equal(rows.length, DEVICES);
  });

  test('serves a method job from the native client to a real device (azure-iot-device over MQTT)', async () => {
    const { Client: DeviceClient } = require('azure-iot-device');
    const { SharedAccessSignature } = require('azure-iot-common');
    const { Mqtt } = require('azure-iot-device-mqtt');
    const ca = readFileSync(unixPath(ready.caPath), 'utf8');
    // device-0000 exists (--devices); the emulator admits a device token signed with the
    // iothubowner key (crates/emulator/README.md, Devices over MQTT).
    const ownerKey = /SharedAccessKey=([^;]+)/.exec(ready.connectionString)[1];
    const sas = SharedAccessSignature.create(`${ready.hostName}/devices/device-0000`, 'iothubowner', ownerKey, Math.floor(Date.now() / 1000) + 3600).toString();
    const device = DeviceClient.fromConnectionString(`HostName=${ready.hostName};DeviceId=device-0000;SharedAccessSignature=${sas}`, Mqtt);
    await device.setOptions({ ca });
    await device.open();
    try {
      device.onDeviceMethod('reboot', (request, response) => response.send(201, { answeredBy: 'sdk', got: request.payload }, () => {}));
      const { JobClient } = require('..');
      const client = JobClient.fromConnectionString(ready.connectionString, { ca });
      await client.scheduleDeviceMethod('to-sdk', "deviceId = 'device-0000'", { methodName: 'reboot', payload: { n: 7 }, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 10 });
      const done = await client.waitForJob('to-sdk', { pollIntervalMs: 50, timeoutMs: 60_000 });
      assert.equal(done.status, 'completed');
      const rows = [];
      for await (const row of client.listDeviceJobs('to-sdk')) rows.push(row);
      assert.deepEqual(rows.map((row) => row.outcome.deviceMethodResponse), [{ status: 201, payload: { answeredBy: 'sdk', got: { n: 7 } } }]);
    } finally {
      await device.close();
    }
  });

  test('Ctrl-C (SIGINT, a CTRL_C_EVENT in Wine) stops it: exit 0', async () => {
    emulator.child.kill('SIGINT');
    const timer = setTimeout(() => emulator.child.kill('SIGKILL'), 10_000);
    const result = await emulator.exited;
    clearTimeout(timer);
    assert.equal(result.code, 0, explain(result));
  });
});

/** Where a Windows path of a program under Wine is here: Z: is `/`, C: the prefix's drive_c. */
function unixPath(windowsPath) {
  const m = /^(?:\\\\\?\\)?([A-Za-z]):\\(.*)$/.exec(windowsPath);
  assert.ok(m, `not a Windows path: ${windowsPath}`);
  const root = m[1].toUpperCase() === 'Z' ? '/' : path.join(WINEPREFIX, 'drive_c');
  return path.join(root, ...m[2].split('\\'));
}
