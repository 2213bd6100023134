// The cross-built platform packages, as their users get them (`npm run test:platforms`, after
// `npm run setup:platforms` and `npm run build:platforms`):
//   - every binary in npm/*/ passes the loader check (format, architecture, libraries, glibc);
//   - the arm64 glibc addon, loaded by an arm64 `node` under qemu, runs a jobs flow against the
//     emulator (which runs natively);
//   - `npm pack` of the main package and of the platform packages, installed offline from the
//     tarballs into a fresh folder, by x64 npm natively, by arm64 npm under qemu and by x64 npm
//     told `--os=win32` (then run by the Windows node.exe under Wine): the main package's
//     optionalDependencies pull in exactly the platform's binary, and a call works.
// Parts whose binaries or arm64 `node` are absent are skipped, saying what to run.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startEmulator } from './helpers/emulator.mjs';
import { NPM_CLI, cleanEnv, lastJson, run } from './helpers/packages.mjs';
import { PLATFORMS, binaryName } from '../scripts/platforms/targets.mjs';
import { binaryPath, checkPlatform } from '../scripts/platforms/check.mjs';
import { runWindowsNode, wineReady, winePath } from '../scripts/platforms/wine.mjs';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE_ARM64 = path.join(ROOT, 'target', 'platforms', 'node-arm64', 'bin', 'node');
const BUILD_FIRST = 'run `npm run setup:platforms && npm run build:platforms` first';
const byName = (name) => PLATFORMS.find((p) => p.name === name);
const built = PLATFORMS.filter((p) => existsSync(binaryPath(p)));
const arm64Gnu = byName('linux-arm64-gnu');
const x64Gnu = byName('linux-x64-gnu');
const canRunArm64 = existsSync(NODE_ARM64) && existsSync(binaryPath(arm64Gnu));
const win32 = byName('win32-x64-msvc');
const canRunWin32 = wineReady() && existsSync(binaryPath(win32));

/** `node` (x64, natively) or arm64 `node` under qemu-aarch64. */
const nodeCommand = (arch, args) => (arch === 'arm64' ? ['qemu-aarch64', [NODE_ARM64, ...args]] : [process.execPath, args]);

// A real flow: schedule a direct-method job on every device, wait for it, read it back, list it.
const FLOW = `'use strict';
const { readFileSync } = require('node:fs');
const { JobClient } = require(require.resolve(process.env.PACKAGE, { paths: [process.cwd()] }));
const client = JobClient.fromConnectionString(process.env.HUB_CS, { ca: readFileSync(process.env.HUB_CA, 'utf8') });
(async () => {
  const jobId = 'platform-' + process.arch + '-' + process.pid;
  const scheduled = await client.scheduleDeviceMethod(jobId, '*', { methodName: 'reboot', payload: { arch: process.arch } });
  const done = await client.waitForJob(jobId, { pollIntervalMs: 50, timeoutMs: 60000 });
  const got = await client.getJob(jobId);
  const listed = [];
  for await (const job of client.listJobs({ jobType: 'scheduleDeviceMethod' })) listed.push(job.jobId);
  process.stdout.write(JSON.stringify({
    arch: process.arch,
    natives: Object.keys(require.cache).filter((k) => k.endsWith('.node')),
    scheduledStatus: scheduled.response.statusCode,
    status: done.status,
    succeeded: done.deviceJobStatistics.succeededCount,
    method: got.jobStatus.cloudToDeviceMethod.methodName,
    listed: listed.includes(jobId),
  }) + '\\n');
})().catch((err) => { console.error(err); process.exit(1); });
`;

let hub;
let work;
const DEVICES = 3;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'iothub-jobs-platforms-'));
  await writeFile(path.join(work, 'flow.cjs'), FLOW);
  hub = await startEmulator({ devices: DEVICES });
});
after(async () => {
  await hub?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function runFlow(arch, cwd, extraEnv) {
  const [command, args] = nodeCommand(arch, [path.join(work, 'flow.cjs')]);
  const env = cleanEnv({ HUB_CS: hub.connectionString, HUB_CA: hub.caPath, ...extraEnv });
  const result = lastJson(await run(command, args, { cwd, env }));
  assert.equal(result.arch, arch);
  assert.equal(result.scheduledStatus, 200);
  assert.equal(result.status, 'completed');
  assert.equal(result.succeeded, DEVICES);
  assert.equal(result.method, 'reboot');
  assert.ok(result.listed, 'the job is listed');
  return result;
}

describe('platform binaries', () => {
  test('at least the Linux gnu binaries are built', { skip: built.some((p) => p.format === 'elf') ? false : BUILD_FIRST }, () => {
    assert.ok(existsSync(binaryPath(x64Gnu)) && existsSync(binaryPath(arm64Gnu)), BUILD_FIRST);
  });
  for (const platform of PLATFORMS) {
    test(`${platform.name}: format, architecture, libraries, libc floor`, { skip: built.includes(platform) ? false : BUILD_FIRST }, () => {
      checkPlatform(platform);
    });
  }
  test('the check rejects the default x64 build when held to glibc 2.17 (it needs 2.34)', { skip: existsSync(path.join(ROOT, binaryName(x64Gnu))) ? false : 'no default build (`npm run build`)' }, () => {
    assert.throws(() => checkPlatform(x64Gnu, path.join(ROOT, binaryName(x64Gnu))), /needs glibc > 2\.17: .*GLIBC_2\.3\d/);
  });
});

describe('arm64 under qemu', { skip: canRunArm64 ? false : BUILD_FIRST }, () => {
  test('the arm64 glibc addon runs a jobs flow in an arm64 node', async () => {
    const result = await runFlow('arm64', ROOT, { PACKAGE: ROOT, NAPI_RS_NATIVE_LIBRARY_PATH: binaryPath(arm64Gnu) });
    assert.deepEqual(result.natives, [binaryPath(arm64Gnu)]);
  });
});

describe('npm pack, installed from the tarballs', { skip: existsSync(binaryPath(x64Gnu)) ? false : BUILD_FIRST }, () => {
  let mainTarball;
  before(async () => {
    const tarballs = path.join(work, 'tarballs');
    await mkdir(tarballs);
    const pack = async (cwd) => path.join(tarballs, JSON.parse(await run(process.execPath, [NPM_CLI, 'pack', '--json', '--pack-destination', tarballs], { cwd }))[0].filename);
    const platformTarballs = {};
    for (const platform of built) platformTarballs[`iothub-jobs-${platform.name}`] = `file:${await pack(path.join(ROOT, 'npm', platform.name))}`;

    // The main package as `napi prepublish` publishes it: no binary of its own, one optional
    // dependency per platform (here the local tarballs instead of registry versions).
    const stage = path.join(work, 'main');
    await mkdir(stage);
    await run('tar', ['-xzf', await pack(ROOT), '-C', stage, '--strip-components=1']);
    for (const file of await readdir(stage)) if (file.endsWith('.node')) await rm(path.join(stage, file));
    const manifest = JSON.parse(await readFile(path.join(stage, 'package.json'), 'utf8'));
    manifest.optionalDependencies = platformTarballs;
    await writeFile(path.join(stage, 'package.json'), JSON.stringify(manifest, null, 2));
    mainTarball = await pack(stage);
  });

  async function install(arch, npmArgs = []) {
    const consumer = path.join(work, `consumer-${arch}`);
    await mkdir(consumer);
    await writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    const [command, args] = nodeCommand(arch, [NPM_CLI, 'install', '--offline', '--no-audit', '--no-fund', ...npmArgs, mainTarball]);
    await run(command, args, { cwd: consumer, timeout: 600_000 });
    const installed = (await readdir(path.join(consumer, 'node_modules'))).filter((d) => d.startsWith('iothub-jobs')).sort();
    return { consumer, installed };
  }

  async function installAndRun(arch) {
    const { consumer, installed } = await install(arch);
    const result = await runFlow(arch, consumer, { PACKAGE: 'iothub-jobs' });
    return { installed, natives: result.natives.map((f) => path.relative(consumer, f)) };
  }

  test('x64 (native): only linux-x64-gnu is installed, and it is the binary loaded', async () => {
    const { installed, natives } = await installAndRun('x64');
    assert.deepEqual(installed, ['iothub-jobs', 'iothub-jobs-linux-x64-gnu']);
    assert.deepEqual(natives, [path.join('node_modules', 'iothub-jobs-linux-x64-gnu', binaryName(x64Gnu))]);
  });

  // What npm installs on Windows, laid out by this machine's npm told the platform, then run by
  // the official node.exe under Wine (its output goes to files: see scripts/platforms/wine.mjs).
  test('win32 (npm --os=win32 --cpu=x64, node.exe under Wine): only win32-x64-msvc is installed and loaded', { skip: canRunWin32 ? false : BUILD_FIRST, timeout: 300_000 }, async () => {
    const { consumer, installed } = await install('win32', ['--os=win32', '--cpu=x64']);
    assert.deepEqual(installed, ['iothub-jobs', 'iothub-jobs-win32-x64-msvc']);
    const env = { HUB_CS: hub.connectionString, HUB_CA: winePath(hub.caPath), PACKAGE: 'iothub-jobs' };
    const ran = await runWindowsNode([winePath(path.join(work, 'flow.cjs'))], { cwd: consumer, env, baseEnv: cleanEnv() });
    assert.equal(ran.code, 0, `${ran.stderr}\n${ran.stdout}`);
    const result = lastJson(ran.stdout);
    assert.equal(result.arch, 'x64');
    assert.equal(result.status, 'completed');
    assert.equal(result.succeeded, DEVICES);
    assert.deepEqual(result.natives, [`${winePath(consumer)}\\node_modules\\iothub-jobs-win32-x64-msvc\\${binaryName(win32)}`]);
  });

  test('arm64 (npm and node under qemu): only linux-arm64-gnu is installed and loaded', { skip: canRunArm64 ? false : BUILD_FIRST, timeout: 900_000 }, async () => {
    const { installed, natives } = await installAndRun('arm64');
    assert.deepEqual(installed, ['iothub-jobs', 'iothub-jobs-linux-arm64-gnu']);
    assert.deepEqual(natives, [path.join('node_modules', 'iothub-jobs-linux-arm64-gnu', binaryName(arm64Gnu))]);
  });
});
