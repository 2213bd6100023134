// The platform steps of `npm test` (CI runs it as root on a clean machine):
//   node scripts/platforms/ci.mjs build  installs the toolchain (setup.sh, idempotent; root only),
//                                        then builds linux-x64-gnu (glibc 2.17), linux-arm64-gnu and
//                                        win32-x64-msvc (addon + iothub-emulator.exe, also put in its
//                                        platform package), so that
//                                        __test__/platforms.test.mjs and windows.test.mjs run in full,
//                                        and the emulator's static musl x64 and arm64 binaries, for
//                                        __test__/emulator-package.test.mjs;
//   node scripts/platforms/ci.mjs test   runs the suites that pin the JavaScript behaviour (parity
//                                        with azure-iothub, the client API, the modern API) on the
//                                        glibc-2.17 x64 build (NAPI_RS_NATIVE_LIBRARY_PATH), then
//                                        in the official Windows node.exe under Wine on the win32
//                                        addon, against iothub-emulator.exe (also under Wine).
// A developer who is not root and lacks the toolchain gets a message instead, never a failure:
// these steps are skipped and `npm test` goes on with the default build.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PLATFORMS } from './targets.mjs';
import { binaryPath } from './check.mjs';
import { runWindowsNode, wineReady, winePath } from './wine.mjs';
import { EMULATOR_EXE, MINGW } from './windows.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUILT_IN_CI = ['linux-x64-gnu', 'linux-arm64-gnu', 'emulator-linux-x64', 'emulator-linux-arm64'];
// Built when MinGW-w64, Wine and the Windows node.exe are there (setup.sh installs them too).
const WINDOWS = 'win32-x64-msvc';
const SUITES = ['parity', 'client', 'modern'].map((s) => path.join('__test__', `${s}.test.mjs`));
const x64 = PLATFORMS.find((p) => p.name === 'linux-x64-gnu');

const quiet = (command, args) => spawnSync(command, args, { stdio: 'ignore' }).status === 0;
// What setup.sh installs, checked without root: zig, Debian's compiler, qemu and the arm64 node.
const toolchainReady = () =>
  quiet('python3', ['-m', 'ziglang', 'version']) && quiet('cargo-zigbuild', ['--version']) && existsSync('/usr/bin/rustc') &&
  quiet('qemu-aarch64', [path.join(ROOT, 'target', 'platforms', 'node-arm64', 'bin', 'node'), '-v']);
const windowsReady = () => quiet(`${MINGW}-gcc`, ['--version']) && wineReady();
const skip = (why) => console.log(`platforms: skipped, ${why}`);

const step = process.argv[2];
if (step === 'build') {
  if (process.getuid?.() === 0) execFileSync('bash', [path.join(ROOT, 'scripts', 'platforms', 'setup.sh')], { stdio: 'inherit' });
  if (!toolchainReady()) {
    skip('the cross toolchain is not installed and installing it needs root: run `sudo npm run setup:platforms` once');
  } else {
    // emulator-win32-x64 packages the .exe the win32 build makes (no build of its own).
    const platforms = windowsReady() ? [...BUILT_IN_CI, WINDOWS, 'emulator-win32-x64'] : BUILT_IN_CI;
    if (!windowsReady()) skip(`${WINDOWS}: MinGW-w64, Wine or the Windows node.exe is missing (\`sudo npm run setup:platforms\`)`);
    const started = Date.now();
    // The quick profile (build.mjs: unoptimised, no LTO, parallel codegen) keeps CI within its
    // time; the x64 gnu addon, whose suites run on it, is the release build itself (buildWithStubs).
    const env = { ...process.env, IOTHUB_PLATFORMS_QUICK: '1' };
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'platforms', 'build.mjs'), ...platforms], { cwd: ROOT, env, stdio: 'inherit' });
    console.log(`platforms: ${platforms.join(', ')} built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
} else if (step === 'test') {
  if (!existsSync(binaryPath(x64))) {
    skip(`no ${path.relative(ROOT, binaryPath(x64))} (see \`node scripts/platforms/ci.mjs build\`)`);
  } else {
    const env = { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: binaryPath(x64) };
    // The override must really be what the package loads, or the suites would test the default build.
    const loaded = execFileSync(process.execPath, ['-p', `require(${JSON.stringify(ROOT)}); Object.keys(require.cache).filter((f) => f.endsWith('.node')).join()`], { env, encoding: 'utf8' }).trim();
    if (loaded !== binaryPath(x64)) throw new Error(`the package loaded ${loaded || 'no addon'}, not ${binaryPath(x64)}`);
    console.log(`platforms: ${SUITES.join(' ')} on ${path.relative(ROOT, binaryPath(x64))}`);
    execFileSync(process.execPath, ['--test', '--test-concurrency=1', ...SUITES], { cwd: ROOT, env, stdio: 'inherit' });
  }
  await suitesUnderWine();
} else {
  throw new Error('usage: node scripts/platforms/ci.mjs build|test');
}

// The same suites in node.exe under Wine. They start their emulator with the project's launcher,
// which on Windows runs target/release/iothub-emulator.exe (scripts/emulator-process.mjs): Wine
// cannot hand a Linux process's pipes to node.exe, so that is the win32 build, under Wine too.
async function suitesUnderWine() {
  const win32 = PLATFORMS.find((p) => p.name === WINDOWS);
  if (!wineReady() || !existsSync(binaryPath(win32)) || !existsSync(EMULATOR_EXE)) {
    skip(`${WINDOWS}: not built or no Wine (see \`node scripts/platforms/ci.mjs build\`)`);
    return;
  }
  copyFileSync(EMULATOR_EXE, path.join(ROOT, 'target', 'release', 'iothub-emulator.exe'));
  const env = { NAPI_RS_NATIVE_LIBRARY_PATH: winePath(binaryPath(win32)) };
  const loaded = await runWindowsNode(['-p', `require(${JSON.stringify(winePath(ROOT))}); Object.keys(require.cache).filter((f) => f.endsWith('.node')).join()`], { env });
  if (loaded.stdout.trim() !== env.NAPI_RS_NATIVE_LIBRARY_PATH) throw new Error(`node.exe loaded ${loaded.stdout.trim() || 'no addon'}, not ${env.NAPI_RS_NATIVE_LIBRARY_PATH}: ${loaded.stderr}`);
  console.log(`platforms: ${SUITES.join(' ')} in node.exe under Wine on ${path.relative(ROOT, binaryPath(win32))}`);
  const started = Date.now();
  const result = await runWindowsNode(['--test', '--test-concurrency=1', ...SUITES.map((suite) => suite.replaceAll('/', '\\'))], { env, timeout: 900_000 });
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  if (result.code !== 0) throw new Error(`the suites failed in node.exe under Wine (exit ${result.code ?? result.signal})`);
  console.log(`platforms: the suites passed under Wine in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}
