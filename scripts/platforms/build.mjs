// `npm run build:platforms [name…]`: builds the release addon for every platform package (or the
// ones named) from this machine — cargo-zigbuild, or for x64 gnu rustc's own linker on zig's glibc
// stubs, or for Windows cargo with Debian's MinGW-w64 linker (windows.mjs) — writes each into
// npm/<name>/ and checks it. For Windows it also builds the emulator, to
// target/platforms/x86_64-pc-windows-gnu/release/iothub-emulator.exe.
// Needs `scripts/platforms/setup.sh` once. Builds run at the lowest priority on two jobs.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PLATFORMS, binaryName } from './targets.mjs';
import { checkPlatform } from './check.mjs';
import { glibcStubs } from './glibc-stubs.mjs';
import { mingwEnv } from './windows.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET_DIR = path.join(ROOT, 'target', 'platforms');
// Debian's compiler and the cargo of the same release, ahead of rustup's on PATH.
const DEBIAN_BIN = path.join(TARGET_DIR, 'bin');

function build(platform) {
  const env = { ...process.env };
  if (platform.std === 'rustup') return buildWithStubs(platform, env);
  const args = ['-n', '19', 'cargo', platform.linker === 'mingw' ? 'build' : 'zigbuild', '--release', '--lib', '-p', 'iothub-jobs', '-j', '2'];
  args.push('--target-dir', TARGET_DIR, '--target', platform.glibc ? `${platform.triple}.${platform.glibc}` : platform.triple);
  mkdirSync(DEBIAN_BIN, { recursive: true });
  // rustc strips Apple binaries (`strip = "symbols"`) with `rust-objcopy`, which Debian's rustc
  // does not ship: LLVM's objcopy is that same tool.
  for (const [name, tool] of [['cargo', '/usr/bin/cargo'], ['rust-objcopy', '/usr/bin/llvm-objcopy']]) {
    if (!existsSync(path.join(DEBIAN_BIN, name))) symlinkSync(tool, path.join(DEBIAN_BIN, name));
  }
  Object.assign(env, { PATH: `${DEBIAN_BIN}:${env.PATH}`, RUSTC: '/usr/bin/rustc' });
  if (platform.std === 'source') {
    // -Zbuild-std on a stable compiler; panic_unwind because napi turns panics into JS errors.
    env.RUSTC_BOOTSTRAP = '1';
    args.push('-Zbuild-std=std,panic_unwind');
  }
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

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !PLATFORMS.some((p) => p.name === name));
if (unknown.length) throw new Error(`unknown platform(s): ${unknown.join(', ')}`);
for (const platform of PLATFORMS.filter((p) => wanted.length === 0 || wanted.includes(p.name))) {
  const started = Date.now();
  const file = build(platform);
  const report = checkPlatform(platform);
  console.log(`${platform.name}: ${path.relative(ROOT, file)} built in ${((Date.now() - started) / 1000).toFixed(0)} s; ${report.summary}`);
}
