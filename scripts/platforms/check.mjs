// `npm run check:platforms [name…]`: verifies each platform package's addon as its users' loader
// will see it — format, architecture, an addon's entry point, the libraries it needs and, on glibc,
// the highest symbol version it requires. Without names it checks every binary present and
// fails when there is none; a named platform must have its binary.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EMULATOR_PLATFORMS, PLATFORMS, ALLOWED_LIBRARIES, binaryName, emulatorExe } from './targets.mjs';
import { compareVersions, highestGlibc, inspectBinary, inspectExecutable } from './inspect.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export const binaryPath = (platform) => path.join(ROOT, 'npm', platform.name, binaryName(platform));

export const emulatorBinaryPath = (platform) => path.join(ROOT, 'packages', 'iothub-emulator', 'npm', platform.name, 'bin', emulatorExe(platform));

/** The emulator's binary: format and architecture; on Linux a static executable (no program
 * interpreter, no shared library), on macOS only the system's libraries. Throws like checkPlatform. */
export function checkEmulator(platform, file = emulatorBinaryPath(platform)) {
  const binary = inspectExecutable(file);
  const problems = [];
  const expect = (ok, message) => ok || problems.push(message);
  expect(binary.format === platform.format, `format ${binary.format}, expected ${platform.format}`);
  expect(binary.arch === platform.arch, `architecture ${binary.arch}, expected ${platform.arch}`);
  if (binary.format === 'elf') {
    expect(binary.interpreter === null, `dynamically linked (interpreter ${binary.interpreter}): not static`);
    expect(binary.neededCount === 0, `needs ${binary.neededCount} shared libraries: not static`);
  }
  const foreign = binary.format === 'mach-o' ? binary.needed.filter((library) => !ALLOWED_LIBRARIES.darwin.test(library)) : [];
  expect(foreign.length === 0, `needs libraries beyond the system's: ${foreign.join(', ')}`);
  if (problems.length) throw new Error(`${path.relative(ROOT, file)}:\n  ${problems.join('\n  ')}`);
  const linkage = binary.format === 'elf' ? `static ${binary.kind}` : binary.format === 'mach-o' ? `needs ${binary.needed.join(' ')} (macOS ${binary.minOs})` : 'Windows executable';
  return { ...binary, summary: `${binary.format} ${binary.arch}, ${linkage}` };
}

/** Throws with every problem found; returns what was read and a one-line summary. */
export function checkPlatform(platform, file = binaryPath(platform)) {
  const binary = inspectBinary(file);
  const problems = [];
  const expect = (ok, message) => ok || problems.push(message);
  expect(binary.format === platform.format, `format ${binary.format}, expected ${platform.format}`);
  expect(binary.arch === platform.arch, `architecture ${binary.arch}, expected ${platform.arch}`);
  expect(binary.exports.includes('napi_register_module_v1'), 'no napi_register_module_v1 export: not a Node addon');
  const napiImports = binary.imports.filter(({ name }) => name.startsWith('napi_')).length;
  if (platform.format === 'pe32+') {
    // Windows has no import library for node.exe: the addon looks every napi_* function up in the
    // running process (napi's `dyn-symbols`); importing one would tie it to one node binary's name.
    expect(napiImports === 0, `imports ${napiImports} napi_* functions instead of resolving them at run time`);
    expect(binary.imports.some(({ name }) => name === 'GetProcAddress'), 'does not import GetProcAddress: cannot resolve napi_* at run time');
  } else {
    expect(napiImports > 0, 'imports no napi_* function from node');
  }

  const libc = { 'mach-o': 'darwin', 'pe32+': 'windows' }[platform.format] ?? (platform.triple.endsWith('-musl') ? 'musl' : 'gnu');
  const foreign = binary.needed.filter((library) => !ALLOWED_LIBRARIES[libc].test(library));
  expect(foreign.length === 0, `needs libraries beyond the C library: ${foreign.join(', ')}`);

  const glibc = highestGlibc(binary);
  if (platform.glibc) {
    const newer = binary.imports.filter(({ version }) => version?.startsWith('GLIBC_') && compareVersions(version.slice(6), platform.glibc) > 0);
    expect(newer.length === 0, `needs glibc > ${platform.glibc}: ${newer.map((s) => `${s.name}@${s.version}`).join(', ')}`);
  } else {
    expect(glibc === null, `a ${libc} build requires glibc ${glibc}`);
  }
  if (problems.length) throw new Error(`${path.relative(ROOT, file)}:\n  ${problems.join('\n  ')}`);

  const floor = glibc ? `glibc ${glibc}` : binary.minOs ? `macOS ${binary.minOs}` : libc;
  const napi = platform.format === 'pe32+' ? 'napi_* resolved at run time' : `${napiImports} napi imports`;
  const summary = `${binary.format} ${binary.arch}, needs ${binary.needed.join(' ')} (${floor}), ${napi}`;
  return { ...binary, glibc, summary };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // Addon platforms by name (linux-x64-gnu), the emulator's as emulator-<name> (emulator-linux-x64).
  const all = [
    ...PLATFORMS.map((p) => ({ ...p, label: p.name, file: binaryPath(p), check: checkPlatform })),
    ...EMULATOR_PLATFORMS.map((p) => ({ ...p, label: `emulator-${p.name}`, file: emulatorBinaryPath(p), check: checkEmulator })),
  ];
  const named = process.argv.slice(2);
  const platforms = named.length ? named.map((name) => all.find((p) => p.label === name) ?? { label: name }) : all.filter((p) => existsSync(p.file));
  if (platforms.length === 0) throw new Error('no platform binary in npm/*/ or packages/iothub-emulator/npm/*/bin/: run `npm run build:platforms` first');
  let failed = 0;
  for (const platform of platforms) {
    try {
      if (!platform.triple) throw new Error(`unknown platform ${platform.label}`);
      console.log(`ok   ${platform.label}: ${platform.check(platform).summary}`);
    } catch (err) {
      failed++;
      console.log(`FAIL ${platform.label}: ${err.message}`);
    }
  }
  process.exitCode = failed ? 1 : 0;
}
