// Running npm and packaged commands from the tests, isolated from the `npm test` that runs them.
import { execFile } from 'node:child_process';

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
