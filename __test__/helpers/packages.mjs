// Running npm and packaged commands from the tests, isolated from the `npm test` that runs them.
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export { NPM_CLI } from '../../scripts/pack-all.mjs';

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
