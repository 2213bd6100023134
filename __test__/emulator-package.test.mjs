// The `iothub-emulator` npm package as its users get it: `npm run pack:all`'s tarballs (here into a
// temporary folder) of iothub-jobs and iothub-emulator, unmodified, installed with no network into
// a fresh folder, their platform packages served from pack:all's tarballs as a registry would
// serve them (helpers/packages.mjs installFromTarballs), then used there:
//   - npm installs only the linux-x64 platform package (static musl) and its binary is the one run;
//   - the bin prints its ready line; `exec` passes the hub to a command and its exit code back;
//   - startEmulator() from CommonJS and from ESM: a job from iothub-jobs served to a device SDK
//     client made with createDevice(); two hubs in one process are independent; stop() and the
//     process exits on its own; a SIGKILLed parent leaves no emulator running;
//   - `iothub-jobs emulator` runs it, and says `npm i -D iothub-emulator` when it is missing;
//   - the README's Jest recipe (globalSetup/globalTeardown) runs as written, with the pinned Jest;
//   - the one-line errors when no binary fits (--omit=optional, another platform's node_modules);
//   - the linux-arm64 binary serves a job under qemu-aarch64.
// Needs the musl builds (`node scripts/platforms/ci.mjs build` makes them as root); skipped, saying
// so, without them.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { packAll } from '../scripts/pack-all.mjs';
import { EMULATOR_PLATFORMS } from '../scripts/platforms/targets.mjs';
import { checkEmulator, emulatorBinaryPath } from '../scripts/platforms/check.mjs';
import { cleanEnv, gone, installFromTarballs, lastJson, packStandIn, run, runIn } from './helpers/packages.mjs';
import { prerequisite } from './helpers/prerequisite.mjs';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const x64 = EMULATOR_PLATFORMS.find((p) => p.name === 'linux-x64');
const arm64 = EMULATOR_PLATFORMS.find((p) => p.name === 'linux-arm64');
const BUILD_FIRST = 'run `npm run setup:platforms && npm run build:platforms emulator-linux-x64 emulator-linux-arm64` first';
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';
const skipAll = !onLinuxX64 ? 'the installed package is checked on linux-x64' : prerequisite(!existsSync(emulatorBinaryPath(x64)) && BUILD_FIRST);
const JEST = path.join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js');
const hasQemu = spawnSync('qemu-aarch64', ['--version'], { stdio: 'ignore' }).status === 0;

let work;
let app; // the consumer folder with iothub-jobs + iothub-emulator installed

/** Runs a consumer script with node; it must end by itself with exit 0 and a JSON last line. */
async function consumer(file, env) {
  const r = await runIn(app, process.execPath, [file], { env: cleanEnv({ SDK_FROM: path.join(ROOT, 'package.json'), ...env }) });
  assert.equal(r.code, 0, `${file} exited with ${r.code ?? r.signal} (it must exit by itself)\n${r.stderr}\n${r.stdout}`);
  return lastJson(r.stdout);
}


before(async () => {
  if (skipAll) return;
  work = realpathSync(await mkdtemp(path.join(os.tmpdir(), 'iothub-emulator-package-')));
  const { packed } = packAll(path.join(work, 'packages'));
  const mains = ['iothub-jobs', 'iothub-emulator'];
  const tarballs = mains.map((name) => packed.find((p) => p.name === name).tarball);
  assert.ok(packed.some((p) => p.name === 'iothub-emulator-linux-x64'));
  // The tarballs as pack:all wrote them; the platform packages served from theirs, as a registry
  // would serve them (npm must pick the one that fits). iothub-jobs's linux-x64-gnu addon, when
  // build:platforms did not make it, is the checkout's own build in that package.
  const offered = packed.filter((p) => !mains.includes(p.name));
  if (!offered.some((p) => p.name === 'iothub-jobs-linux-x64-gnu')) offered.push(await packStandIn('iothub-jobs-linux-x64-gnu', path.join(work, 'packages'), path.join(ROOT, 'iothub-jobs.linux-x64-gnu.node')));
  app = path.join(work, 'app');
  await installFromTarballs(app, tarballs, offered);
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('iothub-emulator installed from the tarballs', { skip: skipAll }, () => {
  test('npm installs only the linux-x64 platform package; its static binary is the one resolved', async () => {
    const installed = (await readdir(path.join(app, 'node_modules'))).filter((d) => d.startsWith('iothub-')).sort();
    assert.deepEqual(installed, ['iothub-emulator', 'iothub-emulator-linux-x64', 'iothub-jobs', 'iothub-jobs-linux-x64-gnu']);
    const binary = path.join(app, 'node_modules', 'iothub-emulator-linux-x64', 'bin', 'iothub-emulator');
    assert.ok(statSync(binary).mode & 0o111, 'the binary is executable as installed');
    assert.match(checkEmulator(x64, binary).summary, /^elf x86_64, static /);
    const resolved = await run(process.execPath, ['-p', "require('iothub-emulator').binaryPath()"], { cwd: app });
    assert.equal(resolved.trim(), binary);
    const version = JSON.parse(readFileSync(path.join(app, 'node_modules', 'iothub-emulator', 'package.json'), 'utf8')).version;
    assert.equal(version, JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version, 'versioned with iothub-jobs');
  });

  test('the bin prints its ready line, serves, and exits 0 on SIGTERM', async () => {
    let ready;
    const r = await runIn(app, path.join(app, 'node_modules', '.bin', 'iothub-emulator'), ['--devices', '2'], {
      onStdout(out, child) {
        if (ready || !out.includes('\n')) return;
        ready = JSON.parse(out.split('\n')[0]);
        fetchHealth(ready).then((health) => {
          ready.health = health;
          child.kill('SIGTERM');
        });
      },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(ready.connectionString, /^HostName=127\.0\.0\.1:\d+;SharedAccessKeyName=iothubowner;SharedAccessKey=/);
    assert.equal(ready.health.devices, 2);
  });

  test('startEmulator() from CommonJS: a job from iothub-jobs reaches a device SDK client made with createDevice(); stop(); the process exits by itself', async () => {
    await writeFile(path.join(app, 'flow.cjs'), FLOW);
    await writeFile(path.join(app, 'consumer.cjs'), "require('./flow.cjs')(require('iothub-emulator').startEmulator).then((r) => console.log(JSON.stringify(r)));\n");
    checkFlow(await consumer('consumer.cjs'));
  });

  test('startEmulator() from ESM, two hubs in one process: each on its own port, independent; asyncDispose stops', async () => {
    await writeFile(path.join(app, 'flow.cjs'), FLOW);
    await writeFile(path.join(app, 'consumer.mjs'), ESM_CONSUMER);
    const out = await consumer('consumer.mjs');
    assert.equal(out.sameAsRequire, true);
    checkFlow(out.flow);
    assert.notEqual(out.ports[0], out.ports[1]);
    assert.deepEqual(out.devices, [['only-on-a'], []], 'a device created on one hub is not on the other');
    assert.deepEqual(out.jobs, [1, 0]);
    assert.deepEqual(out.stopped, [0, 0]);
  });

  test('a SIGKILLed parent leaves no emulator running (stdin pipe, --exit-on-stdin-eof)', async () => {
    await writeFile(path.join(app, 'killed.mjs'), KILLED);
    const pids = await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['killed.mjs'], { cwd: app, env: cleanEnv(), stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.on('error', reject);
      child.stdout.setEncoding('utf8').on('data', (d) => {
        out += d;
        if (!out.includes('\n')) return;
        const hubs = JSON.parse(out.split('\n')[0]);
        child.kill('SIGKILL');
        child.once('exit', () => resolve(hubs));
      });
    });
    assert.equal(pids.length, 2);
    const deadline = Date.now() + 10_000;
    while (!pids.every(gone) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(pids.filter((pid) => !gone(pid)), [], 'every emulator stopped with its parent');
  });

  test('exec: the command gets the hub (IOTHUB_CONNECTION_STRING, IOTHUB_CA_FILE, NODE_EXTRA_CA_CERTS), its exit code is ours, the hub is stopped after', async () => {
    await writeFile(path.join(app, 'exec-child.cjs'), EXEC_CHILD);
    const r = await runIn(app, path.join(app, 'node_modules', '.bin', 'iothub-emulator'), ['exec', '--devices', '3', '--', process.execPath, 'exec-child.cjs', 'arg 1']);
    assert.equal(r.code, 7, `the command's exit code\n${r.stderr}`);
    const seen = lastJson(r.stdout);
    assert.match(seen.cs, /^HostName=127\.0\.0\.1:\d+;SharedAccessKeyName=iothubowner;/);
    assert.equal(seen.caFile, seen.extraCa);
    assert.deepEqual(seen.argv, ['arg 1']);
    // NODE_EXTRA_CA_CERTS is enough: iothub-jobs trusts the hub with no `ca` option.
    assert.deepEqual({ status: seen.status, succeeded: seen.succeeded }, { status: 'completed', succeeded: 3 });
    assert.equal(existsSync(seen.caFile), false, 'the hub stopped (its CA directory is gone)');

    const failed = await runIn(app, path.join(app, 'node_modules', '.bin', 'iothub-emulator'), ['exec', '--', process.execPath, '-e', 'process.kill(process.pid, "SIGTERM")']);
    assert.equal(failed.code, 128 + os.constants.signals.SIGTERM, 'killed by a signal: 128 + its number');
    const usage = await runIn(app, path.join(app, 'node_modules', '.bin', 'iothub-emulator'), ['exec', '--devices', '1']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^iothub-emulator: usage: iothub-emulator exec \[FLAGS…\] -- COMMAND/);
  });

  test('iothub-jobs emulator runs the installed iothub-emulator; without it, says `npm i -D iothub-emulator` (exit 8)', async () => {
    let ready;
    const bin = path.join(app, 'node_modules', '.bin', 'iothub-jobs');
    const r = await runIn(app, bin, ['emulator', '--devices', '1', '--output', 'json'], {
      onStdout(out, child) {
        if (ready || !out.includes('\n')) return;
        ready = JSON.parse(out.split('\n')[0]);
        child.kill('SIGTERM');
      },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(ready.hostName, /^127\.0\.0\.1:\d+$/);

    const hidden = path.join(app, 'hidden-iothub-emulator');
    await rename(path.join(app, 'node_modules', 'iothub-emulator'), hidden);
    try {
      const missing = await runIn(app, bin, ['emulator']);
      assert.equal(missing.code, 8);
      assert.equal(missing.stderr.trim(), 'iothub-jobs: the emulator is not installed: run `npm i -D iothub-emulator`');
    } finally {
      await rename(hidden, path.join(app, 'node_modules', 'iothub-emulator'));
    }
  });

  test("the README's Jest recipe, as written: globalSetup starts a hub, a test file schedules a job on it, globalTeardown stops it, Jest exits", { skip: prerequisite(!existsSync(JEST) && 'jest is not installed (a devDependency: npm ci)') }, async () => {
    // The recipe's files, cut from packages/iothub-emulator/README.md at their `// <file>.js` lines.
    const readme = readFileSync(path.join(ROOT, 'packages', 'iothub-emulator', 'README.md'), 'utf8');
    const block = /\*\*Jest\*\*[^\n]*\n\n```js\n([\s\S]*?)```/.exec(readme)[1];
    const files = block.split(/^\/\/ ([\w.-]+\.js)\n/m).slice(1);
    assert.deepEqual(files.filter((_, i) => i % 2 === 0), ['jest.config.js', 'iothub-setup.js', 'iothub-teardown.js']);
    const jestDir = path.join(app, 'jest');
    await mkdir(jestDir);
    for (let i = 0; i < files.length; i += 2) await writeFile(path.join(jestDir, files[i]), files[i + 1]);
    await writeFile(path.join(jestDir, 'hub.test.js'), JEST_TEST);
    const r = await runIn(jestDir, process.execPath, [JEST, '--ci', '--rootDir', jestDir], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `jest failed\n${r.stderr}\n${r.stdout}`);
    assert.match(r.stderr, /Tests:\s+1 passed, 1 total/);
  });

  test('one-line errors: a bad option; no binary that fits, saying what to do (--omit=optional, node_modules from another platform, IOTHUB_EMULATOR)', async () => {
    const platformDir = path.join(app, 'node_modules', 'iothub-emulator-linux-x64');
    const aside = path.join(app, 'aside-linux-x64');
    const attempt = async (env, options = {}) => {
      const r = await runIn(app, process.execPath, ['-e', `require('iothub-emulator').startEmulator(${JSON.stringify(options)}).then(() => process.exit(0), (e) => { console.error(e.message); process.exit(3) })`], { env: cleanEnv(env) });
      assert.equal(r.code, 3, r.stdout);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      return r.stderr.trim();
    };
    // A bad option is refused by the emulator, in one line too.
    assert.equal(await attempt({}, { tier: 'F9' }), 'iothub-emulator did not start (it exited with 2): iothub-emulator: invalid value \'F9\' for \'--tier <S1|S2|S3>\': --tier must be S1, S2 or S3, not "F9" (see --help)');
    await rename(platformDir, aside);
    const foreign = path.join(app, 'node_modules', 'iothub-emulator-darwin-arm64');
    try {
      assert.match(await attempt(), /iothub-emulator-linux-x64 is not installed \(npm install --omit=optional .*\): run `npm install` with optional dependencies, or set IOTHUB_EMULATOR/);
      await mkdir(foreign);
      await writeFile(path.join(foreign, 'package.json'), JSON.stringify({ name: 'iothub-emulator-darwin-arm64', version: '0.1.0' }));
      assert.match(await attempt(), /node_modules has iothub-emulator-darwin-arm64 but not iothub-emulator-linux-x64: it was installed on another platform; run `npm ci`/);
      assert.equal(await attempt({ IOTHUB_EMULATOR: path.join(app, 'nope') }), `IOTHUB_EMULATOR names no file: ${path.join(app, 'nope')}`);
    } finally {
      await rm(foreign, { recursive: true, force: true });
      await rename(aside, platformDir);
    }
  });
});

describe('the linux-arm64 binary', { skip: skipAll || prerequisite(!existsSync(emulatorBinaryPath(arm64)) ? BUILD_FIRST : !hasQemu && 'no qemu-aarch64 (npm run setup:platforms)') }, () => {
  test('is a static aarch64 ELF and, under qemu-aarch64, serves a job from iothub-jobs; stops at stdin EOF', async () => {
    assert.match(checkEmulator(arm64).summary, /^elf aarch64, static /);
    await writeFile(path.join(app, 'arm64.cjs'), ARM64_FLOW);
    const out = await consumer('arm64.cjs', { ARM64_BINARY: emulatorBinaryPath(arm64) });
    assert.deepEqual(out, { status: 'completed', succeeded: 2, exitCode: 0 });
  });
});

// ---------------------------------------------------------------------------------------------
// The consumers (run in the consumer folder; the device SDK comes from the repository's
// devDependencies, SDK_FROM, since an offline install cannot fetch it).

async function fetchHealth(ready) {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    request({ host: ready.host, port: ready.port, path: '/_emulator/health', ca: readFileSync(ready.caPath) }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => (text += d)).on('end', () => resolve(JSON.parse(text)));
    }).on('error', reject).end();
  });
}

function checkFlow(flow) {
  assert.match(flow.device.connectionString, /^HostName=127\.0\.0\.1:\d+;DeviceId=pkg-device;SharedAccessKey=[A-Za-z0-9+/=]{40,}$/);
  assert.deepEqual(flow.received, [{ from: 'iothub-jobs' }], 'the device got the job\'s method call');
  assert.deepEqual({ status: flow.status, succeeded: flow.succeeded, answer: flow.answer }, { status: 'completed', succeeded: 1, answer: { status: 200, payload: { rebooted: true } } });
  assert.equal(flow.devicesAfterReset, 0, 'reset() empties the hub');
  assert.equal(flow.stopped, 0, 'stop() resolves with the exit code 0');
}

// One hub: a device with the SDK's MQTT transport, a method job from iothub-jobs over it, reset,
// stop. Returns what it saw; leaves nothing running.
const FLOW = `'use strict';
const { createRequire } = require('node:module');
const sdk = createRequire(process.env.SDK_FROM);
const { Client } = sdk('azure-iot-device');
const { Mqtt } = sdk('azure-iot-device-mqtt');
const { JobClient } = require('iothub-jobs');

module.exports = async function flow(startEmulator) {
  const hub = await startEmulator();
  const device = await hub.createDevice('pkg-device');
  const client = Client.fromConnectionString(device.connectionString, Mqtt);
  await client.setOptions({ ca: hub.ca });
  await client.open();
  const received = [];
  client.onDeviceMethod('reboot', (request, response) => {
    received.push(request.payload);
    response.send(200, { rebooted: true }, () => {});
  });
  const jobs = JobClient.fromConnectionString(hub.connectionString, { ca: hub.ca });
  await jobs.scheduleDeviceMethod('pkg-job', "deviceId = 'pkg-device'", { methodName: 'reboot', payload: { from: 'iothub-jobs' }, connectTimeoutInSeconds: 30 });
  const done = await jobs.waitForJob('pkg-job', { pollIntervalMs: 50, timeoutMs: 60000 });
  const rows = [];
  for await (const row of jobs.listDeviceJobs('pkg-job')) rows.push(row);
  await client.close();
  await hub.reset();
  const devicesAfterReset = (await hub.health()).devices;
  return {
    device, received, status: done.status, succeeded: done.deviceJobStatistics.succeededCount,
    answer: rows[0].outcome.deviceMethodResponse, devicesAfterReset, stopped: await hub.stop(),
  };
};
`;

const ESM_CONSUMER = `import { createRequire } from 'node:module';
import { startEmulator } from 'iothub-emulator';
import emulator from 'iothub-emulator';
import flow from './flow.cjs';
const require = createRequire(import.meta.url);

const result = await flow(startEmulator);
const [a, b] = await Promise.all([startEmulator(), startEmulator()]);
await a.createDevice('only-on-a');
const ids = async (hub) => (await hub.control('GET', 'devices')).devices.map((d) => d.deviceId).filter((id) => id === 'only-on-a');
const devices = [await ids(a), await ids(b)];
const { JobClient } = require('iothub-jobs');
await JobClient.fromConnectionString(a.connectionString, { ca: a.ca }).scheduleTwinUpdate('on-a', '*', { etag: '*', tags: { x: 1 } });
const jobs = [(await a.health()).jobs, (await b.health()).jobs];
const stopped = [await a.stop(), await b[Symbol.asyncDispose]()];
console.log(JSON.stringify({
  sameAsRequire: emulator.startEmulator === startEmulator && require('iothub-emulator').startEmulator === startEmulator,
  flow: result, ports: [a.port, b.port], devices, jobs, stopped,
}));
`;

// A Jest test file for the README's recipe: the hub from globalSetup, reached through process.env.
const JEST_TEST = `const { readFileSync } = require('node:fs');
const { JobClient } = require('iothub-jobs');
test('a method job reaches the 10 simulated devices', async () => {
  const ca = readFileSync(process.env.IOTHUB_CA_FILE, 'utf8');
  const jobs = JobClient.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING, { ca });
  await jobs.scheduleDeviceMethod('jest-job', '*', { methodName: 'reboot' });
  const done = await jobs.waitForJob('jest-job', { pollIntervalMs: 50 });
  expect(done.deviceJobStatistics.succeededCount).toBe(10);
});
`;

// Starts two hubs, prints their pids and waits to be killed.
const KILLED = `import { startEmulator } from 'iothub-emulator';
const hubs = await Promise.all([startEmulator(), startEmulator({ devices: 1 })]);
console.log(JSON.stringify(hubs.map((h) => h.pid)));
setInterval(() => {}, 1000);
`;

const EXEC_CHILD = `'use strict';
const { JobClient } = require('iothub-jobs');
const jobs = JobClient.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING);
(async () => {
  await jobs.scheduleDeviceMethod('exec-job', '*', { methodName: 'reboot' });
  const done = await jobs.waitForJob('exec-job', { pollIntervalMs: 50, timeoutMs: 60000 });
  console.log(JSON.stringify({
    cs: process.env.IOTHUB_CONNECTION_STRING, caFile: process.env.IOTHUB_CA_FILE, extraCa: process.env.NODE_EXTRA_CA_CERTS,
    argv: process.argv.slice(2), status: done.status, succeeded: done.deviceJobStatistics.succeededCount,
  }));
  process.exitCode = 7;
})();
`;

// qemu-aarch64 runs the static arm64 binary (no arm64 libraries needed); the x64 iothub-jobs
// schedules a job on it; closing its stdin stops it.
const ARM64_FLOW = `'use strict';
const { spawn } = require('node:child_process');
const { readFileSync } = require('node:fs');
const { JobClient } = require('iothub-jobs');
const child = spawn('qemu-aarch64', [process.env.ARM64_BINARY, '--port', '0', '--devices', '2', '--exit-on-stdin-eof'], { stdio: ['pipe', 'pipe', 'inherit'] });
const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
let out = '';
child.stdout.setEncoding('utf8').on('data', async function onData(d) {
  out += d;
  if (!out.includes('\\n')) return;
  child.stdout.off('data', onData);
  const ready = JSON.parse(out.split('\\n')[0]);
  const jobs = JobClient.fromConnectionString(ready.connectionString, { ca: readFileSync(ready.caPath, 'utf8') });
  await jobs.scheduleDeviceMethod('arm64-job', '*', { methodName: 'reboot' });
  const done = await jobs.waitForJob('arm64-job', { pollIntervalMs: 100, timeoutMs: 120000 });
  child.stdin.end();
  console.log(JSON.stringify({ status: done.status, succeeded: done.deviceJobStatistics.succeededCount, exitCode: await exited }));
});
`;
