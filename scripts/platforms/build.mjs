// `npm run build:platforms [name…]`: builds the release addon for every platform package (or the
// ones named) from this machine — cargo-zigbuild, or for x64 gnu rustc's own linker on zig's glibc
// stubs, or for Windows cargo with Debian's MinGW-w64 linker (windows.mjs) — writes each into
// npm/<name>/ and checks it. For Windows it also builds the emulator, to
// target/platforms/x86_64-pc-windows-gnu/release/iothub-emulator.exe. Then the emulator's
// binaries, into packages/iothub-emulator/npm/<name>/bin/ (named emulator-<name> on the command line).
// Needs `scripts/platforms/setup.sh` once. Builds run at the lowest priority on two jobs.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EMULATOR_PLATFORMS, PLATFORMS, binaryName } from './targets.mjs';
import { checkEmulator, checkPlatform, emulatorBinaryPath } from './check.mjs';
import { glibcStubs } from './glibc-stubs.mjs';
import { EMULATOR_EXE, mingwEnv } from './windows.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET_DIR = path.join(ROOT, 'target', 'platforms');
// Debian's compiler and the cargo of the same release, ahead of rustup's on PATH.
const DEBIAN_BIN = path.join(TARGET_DIR, 'bin');

function build(platform) {
  const env = { ...process.env };
  if (platform.std === 'rustup') return buildWithStubs(platform, env);
  const args = debianCargo(platform, ['--lib', '-p', 'iothub-jobs'], env, TARGET_DIR);
  // A Node addon is a shared library loaded into a dynamically linked `node`: never a static libc.
  if (platform.triple.endsWith('-musl')) {
    env[`CARGO_TARGET_${platform.triple.toUpperCase().replaceAll('-', '_')}_RUSTFLAGS`] = '-C target-feature=-crt-static';
  }
  if (platform.linker === 'mingw') {
    Object.assign(env, mingwEnv(platform, TARGET_DIR));
    execFileSync('nice', args, { cwd: ROOT, env, stdio: 'inherit' });
    // The emulator's win32 package ships this .exe (same target, toolchain and std build).
    const emulator = args.map((arg) => (arg === '--lib' ? '--bins' : arg === 'iothub-jobs' ? 'iothub-emulator' : arg));
    execFileSync('nice', emulator, { cwd: ROOT, env, stdio: 'inherit' });
  } else {
    execFileSync('nice', args, { cwd: ROOT, env, stdio: 'inherit' });
  }
  return install(platform, TARGET_DIR);
}

/** The `nice` arguments of a release `cargo zigbuild` (`cargo build` for MinGW) of `crate` with
 * Debian's compiler into `targetDir`; sets what that compiler needs in `env`. */
function debianCargo(platform, crate, env, targetDir) {
  const args = ['-n', '19', 'cargo', platform.linker === 'mingw' ? 'build' : 'zigbuild', '--release', ...crate, '-j', '2'];
  args.push('--target-dir', targetDir, '--target', platform.glibc ? `${platform.triple}.${platform.glibc}` : platform.triple);
  mkdirSync(DEBIAN_BIN, { recursive: true });
  // rustc strips Apple binaries (`strip = "symbols"`) with `rust-objcopy`, which Debian's rustc
  // does not ship: LLVM's objcopy is that same tool.
  for (const [name, tool] of [['cargo', '/usr/bin/cargo'], ['rust-objcopy', '/usr/bin/llvm-objcopy']]) {
    if (!existsSync(path.join(DEBIAN_BIN, name))) symlinkSync(tool, path.join(DEBIAN_BIN, name));
  }
  Object.assign(env, { PATH: `${DEBIAN_BIN}:${env.PATH}`, RUSTC: '/usr/bin/rustc' });
  if (process.env.IOTHUB_PLATFORMS_QUICK === '1') {
    // CI's builds check that every platform builds, links against what it may need, loads and
    // runs the suites; how fast the code runs is measured on the release build. Unoptimised
    // (opt-level 0, still without debug assertions or overflow checks, like any release build)
    // they cost a third of the CPU time of opt-level 3 (the emulator for x64 musl: 215 s vs 667 s;
    // opt-level 1: 585 s). `npm run build:platforms` (what is published) keeps the release profile.
    Object.assign(env, { CARGO_PROFILE_RELEASE_OPT_LEVEL: '0', CARGO_PROFILE_RELEASE_LTO: 'false', CARGO_PROFILE_RELEASE_CODEGEN_UNITS: '16' });
  }
  if (platform.std === 'source') {
    // -Zbuild-std on a stable compiler; panic_unwind because napi turns panics into JS errors.
    env.RUSTC_BOOTSTRAP = '1';
    args.push('-Zbuild-std=std,panic_unwind');
  }
  return args;
}

// The emulator: an executable, static on musl (the target's default, crt-static), in a target
// directory of its own (its flags differ from the addon's, which would rebuild both every time).
// The Windows .exe is the one the win32-x64-msvc build makes (EMULATOR_EXE), when it was made.
const EMULATOR_TARGET_DIR = path.join(TARGET_DIR, 'emulator');
function buildEmulator(platform) {
  const destination = emulatorBinaryPath(platform);
  mkdirSync(path.dirname(destination), { recursive: true });
  if (platform.os === 'win32') {
    if (!existsSync(EMULATOR_EXE)) return null;
    copyFileSync(EMULATOR_EXE, destination);
    return destination;
  }
  const env = { ...process.env };
  const args = debianCargo(platform, ['--bin', 'iothub-emulator', '-p', 'iothub-emulator'], env, EMULATOR_TARGET_DIR);
  if (platform.triple.endsWith('-musl')) {
    // Debian's std built from source has no self-contained crt objects (rcrt1.o, crti.o…): zig
    // brings musl's own; a static (non-PIE) executable, as zig links it.
    env[`CARGO_TARGET_${platform.triple.toUpperCase().replaceAll('-', '_')}_RUSTFLAGS`] = '-C link-self-contained=no -C relocation-model=static';
  }
  execFileSync('nice', args, { cwd: ROOT, env, stdio: 'inherit' });
  copyFileSync(path.join(EMULATOR_TARGET_DIR, platform.triple, 'release', path.basename(destination)), destination);
  return destination;
}

// The x64 gnu addon: the default build's compiler, flags and target directory (so every dependency
// is already compiled and the symbol names match src/cold-start.order); only its link differs,
// against glibc stubs instead of this machine's glibc (build.rs adds `-L` for them).
function buildWithStubs(platform, env) {
  env.IOTHUB_JOBS_GLIBC_STUBS = glibcStubs(TARGET_DIR, platform.arch, platform.glibc);
  const args = ['-n', '19', 'cargo', 'build', '--release', '--lib', '-p', 'iothub-jobs', '-j', '2', '--target', platform.triple];
  execFileSync('nice', args, { cwd: ROOT, env, stdio: 'inherit' });
  return install(platform, path.join(ROOT, 'target'));
}

function install(platform, targetDir) {
  const library = { 'mach-o': 'libiothub_jobs.dylib', 'pe32+': 'iothub_jobs.dll' }[platform.format] ?? 'libiothub_jobs.so';
  const destination = path.join(ROOT, 'npm', platform.name, binaryName(platform));
  copyFileSync(path.join(targetDir, platform.triple, 'release', library), destination);
  return destination;
}

// Addon platforms by their name (linux-x64-gnu), the emulator's as emulator-<name> (emulator-linux-x64).
const wanted = process.argv.slice(2);
const emulatorName = (p) => `emulator-${p.name}`;
const unknown = wanted.filter((name) => !PLATFORMS.some((p) => p.name === name) && !EMULATOR_PLATFORMS.some((p) => emulatorName(p) === name));
if (unknown.length) throw new Error(`unknown platform(s): ${unknown.join(', ')}`);
for (const platform of PLATFORMS.filter((p) => wanted.length === 0 || wanted.includes(p.name))) {
  const started = Date.now();
  const file = build(platform);
  const report = checkPlatform(platform);
  console.log(`${platform.name}: ${path.relative(ROOT, file)} built in ${((Date.now() - started) / 1000).toFixed(0)} s; ${report.summary}`);
}
for (const platform of EMULATOR_PLATFORMS.filter((p) => wanted.length === 0 || wanted.includes(emulatorName(p)))) {
  const started = Date.now();
  const file = buildEmulator(platform);
  if (!file) {
    console.log(`${emulatorName(platform)}: no ${path.relative(ROOT, EMULATOR_EXE)} (\`npm run build:platforms win32-x64-msvc\` makes it; else the hosted workflow)`);
    continue;
  }
  const report = checkEmulator(platform);
  console.log(`${emulatorName(platform)}: ${path.relative(ROOT, file)} built in ${((Date.now() - started) / 1000).toFixed(0)} s; ${report.summary}`);
}
