// Running npm and packaged commands from the tests, isolated from the `npm test` that runs them.
import { execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NPM_CLI } from '../../scripts/pack-all.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export { NPM_CLI };

/** An environment with no npm lifecycle variables, proxies, binding or emulator override from
 * our caller, so the npm and node we start read no settings from the run that started us. */
export function cleanEnv(extra) {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(npm_|NAPI_RS_|NODE_OPTIONS$|NODE_PATH$|NODE_EXTRA_CA_CERTS$|IOTHUB_EMULATOR$|(https?|all|no)_proxy$)/i.test(k)),
  );
  return { ...env, ...extra };
}

/** Runs a command to its end; rejects, with its output, when it fails. */
export function run(command, args, { cwd, env = cleanEnv(), timeout = 180_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env, timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed (${err.code ?? err.signal})\n${stderr}\n${stdout}`));
      else resolve(stdout);
    });
  });
}

/** The last line of a command's output, parsed as JSON. */
export const lastJson = (stdout) => JSON.parse(stdout.trim().split('\n').pop());

/** Spawns a command in `cwd`; resolves {code, signal, stdout, stderr} when it exits. */
export function runIn(cwd, command, args, { env = cleanEnv(), timeoutMs = 60_000, onStdout } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
      onStdout?.(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not exit within ${timeoutMs} ms\n${stderr}\n${stdout}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** True when `pid` runs no more. */
export const gone = (pid) => {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  // A zombie (exited, not yet reaped by whoever inherited it) is not running either.
  return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
};

/**
 * Installs `tarballs` (paths) into the fresh folder `consumer` with no network and no registry:
 * every dependency of theirs in `offered` ({name, tarball}) is served from its tarball, as a registry would
 * serve that name (the consumer's `overrides` with `file:` specs), so the packages' own manifests
 * (optionalDependencies at a version) are installed unmodified. `npmArgs` e.g. `--os=win32`.
 * Returns the names of the packages npm put in node_modules.
 */
export async function installFromTarballs(consumer, tarballs, offered, { npmArgs = [], timeout } = {}) {
  await mkdir(consumer, { recursive: true });
  const overrides = Object.fromEntries(offered.map(({ name, tarball }) => [name, `file:${tarball}`]));
  await writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, overrides }, null, 2));
  await run(process.execPath, [NPM_CLI, 'install', '--offline', '--no-audit', '--no-fund', ...npmArgs, ...tarballs], { cwd: consumer, timeout });
  return (await readdir(path.join(consumer, 'node_modules'))).filter((name) => !name.startsWith('.')).sort();
}

const manifestOf = (dir) => JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));

/**
 * A tarball, in `out`, of the platform package `name` (iothub-jobs-* in npm/, iothub-emulator-* in
 * packages/iothub-emulator/npm/) for a platform `npm run pack:all` could not pack here: its
 * manifest, README and LICENSE with `binary` (a file of this machine, e.g. the checkout's own
 * build) where its binary goes, or a placeholder when `binary` is null (for npm's resolution
 * only). Returns {name, tarball}.
 */
export async function packStandIn(name, out, binary = null) {
  const parents = [path.join(ROOT, 'npm'), path.join(ROOT, 'packages', 'iothub-emulator', 'npm')];
  const dir = parents.flatMap((parent) => readdirSync(parent).map((folder) => path.join(parent, folder))).find((d) => manifestOf(d).name === name);
  if (!dir) throw new Error(`no platform package ${name} in npm/ or packages/iothub-emulator/npm/`);
  const manifest = manifestOf(dir);
  const stage = path.join(out, 'stand-ins', name);
  const destination = path.join(stage, manifest.main ?? manifest.files[0]);
  await mkdir(path.dirname(destination), { recursive: true });
  if (binary) await copyFile(binary, destination);
  else await writeFile(destination, 'a stand-in: this platform was not built here\n', { mode: 0o755 });
  for (const file of ['package.json', 'README.md']) await copyFile(path.join(dir, file), path.join(stage, file));
  await copyFile(path.join(ROOT, 'LICENSE'), path.join(stage, 'LICENSE'));
  const packed = JSON.parse(await run(process.execPath, [NPM_CLI, 'pack', '--json', '--pack-destination', out], { cwd: stage }));
  return { name, tarball: path.join(out, packed[0].filename) };
}
