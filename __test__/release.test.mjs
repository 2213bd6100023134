// What a release sends (issue 32):
//   - `npm run pack:all`'s tarballs are the published form: iothub-jobs and iothub-emulator with no
//     binary of their own and one optionalDependencies entry per platform package at their
//     version, platform packages with os/cpu/libc, LICENSE and README in each;
//   - the manifest check refuses, one line per problem naming the package, what would break a
//     release or an install;
//   - `npm publish --dry-run` of every tarball succeeds;
//   - the release workflow's npm step publishes the platform packages before the main packages
//     and refuses a tag that is not the packages' version (its own script, run on the tarballs
//     with a recording `npm`);
//   - the workflows pass actionlint (pinned, scripts/actionlint.mjs), which does refuse a broken one.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { NPM_CLI, packAll } from '../scripts/pack-all.mjs';
import { checkPackage } from '../scripts/package-check.mjs';
import { lintWorkflows, WORKFLOWS } from '../scripts/actionlint.mjs';
import { hasPython3 } from '../scripts/python-sdk.mjs';
import { cleanEnv, run } from './helpers/packages.mjs';
import { prerequisite } from './helpers/prerequisite.mjs';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const VERSION = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
const namesIn = (parent) => readdirSync(parent).map((d) => JSON.parse(readFileSync(path.join(parent, d, 'package.json'), 'utf8')).name).sort();
const ADDON_PACKAGES = namesIn(path.join(ROOT, 'npm'));
const EMULATOR_PACKAGES = namesIn(path.join(ROOT, 'packages', 'iothub-emulator', 'npm'));

let work;
let packed;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'iothub-jobs-release-'));
  ({ packed } = packAll(path.join(work, 'packages')));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const contents = async (tarball) => (await run('tar', ['-tzf', tarball])).trim().split('\n').map((f) => f.replace(/^package\//, '')).sort();
const manifestOf = async (tarball) => JSON.parse(await run('tar', ['-xzOf', tarball, 'package/package.json']));
const tarballOf = (name) => packed.find((p) => p.name === name).tarball;

describe("pack:all's tarballs are the published form", () => {
  test('iothub-jobs: no addon of its own; one optionalDependencies entry per platform package in npm/, at its version', async () => {
    assert.equal(ADDON_PACKAGES.length, 7);
    const files = await contents(tarballOf('iothub-jobs'));
    assert.deepEqual(files.filter((f) => f.endsWith('.node')), []);
    const manifest = await manifestOf(tarballOf('iothub-jobs'));
    assert.deepEqual(manifest.optionalDependencies, Object.fromEntries(ADDON_PACKAGES.map((name) => [name, VERSION])));
    assert.ok(!manifest.files.some((f) => f.endsWith('.node')), `files: ${manifest.files}`);
    // The development checkout keeps its own manifest (and its addon) as it is.
    assert.equal(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).optionalDependencies, undefined);
  });

  test('iothub-emulator: no binary of its own; one optionalDependencies entry per platform package, at its version', async () => {
    assert.equal(EMULATOR_PACKAGES.length, 5);
    const files = await contents(tarballOf('iothub-emulator'));
    assert.deepEqual(files.filter((f) => !/\.(js|mjs|d\.ts|json|md)$/.test(f) && f !== 'LICENSE'), []);
    const manifest = await manifestOf(tarballOf('iothub-emulator'));
    assert.deepEqual(manifest.optionalDependencies, Object.fromEntries(EMULATOR_PACKAGES.map((name) => [name, VERSION])));
  });

  test('every tarball: at the one version, with LICENSE and README; platform packages with os and cpu (libc for the Linux addons)', async () => {
    for (const { name, tarball } of packed) {
      const files = await contents(tarball);
      const manifest = await manifestOf(tarball);
      assert.equal(manifest.version, VERSION, name);
      assert.equal(manifest.license, 'MIT', name);
      assert.ok(files.includes('LICENSE') && files.includes('README.md'), `${name}: ${files}`);
      if (ADDON_PACKAGES.includes(name) || EMULATOR_PACKAGES.includes(name)) {
        assert.equal(manifest.os.length, 1, name);
        assert.equal(manifest.cpu.length, 1, name);
        const wantsLibc = name.startsWith('iothub-jobs-linux-');
        assert.deepEqual(manifest.libc, wantsLibc ? [name.endsWith('-musl') ? 'musl' : 'glibc'] : undefined, name);
      }
    }
  });

  test('npm publish --dry-run of every tarball succeeds', { timeout: 300_000 }, async () => {
    for (const { name, tarball } of packed) {
      const out = await npmOut(['publish', '--dry-run', '--offline', '--access', 'public', tarball], work);
      assert.match(out, new RegExp(`\\+ ${name}@${VERSION.replaceAll('.', '\\.')}`), out);
    }
  });
});

/** npm's whole output (it reports on stderr), rejecting when it fails. */
function npmOut(args, cwd) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [NPM_CLI, ...args], { cwd, env: cleanEnv(), maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`npm ${args.join(' ')} failed\n${stderr}\n${stdout}`));
      else resolve(`${stdout}${stderr}`);
    });
  });
}

describe('the manifest check', () => {
  test('refuses, one line per problem naming the package: version, files, main/bin targets, a bin not executable, licence, README, os/cpu/libc, optionalDependencies', async () => {
    const dir = path.join(work, 'broken');
    await mkdir(path.join(dir, 'bin'), { recursive: true });
    await writeFile(path.join(dir, 'bin', 'cli.js'), "console.log('no shebang, no x bit')\n", { mode: 0o644 });
    const manifest = {
      name: 'broken-pkg', version: '0.0.9', main: 'lib/index.js', bin: { broken: 'bin/cli.js' },
      files: ['bin/*.js', 'lib/'], os: ['linux'], cpu: ['arm64'], optionalDependencies: { 'broken-pkg-linux-x64': '0.0.8' },
    };
    await writeFile(path.join(dir, 'package.json'), JSON.stringify(manifest));
    const problems = checkPackage(dir, ['bin/cli.js', 'package.json'], {
      version: VERSION, os: 'linux', cpu: 'x64', libc: 'glibc', optionalDependencies: { 'broken-pkg-linux-x64': VERSION },
    });
    assert.deepEqual(problems, [
      `broken-pkg: version 0.0.9, expected ${VERSION} (all packages are versioned together)`,
      'broken-pkg: no `license` field',
      'broken-pkg: `cpu` is arm64, expected x64',
      'broken-pkg: `libc` is not set, expected glibc',
      `broken-pkg: optionalDependencies [["broken-pkg-linux-x64","0.0.8"]], expected one per platform package at its version: {"broken-pkg-linux-x64":"${VERSION}"}`,
      'broken-pkg: `files` lists lib/, which matches no file',
      'broken-pkg: `main` names lib/index.js, which is not in the package',
      'broken-pkg: bin/cli.js is not executable (chmod +x, and commit the mode)',
      'broken-pkg: no LICENSE file',
      'broken-pkg: no README',
    ]);
    await chmod(path.join(dir, 'bin', 'cli.js'), 0o755);
    assert.ok(checkPackage(dir, ['bin/cli.js', 'package.json'], { version: VERSION }).includes('broken-pkg: bin/cli.js has no `#!/usr/bin/env node` line'));
  });

  test('passes a complete package (the staged iothub-emulator)', async () => {
    const stage = path.join(work, 'packages', 'stage', 'iothub-emulator');
    const files = (await contents(tarballOf('iothub-emulator'))).filter((f) => f !== 'package.json');
    assert.deepEqual(checkPackage(stage, [...files, 'package.json'], { version: VERSION, optionalDependencies: Object.fromEntries(EMULATOR_PACKAGES.map((n) => [n, VERSION])) }), []);
  });
});

// The release workflow's npm step, cut from release.yml, run with a `npm` that records its calls.
describe('the release workflow', () => {
  const step = () => {
    const lines = readFileSync(path.join(WORKFLOWS, 'release.yml'), 'utf8').split('\n');
    const at = lines.findIndex((l) => l.includes('name: platform packages first'));
    const runAt = lines.findIndex((l, i) => i > at && /^\s+run: \|$/.test(l));
    const indent = lines[runAt + 1].match(/^\s*/)[0];
    const body = [];
    for (const line of lines.slice(runAt + 1)) {
      if (line.trim() && !line.startsWith(indent)) break;
      body.push(line.slice(indent.length));
    }
    return body.join('\n');
  };

  async function publishWith(tag) {
    const dir = await mkdtemp(path.join(work, 'publish-'));
    await cp(path.join(work, 'packages'), path.join(dir, 'packages'), { recursive: true, filter: (f) => !f.includes(`${path.sep}stage`) });
    await mkdir(path.join(dir, 'bin'));
    await writeFile(path.join(dir, 'bin', 'npm'), '#!/bin/sh\necho "$*" >> "$NPM_CALLS"\n', { mode: 0o755 });
    await writeFile(path.join(dir, 'publish.sh'), step());
    const env = cleanEnv({ PATH: `${path.join(dir, 'bin')}:${process.env.PATH}`, VERSION: tag, NPM_CALLS: path.join(dir, 'calls') });
    return new Promise((resolve) => {
      execFile('bash', ['publish.sh'], { cwd: dir, env }, (err, stdout) => {
        const calls = existsSync(env.NPM_CALLS) ? readFileSync(env.NPM_CALLS, 'utf8').trim().split('\n') : [];
        resolve({ code: err ? err.code : 0, stdout, calls });
      });
    });
  }

  test('publishes every platform tarball before iothub-jobs and iothub-emulator, with provenance and public access', async () => {
    const { code, calls } = await publishWith(`v${VERSION}`);
    assert.equal(code, 0);
    const published = calls.map((c) => c.match(/^publish --provenance --access public packages\/(.+)$/)[1]);
    const mains = [`iothub-jobs-${VERSION}.tgz`, `iothub-emulator-${VERSION}.tgz`];
    assert.deepEqual(published.slice(-2), mains);
    assert.deepEqual(published.slice(0, -2).sort(), packed.filter((p) => !['iothub-jobs', 'iothub-emulator'].includes(p.name)).map((p) => path.basename(p.tarball)).sort());
  });

  test('refuses a tag that is not the packages version, publishing nothing', async () => {
    const { code, stdout, calls } = await publishWith('v9.9.9');
    assert.notEqual(code, 0);
    assert.match(stdout, /no packages\/iothub-jobs-9\.9\.9\.tgz: the tag v9\.9\.9 is not the packages' version/);
    assert.deepEqual(calls, []);
  });
});

describe('actionlint', { skip: prerequisite(!hasPython3() && 'no python3 (actionlint comes from PyPI into a venv)') }, () => {
  test('the workflows pass', { timeout: 300_000 }, () => {
    const { code, output } = lintWorkflows();
    assert.equal(code, 0, output);
  });

  test('a broken workflow is refused (the check is real)', { timeout: 300_000 }, async () => {
    const broken = path.join(work, 'broken.yml');
    const text = (await readFile(path.join(WORKFLOWS, 'release.yml'), 'utf8')).replace('needs: build', 'needs: buidl');
    await writeFile(broken, text);
    const { code, output } = lintWorkflows([broken]);
    assert.equal(code, 1);
    assert.match(output, /job "npm" needs job "buidl" which does not exist/);
  });
});
