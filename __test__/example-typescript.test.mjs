// examples/typescript: the TypeScript sample type-checks (strict, no emit) with the repo's tsc and
// its tsconfig, and — compiled to a temporary folder — really runs against the emulator.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, symlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

import { startEmulator } from './helpers/emulator.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const exampleDir = path.join(root, 'examples', 'typescript');
const TSCONFIG = path.join(exampleDir, 'tsconfig.json');
const TSC = path.join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'tsc.cmd' : 'tsc');
const { JobClient } = require('..');

function run(cmd, args, { cwd = root, env = process.env, timeout = 45_000 } = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env, timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr });
    });
  });
}

let tmp;
let hub;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'iothub-jobs-example-'));
  hub = await startEmulator({ devices: 6 });
});
after(async () => {
  await hub?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('examples/typescript', () => {
  test('tsconfig is strict and no-emit; schedule.ts type-checks', async () => {
    const config = JSON.parse(await readFile(TSCONFIG, 'utf8'));
    assert.equal(config.compilerOptions.strict, true);
    assert.equal(config.compilerOptions.noEmit, true);
    assert.deepEqual(config.files, ['schedule.ts']);
    const r = await run(TSC, ['-p', TSCONFIG]);
    assert.equal(r.code, 0, `tsc -p examples/typescript/tsconfig.json\n${r.stdout}${r.stderr}`);
  });

  test('compiled, it runs against the emulator: promise and callback forms, paging, error narrowing', async () => {
    const out = path.join(tmp, 'out');
    const emitted = await run(TSC, ['-p', TSCONFIG, '--noEmit', 'false', '--outDir', out]);
    assert.equal(emitted.code, 0, `${emitted.stdout}${emitted.stderr}`);
    // `require('iothub-jobs')` of the emitted code finds this repo through NODE_PATH, the way it
    // finds an installed package; @azure/identity comes from the repo's node_modules.
    const modules = path.join(tmp, 'modules');
    await mkdir(modules);
    await symlink(root, path.join(modules, 'iothub-jobs'), 'junction');

    // Three method jobs already exist, so the sample's page size of 2 gives two pages.
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: readFileSync(hub.caPath, 'utf8') });
    for (const id of ['pre-1', 'pre-2', 'pre-3']) await client.scheduleDeviceMethod(id, "deviceId = 'device-0000'", { methodName: 'ping' });

    const result = await new Promise((resolve) => {
      const env = { ...process.env, NODE_PATH: [modules, path.join(root, 'node_modules')].join(path.delimiter) };
      env.IOTHUB_CONNECTION_STRING = hub.connectionString;
      env.IOTHUB_CA_FILE = hub.caPath;
      delete env.IOTHUB_HOST_NAME;
      const child = spawn(process.execPath, [path.join(out, 'schedule.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? signal, stdout, stderr });
      });
    });
    assert.equal(result.code, 0, `${result.stderr}\n${result.stdout}`);
    const lines = result.stdout.trim().split('\n').map((l) => l.replace(/-[0-9a-z]{6,}\b/g, '-RUN'));
    assert.deepEqual(lines, [
      'promise: scheduled reboot-RUN, status queued (HTTP 200)',
      'callback: scheduled twin update tag-RUN (HTTP 200)',
      'reboot-RUN: completed, 3 succeeded, 0 failed', // device-0000, -0002, -0004: tags.group = 'even'
      'tag-RUN: completed, 3 succeeded, 0 failed',
      'listed 4 method jobs in 2 pages',
      "getJob(missing): no such job (Job with id 'missing-RUN' does not exist)",
      "scheduleDeviceMethod(no method name): ReferenceError: methodParams.methodName cannot be ''",
    ]);

    // The twin job really changed the odd devices.
    const { devices } = await hub.control('GET', 'devices');
    for (const d of devices) {
      const odd = Number(d.deviceId.slice(-1)) % 2 === 1;
      assert.equal(d.tags.firmware, odd ? '2.0' : undefined, d.deviceId);
    }
  });
});
