// The `iothub-emulator` Python wheels (packages/python): one per platform of the emulator's npm
// packages, each carrying the very binary `npm run build:platforms` put in
// packages/iothub-emulator/npm/<platform>/bin/ (checked first by check.mjs: static musl ELF, Mach-O,
// PE), beside the Python launcher, API and pytest plugin. Packed by pypa's `wheel pack` (pinned in
// packages/python/requirements-build.txt, venv target/python-build) from a staged tree whose
// METADATA comes from pyproject.toml's [project] table; pyproject.toml's version must be the npm
// package's (one release, one number). Platforms without a binary are skipped, saying what builds them.
//
//   node scripts/wheels.mjs [--out DIR]   → into target/packages/ (or DIR); `npm run pack:all` runs it
//   node scripts/wheels.mjs --check WHEEL…  checks wheels' tags against the binaries they carry
//
// Tags: a Linux wheel's binary is static (musl, no interpreter, no library), so one wheel fits both
// glibc (manylinux_2_17, the oldest pip still installs from) and musl (musllinux_1_1) systems;
// macOS's carries the binary's own minimum macOS version; Windows' is win_amd64.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EMULATOR_PLATFORMS, emulatorExe } from './platforms/targets.mjs';
import { checkEmulator, emulatorBinaryPath } from './platforms/check.mjs';
import { inspectExecutable } from './platforms/inspect.mjs';
import { hasPython3, pythonBuild } from './python-sdk.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGE = path.join(ROOT, 'packages', 'python');
const NPM_PACKAGE = path.join(ROOT, 'packages', 'iothub-emulator', 'package.json');
const MODULE = 'iothub_emulator';

const python = (script, args = []) => execFileSync(pythonBuild(), ['-c', script, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

/** pyproject.toml's [project] table (read by Python's own tomllib). */
export function pyproject() {
  return JSON.parse(python('import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], "rb"))["project"]))', [path.join(PACKAGE, 'pyproject.toml')]));
}

/** The project's version, checked: pyproject.toml's must be the npm package's. */
export function wheelVersion(project = pyproject()) {
  const npm = JSON.parse(readFileSync(NPM_PACKAGE, 'utf8')).version;
  if (project.version !== npm) throw new Error(`packages/python/pyproject.toml is at ${project.version}, the iothub-emulator npm package at ${npm}: they are versioned together`);
  return npm;
}

/** The platform tags of a platform's wheel, from the binary it carries. */
export function platformTags(platform, binary = inspectExecutable(emulatorBinaryPath(platform))) {
  const arch = platform.arch;
  if (platform.os === 'linux') return [`manylinux_2_17_${arch}`, `manylinux2014_${arch}`, `musllinux_1_1_${arch}`];
  if (platform.os === 'darwin') {
    const [major, minor = '0'] = (binary.minOs ?? (arch === 'aarch64' ? '11.0' : '10.12')).split('.');
    return [`macosx_${major}_${Number(major) >= 11 ? 0 : minor}_${arch === 'aarch64' ? 'arm64' : 'x86_64'}`];
  }
  return ['win_amd64'];
}

function metadata(project, version) {
  const lines = [
    'Metadata-Version: 2.1',
    `Name: ${project.name}`,
    `Version: ${version}`,
    `Summary: ${project.description}`,
    `Requires-Python: ${project['requires-python']}`,
    `License: ${project.license}`,
    `Keywords: ${project.keywords.join(',')}`,
    ...project.classifiers.map((c) => `Classifier: ${c}`),
    'Description-Content-Type: text/markdown',
  ];
  return `${lines.join('\n')}\n\n${readFileSync(path.join(PACKAGE, project.readme), 'utf8')}`;
}

function entryPoints(project) {
  const groups = { console_scripts: project.scripts, ...project['entry-points'] };
  return Object.entries(groups).map(([group, entries]) => `[${group}]\n${Object.entries(entries).map(([k, v]) => `${k} = ${v}\n`).join('')}`).join('\n');
}

/** Packs one platform's wheel into `out`; returns its path. */
function packWheel(platform, project, version, out) {
  const stage = mkdtempSync(path.join(os.tmpdir(), 'iothub-emulator-wheel-'));
  try {
    const tree = path.join(stage, `${MODULE}-${version}`);
    const moduleDir = path.join(tree, MODULE);
    cpSync(path.join(PACKAGE, MODULE), moduleDir, { recursive: true, filter: (src) => !src.includes('__pycache__') });
    mkdirSync(path.join(moduleDir, 'bin'));
    const binary = path.join(moduleDir, 'bin', emulatorExe(platform));
    copyFileSync(emulatorBinaryPath(platform), binary);
    chmodSync(binary, 0o755);
    const distInfo = path.join(tree, `${MODULE}-${version}.dist-info`);
    mkdirSync(distInfo);
    writeFileSync(path.join(distInfo, 'METADATA'), metadata(project, version));
    writeFileSync(path.join(distInfo, 'entry_points.txt'), entryPoints(project));
    const tags = platformTags(platform).map((tag) => `Tag: py3-none-${tag}`);
    writeFileSync(path.join(distInfo, 'WHEEL'), ['Wheel-Version: 1.0', 'Generator: iothub-jobs scripts/wheels.mjs', 'Root-Is-Purelib: false', ...tags, ''].join('\n'));
    const said = execFileSync(pythonBuild(), ['-m', 'wheel', 'pack', tree, '--dest-dir', out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const wheel = /Repacking wheel as (.+\.whl)/.exec(said)?.[1];
    if (!wheel) throw new Error(`wheel pack said: ${said}`);
    return path.resolve(wheel);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Packs every platform's wheel whose binary is built into `out`; returns [{name, tarball}] and
 * [{name, why}] (the shape of pack-all.mjs's lists). */
export function packWheels(out = path.join(ROOT, 'target', 'packages'), platforms = EMULATOR_PLATFORMS) {
  const name = (platform) => `iothub-emulator (Python wheel, ${platform.name})`;
  const skipped = [];
  const built = platforms.filter((platform) => {
    const binary = emulatorBinaryPath(platform);
    if (existsSync(binary)) return true;
    const builtBy = platform.os === 'win32' ? 'npm run build:platforms win32-x64-msvc emulator-win32-x64, or the hosted workflow' : `npm run build:platforms emulator-${platform.name}`;
    skipped.push({ name: name(platform), why: `no ${path.relative(ROOT, binary)} (${builtBy})` });
    return false;
  });
  if (built.length && !hasPython3()) {
    return { packed: [], skipped: [...skipped, ...built.map((platform) => ({ name: name(platform), why: 'python3 is not installed (it packs the wheels)' }))] };
  }
  mkdirSync(out, { recursive: true });
  const packed = [];
  const project = built.length ? pyproject() : null;
  const version = project && wheelVersion(project);
  for (const platform of built) {
    checkEmulator(platform); // the binary is what its platform runs, or no wheel
    const wheel = packWheel(platform, project, version, out);
    checkWheel(wheel);
    packed.push({ name: name(platform), tarball: wheel });
  }
  return { packed, skipped };
}

// Reads a wheel with Python's zipfile: the tags of its name and of its WHEEL file, its RECORD,
// and its binary (extracted to `dir`, its RECORD hash checked).
const READ_WHEEL = `
import base64, hashlib, json, os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    info = next(n for n in names if n.endswith('.dist-info/WHEEL'))
    record = next(n for n in names if n.endswith('.dist-info/RECORD'))
    tags = [l.split(': ', 1)[1].strip() for l in z.read(info).decode().splitlines() if l.startswith('Tag: ')]
    rows = {r.split(',')[0]: r.split(',')[1] for r in z.read(record).decode().splitlines() if r}
    binaries = [n for n in names if n.startswith('${MODULE}/bin/')]
    found = []
    for n in binaries:
        data = z.read(n)
        digest = 'sha256=' + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
        target = os.path.join(out, os.path.basename(n))
        open(target, 'wb').write(data)
        found.append({'name': n, 'path': target, 'recorded': rows.get(n) == digest, 'mode': z.getinfo(n).external_attr >> 16})
print(json.dumps({'tags': tags, 'binaries': found, 'names': names}))
`;

/** Checks a wheel's tags against the binary it carries: a Linux tag needs a static ELF of its
 * architecture, macOS's a Mach-O of its architecture and no newer minimum macOS, win_amd64 an x64
 * PE named .exe; the name's tags are WHEEL's and RECORD hashes the binary. Throws with every problem. */
export function checkWheel(wheel) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-emulator-wheel-check-'));
  try {
    const read = JSON.parse(python(READ_WHEEL, [wheel, dir]));
    const problems = [];
    const expect = (ok, message) => ok || problems.push(message);
    const [, , , pyTag, abiTag, platTag] = /^(.+?)-(.+?)-(.+?)-(.+?)-(.+)\.whl$/.exec(path.basename(wheel)) ?? [];
    const nameTags = (platTag ?? '').split('.').map((plat) => `${pyTag}-${abiTag}-${plat}`);
    expect([...read.tags].sort().join() === nameTags.sort().join(), `the name's tags ${nameTags.join(', ')} are not WHEEL's ${read.tags.join(', ')}`);
    expect(read.binaries.length === 1, `${read.binaries.length} binaries in ${MODULE}/bin/, expected 1`);
    const [entry] = read.binaries;
    const binary = entry && inspectExecutable(entry.path);
    if (entry) expect(entry.recorded, `RECORD's hash of ${entry.name} does not match it`);
    for (const tag of read.tags) {
      const plat = tag.split('-')[2];
      if (!binary) break;
      const linux = /^(?:manylinux_\d+_\d+|manylinux2014|musllinux_\d+_\d+)_(x86_64|aarch64)$/.exec(plat);
      const mac = /^macosx_(\d+)_(\d+)_(x86_64|arm64)$/.exec(plat);
      if (linux) {
        expect(binary.format === 'elf' && binary.arch === linux[1], `${plat}: the binary is ${binary.format} ${binary.arch}`);
        expect(binary.interpreter === null && binary.neededCount === 0, `${plat}: the binary is not static (interpreter ${binary.interpreter}, ${binary.neededCount} libraries)`);
        expect((entry.mode & 0o111) === 0o111, `${plat}: ${entry.name} is not executable in the wheel (mode ${entry.mode.toString(8)})`);
      } else if (mac) {
        expect(binary.format === 'mach-o' && binary.arch === (mac[3] === 'arm64' ? 'aarch64' : 'x86_64'), `${plat}: the binary is ${binary.format} ${binary.arch}`);
        const [major, minor] = (binary.minOs ?? '0.0').split('.').map(Number);
        expect(major < Number(mac[1]) || (major === Number(mac[1]) && minor <= Number(mac[2])), `${plat}: the binary needs macOS ${binary.minOs}`);
      } else if (plat === 'win_amd64') {
        expect(binary.format === 'pe32+' && binary.arch === 'x86_64' && entry.name.endsWith('.exe'), `${plat}: the binary is ${binary.format} ${binary.arch} (${entry.name})`);
      } else {
        problems.push(`${plat}: a platform tag this project does not ship`);
      }
    }
    if (problems.length) throw new Error(`${path.basename(wheel)}:\n  ${problems.join('\n  ')}`);
    return { tags: read.tags, binary, files: read.names };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  if (argv[0] === '--check') {
    for (const wheel of argv.slice(1)) console.log(`ok      ${path.basename(wheel)}: ${checkWheel(wheel).tags.join(', ')}`);
  } else {
    const at = argv.indexOf('--out');
    const { packed, skipped } = packWheels(at >= 0 ? path.resolve(argv[at + 1]) : undefined);
    for (const p of packed) console.log(`packed  ${p.name}: ${path.relative(process.cwd(), p.tarball)}`);
    for (const s of skipped) console.log(`skipped ${s.name}: ${s.why}`);
  }
}
