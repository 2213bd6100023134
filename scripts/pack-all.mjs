// `npm run pack:all [-- --out DIR] [--require-all] [--json]`: every package as a registry gets it,
// into target/packages/ (or DIR): iothub-jobs, its platform packages in npm/*/ that hold their
// addon, iothub-emulator, and its platform packages in packages/iothub-emulator/npm/*/ that hold
// their binary (the others are listed as skipped, with what builds them; `--require-all`, as the
// release workflow runs it, makes a missing one an error).
//
// The tarballs are the published form, not the development checkout: each package is staged in
// <out>/stage/<name>/ from the files `npm pack` would take, plus the repository's LICENSE, and
// the main packages get what `napi prepublish` writes: no addon of their own (the checkout's
// iothub-jobs.*.node stays behind) and one optionalDependencies entry per platform package at the
// same version. Every staged package is checked (package-check.mjs) before anything is packed:
// one line per problem, naming the package (a platform package that cannot be packed here has its
// manifest checked all the same). Prints one line per package; `--json` prints the list
// of {name, tarball} instead. The command also writes the Python wheels (scripts/wheels.mjs: the
// same binaries, the same version) there.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkManifest, checkPackage } from './package-check.mjs';
import { EMULATOR_PLATFORMS, PLATFORMS, npmSystem } from './platforms/targets.mjs';
import { packWheels } from './wheels.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** npm's own CLI next to the running node, so no npm lifecycle state or shim is involved. */
export const NPM_CLI = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');

const readManifest = (dir) => JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
const npm = (args, cwd) => execFileSync(process.execPath, [NPM_CLI, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const npmJson = (args, cwd) => {
  const text = npm([...args, '--json'], cwd);
  return JSON.parse(text.slice(text.indexOf('[')))[0];
};

/** The platform packages under `parent` (one folder each, sorted), each with its entry of `table`. */
function platformPackages(parent, table) {
  const dirs = readdirSync(parent).sort();
  return dirs.map((folder) => ({ folder, dir: path.join(parent, folder), platform: table.find((p) => p.name === folder) }));
}

/** Every package: its folder, how its manifest is published, what its check expects, and for a
 * platform package the file it cannot be packed without. */
function packageList() {
  const version = readManifest(ROOT).version;
  const addons = platformPackages(path.join(ROOT, 'npm'), PLATFORMS);
  const emulatorDir = path.join(ROOT, 'packages', 'iothub-emulator');
  const emulators = platformPackages(path.join(emulatorDir, 'npm'), EMULATOR_PLATFORMS);
  const atVersion = (list) => Object.fromEntries(list.map(({ dir }) => [readManifest(dir).name, version]));
  const main = (dir, platforms) => ({
    dir,
    expect: { version, optionalDependencies: atVersion(platforms) },
    // What `napi prepublish` publishes: the platform packages as optional dependencies, no addon.
    publish: (manifest) => ({ ...manifest, files: manifest.files.filter((f) => !f.endsWith('.node')), optionalDependencies: atVersion(platforms) }),
    leaveOut: (file) => file.endsWith('.node'),
  });
  const unknown = (folder, table) => ({ expect: { version }, problems: [`${folder}: a platform package with no entry in scripts/platforms/targets.mjs (${table})`] });
  return [
    main(ROOT, addons),
    ...addons.map(({ folder, dir, platform }) => ({
      dir,
      ...(platform ? { expect: { version, ...npmSystem(platform) }, needs: readManifest(dir).main, builtBy: 'npm run build:platforms' } : unknown(folder, 'PLATFORMS')),
    })),
    main(emulatorDir, emulators),
    ...emulators.map(({ folder, dir, platform }) => ({
      dir,
      ...(platform
        ? {
            expect: { version, os: platform.os, cpu: platform.cpu, libc: null, executables: [readManifest(dir).files[0]] },
            needs: readManifest(dir).files[0],
            builtBy: platform.os === 'win32' ? 'npm run build:platforms win32-x64-msvc emulator-win32-x64, or the hosted workflow' : 'npm run build:platforms',
          }
        : unknown(folder, 'EMULATOR_PLATFORMS')),
    })),
  ].map((p) => ({ ...p, name: readManifest(p.dir).name }));
}

/** Copies what `npm pack` takes from `p.dir` (less what the published form leaves out) into
 * `stage`, with the repository's LICENSE and the published manifest; returns the files. */
function stagePackage(p, stage) {
  rmSync(stage, { recursive: true, force: true });
  const files = npmJson(['pack', '--dry-run'], p.dir).files.map((f) => f.path).filter((f) => !p.leaveOut?.(f));
  for (const file of files) {
    mkdirSync(path.dirname(path.join(stage, file)), { recursive: true });
    copyFileSync(path.join(p.dir, file), path.join(stage, file));
  }
  if (!files.some((f) => /^licen[cs]e(\.\w+)?$/i.test(f)) && existsSync(path.join(ROOT, 'LICENSE'))) {
    copyFileSync(path.join(ROOT, 'LICENSE'), path.join(stage, 'LICENSE'));
    files.push('LICENSE');
  }
  const manifest = readManifest(p.dir);
  writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(p.publish ? p.publish(manifest) : manifest, null, 2)}\n`);
  return files;
}

export class PackageProblems extends Error {
  constructor(problems) {
    super(problems.join('\n'));
    this.name = 'PackageProblems';
    this.problems = problems;
  }
}

/** Stages, checks and packs every package that can be packed into `out`; returns
 * { packed: [{name, tarball}], skipped: [{name, why}] }. Throws PackageProblems (every problem,
 * one line each) before packing anything when a package is wrong. */
export function packAll(out = path.join(ROOT, 'target', 'packages'), { requireAll = false } = {}) {
  mkdirSync(out, { recursive: true });
  const ready = [];
  const skipped = [];
  const problems = [];
  for (const p of packageList()) {
    if (p.problems) {
      problems.push(...p.problems);
      continue;
    }
    if (p.needs && !existsSync(path.join(p.dir, p.needs))) {
      const why = `no ${path.relative(ROOT, path.join(p.dir, p.needs))} (${p.builtBy})`;
      if (requireAll) problems.push(`${p.name}: ${why}`);
      else skipped.push({ name: p.name, why });
      problems.push(...checkManifest(readManifest(p.dir), p.expect));
      continue;
    }
    const stage = path.join(out, 'stage', p.name);
    problems.push(...checkPackage(stage, stagePackage(p, stage), p.expect));
    ready.push({ ...p, stage });
  }
  if (problems.length) throw new PackageProblems(problems);
  // A tarball of an earlier run (a platform package not built this time) must not be published.
  for (const file of readdirSync(out)) if (/^iothub-.*\.tgz$/.test(file)) rmSync(path.join(out, file));
  const packed = ready.map((p) => ({ name: p.name, tarball: path.join(out, npmJson(['pack', '--pack-destination', out], p.stage).filename) }));
  return { packed, skipped };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--out');
  try {
    const out = at > 0 ? path.resolve(process.argv[at + 1]) : undefined;
    const requireAll = process.argv.includes('--require-all');
    const { packed, skipped } = packAll(out, { requireAll });
    const wheels = packWheels(out);
    if (requireAll && wheels.skipped.length) throw new PackageProblems(wheels.skipped.map((s) => `${s.name}: ${s.why}`));
    packed.push(...wheels.packed);
    skipped.push(...wheels.skipped);
    if (process.argv.includes('--json')) console.log(JSON.stringify(packed));
    else {
      for (const p of packed) console.log(`packed  ${p.name}: ${path.relative(process.cwd(), p.tarball)}`);
      for (const s of skipped) console.log(`skipped ${s.name}: ${s.why}`);
    }
  } catch (err) {
    if (!(err instanceof PackageProblems)) throw err;
    for (const line of err.problems) console.error(`pack:all: ${line}`);
    process.exitCode = 1;
  }
}
