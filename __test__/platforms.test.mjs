// The cross-built platform packages, as their users get them (`npm run test:platforms`, after
// `npm run setup:platforms` and `npm run build:platforms`):
//   - every binary in npm/*/ passes the loader check (format, architecture, libraries, glibc);
//   - the arm64 glibc addon, loaded by an arm64 `node` under qemu, runs a jobs flow against the
//     emulator (which runs natively);
//   - `npm run pack:all`'s tarballs of iothub-jobs and iothub-emulator, unmodified, installed
//     offline for each of the 7 targets (npm's --os/--cpu/--libc): their optionalDependencies pull
//     in exactly that target's platform packages; on linux-x64-gnu (natively), linux-arm64-gnu
//     (node under qemu) and win32-x64 (node.exe under Wine) startEmulator() and a jobs call work
//     from that install.
// Parts whose binaries or arm64 `node` are absent are skipped, saying what to run.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startEmulator } from './helpers/emulator.mjs';
import { cleanEnv, installFromTarballs, lastJson, packStandIn, run } from './helpers/packages.mjs';
import { packAll } from '../scripts/pack-all.mjs';
import { EMULATOR_PLATFORMS, PLATFORMS, binaryName, emulatorExe, npmSystem } from '../scripts/platforms/targets.mjs';
import { binaryPath, checkPlatform, emulatorBinaryPath } from '../scripts/platforms/check.mjs';
import { runWindowsNode, wineReady, winePath } from '../scripts/platforms/wine.mjs';
import { prerequisite } from './helpers/prerequisite.mjs';

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
  test('at least the Linux gnu binaries are built', { skip: prerequisite(!built.some((p) => p.format === 'elf') && BUILD_FIRST) }, () => {
    assert.ok(existsSync(binaryPath(x64Gnu)) && existsSync(binaryPath(arm64Gnu)), BUILD_FIRST);
  });
  for (const platform of PLATFORMS) {
    test(`${platform.name}: format, architecture, libraries, libc floor`, { skip: built.includes(platform) ? false : `${BUILD_FIRST} (CI builds the Linux gnu and Windows addons only: the musl and macOS ones take too long)` }, () => {
      checkPlatform(platform);
    });
  }
  test('the check rejects the default x64 build when held to glibc 2.17 (it needs 2.34)', { skip: prerequisite(!existsSync(path.join(ROOT, binaryName(x64Gnu))) && 'no default build (`npm run build`)') }, () => {
    assert.throws(() => checkPlatform(x64Gnu, path.join(ROOT, binaryName(x64Gnu))), /needs glibc > 2\.17: .*GLIBC_2\.3\d/);
  });
});

describe('arm64 under qemu', { skip: prerequisite(!canRunArm64 && BUILD_FIRST) }, () => {
  test('the arm64 glibc addon runs a jobs flow in an arm64 node', async () => {
    const result = await runFlow('arm64', ROOT, { PACKAGE: ROOT, NAPI_RS_NATIVE_LIBRARY_PATH: binaryPath(arm64Gnu) });
    assert.deepEqual(result.natives, [binaryPath(arm64Gnu)]);
  });
});


// `npm run pack:all`'s tarballs of iothub-jobs and iothub-emulator, unmodified, installed by npm
// told each target's os/cpu/libc, with every platform package offered from its tarball (the
// consumer's overrides stand in for a registry). A platform package whose binary was not built
// here (CI builds the Linux gnu and Windows addons and the Linux and Windows emulators: see
// scripts/platforms/ci.mjs) is offered as a stand-in made from its manifest, so the resolution
// is still checked for all 7 targets; the test says which packages were stand-ins.
const TARGETS = PLATFORMS.map((platform) => {
  const system = npmSystem(platform);
  return { platform, ...system, emulator: EMULATOR_PLATFORMS.find((e) => e.os === system.os && e.cpu === system.cpu) };
});
const npmFlags = (target) => [`--os=${target.os}`, `--cpu=${target.cpu}`, ...(target.libc ? [`--libc=${target.libc}`] : [])];
const expectedBinaries = (target) => [
  path.join(`iothub-emulator-${target.emulator.name}`, 'bin', emulatorExe(target.emulator)),
  path.join(`iothub-jobs-${target.platform.name}`, binaryName(target.platform)),
];

/** Every addon and emulator binary in a node_modules tree (paths relative to it). */
async function binariesIn(nodeModules) {
  const files = await readdir(nodeModules, { recursive: true });
  return files.filter((f) => !f.startsWith('.bin') && (f.endsWith('.node') || /(^|\/)bin\/iothub-emulator(\.exe)?$/.test(f))).sort();
}

// From the install: start a hub with iothub-emulator's startEmulator(), run a method job on it
// with iothub-jobs, stop it. Which addon was loaded and which emulator binary the install resolves.
const INSTALLED_FLOW = `'use strict';
const emulator = require('iothub-emulator');
const { JobClient } = require('iothub-jobs');
(async () => {
  const installedBinary = emulator.binaryPath({});
  const hub = await emulator.startEmulator({ devices: 3 });
  const client = JobClient.fromConnectionString(hub.connectionString, { ca: hub.ca });
  const jobId = 'installed-' + process.platform + '-' + process.arch;
  const scheduled = await client.scheduleDeviceMethod(jobId, '*', { methodName: 'reboot' });
  const done = await client.waitForJob(jobId, { pollIntervalMs: 100, timeoutMs: 120000 });
  const jobs = (await hub.health()).jobs;
  const stopped = await hub.stop();
  process.stdout.write(JSON.stringify({
    platform: process.platform, arch: process.arch, installedBinary,
    natives: Object.keys(require.cache).filter((k) => k.endsWith('.node')),
    scheduled: scheduled.response.statusCode, status: done.status, succeeded: done.deviceJobStatistics.succeededCount, jobs, stopped,
  }) + '\\n');
})().catch((err) => { console.error(err); process.exit(1); });
`;

describe("pack:all's tarballs, installed for each of the 7 targets", () => {
  let mainTarballs;
  let offered;
  let standIns;
  const consumers = {};
  before(async () => {
    const { packed } = packAll(path.join(work, 'packages'));
    const mains = ['iothub-jobs', 'iothub-emulator'];
    mainTarballs = mains.map((name) => packed.find((p) => p.name === name).tarball);
    const optional = [];
    for (const tarball of mainTarballs) optional.push(...Object.keys(JSON.parse(await run('tar', ['-xzOf', tarball, 'package/package.json'])).optionalDependencies));
    const missing = optional.filter((name) => !packed.some((p) => p.name === name));
    standIns = [];
    for (const name of missing) standIns.push(await packStandIn(name, path.join(work, 'packages')));
    offered = [...packed.filter((p) => !mains.includes(p.name)), ...standIns];
  });

  for (const target of TARGETS) {
    const name = target.platform.name;
    test(`${name} (npm ${npmFlags(target).join(' ')}): exactly iothub-jobs-${name} and iothub-emulator-${target.emulator.name}, no other binary in the tree`, async (t) => {
      const consumer = path.join(work, `installed-${name}`);
      const installed = await installFromTarballs(consumer, mainTarballs, offered, { npmArgs: npmFlags(target) });
      assert.deepEqual(installed, ['iothub-emulator', `iothub-emulator-${target.emulator.name}`, 'iothub-jobs', `iothub-jobs-${name}`]);
      assert.deepEqual(await binariesIn(path.join(consumer, 'node_modules')), expectedBinaries(target));
      const stood = standIns.filter((s) => installed.includes(s.name)).map((s) => s.name);
      if (stood.length) t.diagnostic(`resolution only: ${stood.join(', ')} not built here, offered as stand-ins`);
      else consumers[name] = consumer;
    });
  }

  // The runs need the real binaries of both platform packages (stand-ins only resolve).
  const emulatorBuilt = (name) => existsSync(emulatorBinaryPath(EMULATOR_PLATFORMS.find((e) => e.name === name)));
  const runnable = (ready, emulator) => prerequisite(!ready ? BUILD_FIRST : !emulatorBuilt(emulator) && `no iothub-emulator-${emulator} binary: ${BUILD_FIRST}`);
  const installedFor = (name) => {
    assert.ok(consumers[name], `the ${name} install (with its real binaries) of the test above`);
    return consumers[name];
  };
  const checkFlow = (result, platform, arch) => {
    assert.deepEqual(
      { platform: result.platform, arch: result.arch, scheduled: result.scheduled, status: result.status, succeeded: result.succeeded, jobs: result.jobs, stopped: result.stopped },
      { platform, arch, scheduled: 200, status: 'completed', succeeded: 3, jobs: 1, stopped: 0 },
    );
  };

  test('linux-x64-gnu: startEmulator() and a jobs call from that install', { skip: runnable(existsSync(binaryPath(x64Gnu)), 'linux-x64') }, async () => {
    const consumer = installedFor('linux-x64-gnu');
    await writeFile(path.join(consumer, 'flow.cjs'), INSTALLED_FLOW);
    const result = lastJson(await run(process.execPath, ['flow.cjs'], { cwd: consumer }));
    checkFlow(result, 'linux', 'x64');
    assert.deepEqual(result.natives, [path.join(consumer, 'node_modules', 'iothub-jobs-linux-x64-gnu', binaryName(x64Gnu))]);
    assert.equal(result.installedBinary, path.join(consumer, 'node_modules', 'iothub-emulator-linux-x64', 'bin', 'iothub-emulator'));
  });

  // No binfmt_misc here: the arm64 node (under qemu) runs the installed arm64 emulator through a
  // wrapper (IOTHUB_EMULATOR) that starts it under qemu-aarch64; the resolution is checked apart.
  test('linux-arm64-gnu (node and emulator under qemu): startEmulator() and a jobs call from that install', { skip: runnable(canRunArm64, 'linux-arm64'), timeout: 600_000 }, async () => {
    const consumer = installedFor('linux-arm64-gnu');
    const binary = path.join(consumer, 'node_modules', 'iothub-emulator-linux-arm64', 'bin', 'iothub-emulator');
    const wrapper = path.join(consumer, 'emulator-under-qemu.sh');
    await writeFile(wrapper, `#!/bin/sh\nexec qemu-aarch64 ${JSON.stringify(binary)} "$@"\n`, { mode: 0o755 });
    await writeFile(path.join(consumer, 'flow.cjs'), INSTALLED_FLOW);
    const [command, args] = nodeCommand('arm64', ['flow.cjs']);
    const result = lastJson(await run(command, args, { cwd: consumer, env: cleanEnv({ IOTHUB_EMULATOR: wrapper }), timeout: 540_000 }));
    checkFlow(result, 'linux', 'arm64');
    assert.deepEqual(result.natives, [path.join(consumer, 'node_modules', 'iothub-jobs-linux-arm64-gnu', binaryName(arm64Gnu))]);
    assert.equal(result.installedBinary, binary);
  });

  test('win32-x64-msvc (node.exe under Wine): startEmulator() and a jobs call from that install', { skip: runnable(canRunWin32, 'win32-x64'), timeout: 300_000 }, async () => {
    const consumer = installedFor('win32-x64-msvc');
    await writeFile(path.join(consumer, 'flow.cjs'), INSTALLED_FLOW);
    const ran = await runWindowsNode([winePath(path.join(consumer, 'flow.cjs'))], { cwd: consumer, env: {}, baseEnv: cleanEnv(), timeout: 240_000 });
    assert.equal(ran.code, 0, `${ran.stderr}\n${ran.stdout}`);
    const result = lastJson(ran.stdout);
    checkFlow(result, 'win32', 'x64');
    const modules = `${winePath(consumer)}\\node_modules`;
    assert.deepEqual(result.natives, [`${modules}\\iothub-jobs-win32-x64-msvc\\${binaryName(win32)}`]);
    assert.equal(result.installedBinary, `${modules}\\iothub-emulator-win32-x64\\bin\\iothub-emulator.exe`);
  });
});
