// The published shape: `npm run pack:all`'s iothub-jobs tarball, unmodified, installed into a
// fresh folder with no network (`npm install --offline`) with its platform package for this
// machine served from its tarball (pack:all's, or when build:platforms did not make it, the
// platform package holding the checkout's own build), then used there by a CommonJS consumer, an ESM
// consumer (both make real calls to the emulator) and a TypeScript consumer compiled with the
// repo's tsc (`--strict --noEmit`, types from the installed package only).
//
// Everything happens under one temporary folder outside the repo, so module resolution cannot
// fall back to the repo's own node_modules; it is removed at the end.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

import { startEmulator } from './helpers/emulator.mjs';
import { installFromTarballs, packStandIn } from './helpers/packages.mjs';
import { packAll } from '../scripts/pack-all.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const rootPkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const TSC = path.join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'tsc.cmd' : 'tsc');

/** The file name of the addon built for this machine, as the napi loader looks for it. */
function hostBinaryName() {
  const { platform, arch } = process;
  let abi = '';
  if (platform === 'linux') abi = process.report.getReport().header.glibcVersionRuntime ? '-gnu' : '-musl';
  else if (platform === 'win32') abi = '-msvc';
  return `${rootPkg.napi?.binaryName ?? rootPkg.name}.${platform}-${arch}${abi}.node`;
}
const HOST_NODE = hostBinaryName();
const HOST_PACKAGE = `iothub-jobs-${HOST_NODE.split('.')[1]}`;

/** An environment without npm's lifecycle variables (npm_config_*, …) and proxies, so the npm
 * we start reads no settings from the `npm test` that may be running us. */
function cleanEnv(extra = {}) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (/^npm_/i.test(k) || /^(https?|all|no)_proxy$/i.test(k) || k === 'NODE_PATH' || k === 'NODE_OPTIONS' || k === 'NAPI_RS_NATIVE_LIBRARY_PATH' || k === 'NODE_EXTRA_CA_CERTS') delete env[k];
  }
  return { ...env, ...extra };
}

function run(cmd, args, { cwd, env = cleanEnv(), timeout = 45_000 } = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env, timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr });
    });
  });
}

function ok(result, what) {
  assert.equal(result.code, 0, `${what} failed (${result.code})\n${result.stderr}\n${result.stdout}`);
  return result;
}

/** Runs a consumer script with `node` in the consumer folder; it must exit by itself. */
function runNode(cwd, file, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], { cwd, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`${file} exited with ${code ?? signal}\n${stderr}\n${stdout}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()));
      } catch (err) {
        reject(new Error(`${file}: no JSON result (${err.message})\n${stderr}\n${stdout}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The consumers.

const CJS_CONSUMER = `'use strict';
const pkg = require('iothub-jobs');
const { JobClient, Query, errors } = pkg;
const { readFileSync } = require('node:fs');
const ca = readFileSync(process.env.HUB_CA, 'utf8');
const client = JobClient.fromConnectionString(process.env.HUB_CS, { ca });
client.scheduleDeviceMethod('pack-cjs', '*', { methodName: 'reboot', payload: { from: 'cjs' } }, (err, job, response) => {
  process.stdout.write(JSON.stringify({
    exports: Object.keys(pkg).sort(),
    resolved: require.resolve('iothub-jobs'),
    natives: Object.keys(require.cache).filter((k) => k.endsWith('.node')),
    errorClasses: Object.keys(errors).length,
    throttlingIsError: new errors.ThrottlingError('x') instanceof Error,
    queryIsFunction: typeof Query === 'function',
    err: err ? String(err) : null,
    jobId: job && job.jobId,
    type: job && job.type,
    statusCode: response && response.statusCode,
  }) + '\\n');
});
`;

const ESM_CONSUMER = `import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { JobClient, Query, errors } from 'iothub-jobs';
import pkg from 'iothub-jobs';
const require = createRequire(import.meta.url);
const client = JobClient.fromConnectionString(process.env.HUB_CS, { ca: readFileSync(process.env.HUB_CA, 'utf8') });
const got = await client.getJob('pack-cjs');
let missing;
try {
  await client.getJob('pack-no-such-job');
} catch (e) {
  missing = { name: e.name, isJobNotFound: e instanceof errors.JobNotFoundError, isError: e instanceof Error, statusCode: e.response?.statusCode };
}
const query = client.createQuery('scheduleDeviceMethod', undefined, 1);
const page = await query.next();
process.stdout.write(JSON.stringify({
  sameAsRequire: pkg.JobClient === JobClient && require('iothub-jobs').JobClient === JobClient && pkg.errors === errors,
  queryIsQuery: query instanceof Query,
  resolved: import.meta.resolve('iothub-jobs'),
  jobId: got.jobStatus.jobId,
  method: got.jobStatus.cloudToDeviceMethod.methodName,
  statusCode: got.response.statusCode,
  missing,
  pageJobIds: page.result.map((j) => j.jobId),
}) + '\\n');
`;

// Strict TypeScript, named ESM imports, and the CommonJS `import = require` form.
const TS_ESM_CONSUMER = `import { JobClient, Query, errors } from 'iothub-jobs';
import type { DeviceMethodParams, Job, JobStatus, JobStatusResponse, JobType, TripleValueCallback } from 'iothub-jobs';

const client: JobClient = JobClient.fromConnectionString('HostName=h.azure-devices.net;SharedAccessKeyName=k;SharedAccessKey=a2V5', { ca: '-----BEGIN CERTIFICATE-----' });
const params: DeviceMethodParams = { methodName: 'reboot', payload: { delay: 1 }, responseTimeoutInSeconds: 30 };
const type: JobType = 'scheduleDeviceMethod';
const status: JobStatus = 'completed';

async function main(): Promise<number | undefined> {
  const scheduled: JobStatusResponse = await client.scheduleDeviceMethod('j1', '*', params, new Date(), 60);
  const job = scheduled.jobStatus as Job;
  const query: Query = client.createQuery(type, status, 10);
  while (query.hasMoreResults) {
    const { result } = await query.next();
    const jobs: Job[] = result;
    void jobs;
  }
  try {
    await client.cancelJob(job.jobId);
  } catch (err) {
    if (err instanceof errors.ThrottlingError) {
      const message: string = err.message;
      void message;
    }
  }
  // The modern API's typings need neither the DOM lib nor @types/node (lib: es2022, types: []).
  const signal = { aborted: false, addEventListener() {}, removeEventListener() {} };
  for await (const listed of client.listJobs({ maxPageSize: 10, abortSignal: signal })) void listed.jobId;
  for await (const row of client.listDeviceJobs('j1').byPage({ maxPageSize: 100 })) void row.continuationToken;
  const finished: Job = await client.waitForJob('j1', { timeoutMs: 1000, onProgress: (p) => void p.status });
  void finished;
  return job.deviceJobStatistics?.succeededCount;
}

const done: TripleValueCallback<any, any> = (err, job, response) => {
  if (err) {
    const e: Error = err;
    void e;
  }
  void job;
  void response;
};
client.getJob('j1', done);
client.scheduleTwinUpdate('j2', '*', { tags: { a: 1 } }, done);

// @ts-expect-error a job id is a string or a number
client.getJob({ id: 'j1' });
// @ts-expect-error methodName is required
client.scheduleDeviceMethod('j3', '*', { payload: 1 });
// @ts-expect-error not a job type
client.createQuery('export');

void main;
`;

const TS_CJS_CONSUMER = `import iothub = require('iothub-jobs');

const client: iothub.JobClient = iothub.JobClient.fromSharedAccessSignature('SharedAccessSignature sr=h&sig=s&se=1');
client.cancelJob('j1').then((r) => r.response);
client.cancelJob('j1', (err, job) => {
  if (err instanceof iothub.errors.JobNotFoundError) return;
  void job;
});
// @ts-expect-error no such factory
iothub.JobClient.fromSomethingElse('x');
`;

const TS_CONFIG = {
  compilerOptions: {
    strict: true,
    noEmit: true,
    target: 'es2022',
    lib: ['es2022'],
    module: 'nodenext',
    moduleResolution: 'nodenext',
    types: [],
    skipLibCheck: false,
  },
  files: ['consumer.mts', 'consumer.cts'],
};

// ---------------------------------------------------------------------------------------------

let tmp;
let packed; // {tarball, files, manifest} of iothub-jobs
let platform; // {name, tarball} of this machine's platform package
let app; // the consumer folder, once the install succeeded
let hub;

before(async () => {
  tmp = realpathSync(await mkdtemp(path.join(os.tmpdir(), 'iothub-jobs-pack-')));
  hub = await startEmulator({ devices: 3 });
  const out = path.join(tmp, 'pack');
  const all = packAll(out).packed;
  const tarball = all.find((p) => p.name === 'iothub-jobs').tarball;
  const files = (await run('tar', ['-tzf', tarball])).stdout.trim().split('\n').map((f) => f.replace(/^package\//, '')).sort();
  const manifest = JSON.parse((await run('tar', ['-xzOf', tarball, 'package/package.json'])).stdout);
  platform = all.find((p) => p.name === HOST_PACKAGE) ?? (await packStandIn(HOST_PACKAGE, out, path.join(root, HOST_NODE)));
  packed = { tarball, files, manifest };
});

after(async () => {
  await hub?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('npm pack', () => {
  test('ships the loader, lib/ (entry, runtime check, errors, paging, fleet, cli), the typings, README and LICENSE; no addon, sources or build output', async () => {
    const files = packed.files;
    for (const required of ['package.json', 'lib/main.js', 'lib/main.mjs', 'lib/runtime.js', 'lib/paging.js', 'lib/fleet.js', 'index.js', 'lib/errors.js', 'index.d.ts', 'lib/cli/main.mjs', 'README.md', 'LICENSE']) {
      assert.ok(files.includes(required), `${required} is in the package: ${files.join(', ')}`);
    }
    const allowed = /^(package\.json|lib\/(main\.m?js|runtime\.js|paging\.js|fleet\.js|errors\.js|cli\/[\w-]+\.mjs)|index\.js|index\.d\.ts|README\.md|LICENSE)$/;
    for (const f of files) {
      assert.match(f, allowed, `unexpected file in the package: ${f}`);
      assert.doesNotMatch(f, /^(src|crates|target|__test__|npm|node_modules|bench|scripts|examples|\.ci|\.github)\//);
      assert.doesNotMatch(f, /\.(rs|toml|lock|tgz|ts(?<!\.d\.ts)|map)$/);
    }
    // The entry and the typings the manifest names are the ones shipped; the addon comes from one
    // platform package per npm/ folder, at the same version (what `napi prepublish` writes).
    const { manifest } = packed;
    const platformPackages = readdirSync(path.join(root, 'npm')).map((d) => JSON.parse(readFileSync(path.join(root, 'npm', d, 'package.json'), 'utf8')).name);
    assert.equal(platformPackages.length, 7);
    assert.deepEqual(manifest.optionalDependencies, Object.fromEntries(platformPackages.map((name) => [name, rootPkg.version])));
    assert.ok(files.includes(manifest.main), `main ${manifest.main} is shipped`);
    assert.ok(files.includes(manifest.types), `types ${manifest.types} is shipped`);
    assert.deepEqual(manifest.bin, { 'iothub-jobs': 'lib/cli/main.mjs' });
    const cliModules = readdirSync(path.join(root, 'lib', 'cli')).map((f) => `lib/cli/${f}`).sort();
    assert.deepEqual(files.filter((f) => f.startsWith('lib/cli/')), cliModules, 'every CLI module is shipped');
    assert.equal(manifest.dependencies, undefined, 'no runtime dependencies');
    assert.equal(manifest.bundleDependencies ?? manifest.bundledDependencies, undefined);
  });

  test("installs from the tarball into a fresh folder with no network (npm install --offline), with this machine's platform package", async () => {
    const dir = path.join(tmp, 'app');
    const present = await installFromTarballs(dir, [packed.tarball], [platform]);
    const installed = (await readdir(path.join(dir, 'node_modules', 'iothub-jobs'))).sort();
    assert.deepEqual(installed, [...new Set(packed.files.map((f) => f.split('/')[0]))].sort(), 'the installed package is the tarball');
    assert.deepEqual(present, ['iothub-jobs', HOST_PACKAGE], 'only its platform package came with it');
    app = dir;
  });

  test("a CommonJS consumer: require(\"iothub-jobs\") loads the platform package's .node and schedules a job", async () => {
    assert.ok(app, 'needs the install of the previous test');
    await writeFile(path.join(app, 'consumer.cjs'), CJS_CONSUMER);
    const out = await runNode(app, 'consumer.cjs', { HUB_CS: hub.connectionString, HUB_CA: hub.caPath });
    const pkgDir = path.join(app, 'node_modules', 'iothub-jobs');
    assert.deepEqual(out.exports, ['JobClient', 'Query', '__napiBindingTarget', 'errors']);
    assert.equal(out.resolved, path.join(pkgDir, 'lib', 'main.js'));
    assert.deepEqual(out.natives, [path.join(app, 'node_modules', HOST_PACKAGE, HOST_NODE)], 'the platform package\'s .node, nothing from elsewhere');
    assert.equal(out.errorClasses, 33);
    assert.equal(out.throttlingIsError, true);
    assert.equal(out.queryIsFunction, true);
    assert.deepEqual(
      { err: out.err, jobId: out.jobId, type: out.type, statusCode: out.statusCode },
      { err: null, jobId: 'pack-cjs', type: 'scheduleDeviceMethod', statusCode: 200 },
    );
    const { requests } = await hub.control('GET', 'requests');
    assert.ok(requests.some((r) => r.method === 'PUT' && r.path === '/jobs/v2/pack-cjs' && r.status === 200));
  });

  test('the iothub-jobs bin: installed in node_modules/.bin, runs with the package only (--help, show)', async () => {
    assert.ok(app, 'needs the install');
    const bin = path.join(app, 'node_modules', '.bin', 'iothub-jobs');
    const help = ok(await run(bin, ['--help'], { cwd: app }), 'iothub-jobs --help');
    assert.match(help.stdout, /^Usage: iothub-jobs COMMAND/);
    const env = cleanEnv({ IOTHUB_CONNECTION_STRING: hub.connectionString, IOTHUB_CA_FILE: hub.caPath });
    const shown = ok(await run(bin, ['show', 'pack-cjs', '--output', 'json'], { cwd: app, env }), 'iothub-jobs show');
    assert.equal(JSON.parse(shown.stdout).jobId, 'pack-cjs');
    const missing = await run(bin, ['show', 'pack-no-such-job'], { cwd: app, env });
    assert.equal(missing.code, 5, 'exit code 5: not found');
  });

  test('an ESM consumer: named and default imports, the same classes as require, real calls', async () => {
    assert.ok(app, 'needs the install');
    await writeFile(path.join(app, 'consumer.mjs'), ESM_CONSUMER);
    const out = await runNode(app, 'consumer.mjs', { HUB_CS: hub.connectionString, HUB_CA: hub.caPath });
    assert.equal(out.sameAsRequire, true);
    assert.equal(out.queryIsQuery, true);
    // The "exports" map's "import" condition: the ESM entry re-exporting lib/main.js's objects.
    assert.equal(fileURLToPath(out.resolved), path.join(app, 'node_modules', 'iothub-jobs', 'lib', 'main.mjs'));
    assert.deepEqual({ jobId: out.jobId, method: out.method, statusCode: out.statusCode }, { jobId: 'pack-cjs', method: 'reboot', statusCode: 200 });
    assert.deepEqual(out.missing, { name: 'JobNotFoundError', isJobNotFound: true, isError: true, statusCode: 404 });
    assert.deepEqual(out.pageJobIds, ['pack-cjs']);
  });

  test("a TypeScript consumer compiles against the installed typings (repo's tsc, --strict --noEmit)", async () => {
    assert.ok(app, 'needs the install');
    await writeFile(path.join(app, 'consumer.mts'), TS_ESM_CONSUMER);
    await writeFile(path.join(app, 'consumer.cts'), TS_CJS_CONSUMER);
    await writeFile(path.join(app, 'tsconfig.json'), JSON.stringify(TS_CONFIG, null, 2));
    ok(await run(TSC, ['-p', 'tsconfig.json', '--strict', '--noEmit'], { cwd: app }), 'tsc');
    // The check is real: a wrong use of the package's types is refused.
    const wrongDir = path.join(app, 'wrong');
    await mkdir(wrongDir);
    await writeFile(path.join(wrongDir, 'wrong.mts'), "import { JobClient } from 'iothub-jobs';\nconst n: number = JobClient.fromConnectionString('x').getJob('j');\nvoid n;\n");
    await writeFile(path.join(wrongDir, 'tsconfig.json'), JSON.stringify({ ...TS_CONFIG, files: ['wrong.mts'] }, null, 2));
    const wrong = await run(TSC, ['-p', path.join('wrong', 'tsconfig.json')], { cwd: app });
    assert.notEqual(wrong.code, 0, 'a type error must fail the compile');
    assert.match(wrong.stdout + wrong.stderr, /wrong\.mts[^\n]*error TS2322/);
  });

  test(
    'every value export the shipped typings declare exists at runtime',
    async () => {
      const dts = await readFile(path.join(root, 'index.d.ts'), 'utf8');
      const declared = [...dts.matchAll(/^export declare (?:const|let|var|function|class|namespace|enum) (\w+)/gm)].map((m) => m[1]);
      const runtime = Object.keys(createRequire(import.meta.url)(path.join(root, 'lib', 'main.js')));
      assert.deepEqual([...new Set(declared)].sort(), runtime.sort());
    },
  );
});
