// `iothub-jobs emulator`: runs the local IoT Hub (crates/emulator) in the foreground, reads its
// one ready line (JSON: hostName, connectionString, caPath, …) and prints how to reach it, then
// runs until Ctrl-C (or SIGTERM), which it passes on to the emulator.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CliError, EXIT } from './failure.mjs';
import { number, oneOf } from './values.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXE = process.platform === 'win32' ? 'iothub-emulator.exe' : 'iothub-emulator';

/** $IOTHUB_EMULATOR, else the release then debug build of a checkout (what `npm run build` makes). */
export function findEmulator(env = process.env) {
  if (env.IOTHUB_EMULATOR) {
    if (!existsSync(env.IOTHUB_EMULATOR)) throw new CliError(`IOTHUB_EMULATOR: no file ${env.IOTHUB_EMULATOR}`, EXIT.usage);
    return env.IOTHUB_EMULATOR;
  }
  for (const profile of ['release', 'debug']) {
    const candidate = path.join(ROOT, 'target', profile, EXE);
    if (existsSync(candidate)) return candidate;
  }
  throw new CliError(
    'the emulator is not built: run `cargo build --release -p iothub-emulator` in an iothub-jobs checkout, or set IOTHUB_EMULATOR to its binary',
    EXIT.unsupported,
  );
}

function emulatorArgs(values) {
  const args = ['--port', String(number(values, 'port', { min: 0, max: 65535 }) ?? 0)];
  const devices = number(values, 'devices', { min: 0 });
  if (devices !== undefined) args.push('--devices', String(devices));
  const tier = oneOf(values, 'tier', ['S1', 'S2', 'S3']);
  if (tier) args.push('--tier', tier);
  for (const name of ['host', 'seed', 'faults']) if (values[name] !== undefined) args.push(`--${name}`, values[name]);
  return args;
}

const quote = (text) => `'${text.replace(/'/g, `'\\''`)}'`;

function howToReach(ready, devices) {
  return [
    `iothub-emulator is listening on ${ready.hostName}${devices ? ` with ${devices} simulated devices` : ''}. Ctrl-C stops it.`,
    '',
    `export IOTHUB_CONNECTION_STRING=${quote(ready.connectionString)}`,
    `export IOTHUB_CA_FILE=${quote(ready.caPath)}`,
    '',
    "Then, in that shell: iothub-jobs schedule-method --query-condition '*' --method-name reboot --wait",
  ].join('\n');
}

export async function emulator({ values }, out) {
  const args = emulatorArgs(values);
  const child = spawn(findEmulator(), args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));

  const ready = await new Promise((resolve, reject) => {
    let text = '';
    child.once('error', (err) => reject(new CliError(`cannot start the emulator: ${err.message}`)));
    exited.then(({ code, signal }) => reject(new CliError(`the emulator exited before it was ready (${code ?? signal})`)));
    child.stdout.setEncoding('utf8').on('data', function onData(chunk) {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      child.stdout.off('data', onData);
      child.stdout.resume();
      try {
        resolve(JSON.parse(text.slice(0, nl)));
      } catch {
        reject(new CliError('the emulator printed no ready line'));
      }
    });
  });
  if (out.json) out.line(ready);
  else out.stdout.write(`${howToReach(ready, values.devices)}\n`);

  const { code, signal } = await exited;
  // Stopped by our Ctrl-C / SIGTERM: a normal end.
  if (code === 0 || signal === 'SIGINT' || signal === 'SIGTERM') return EXIT.ok;
  throw new CliError(`the emulator stopped (${code ?? signal})`);
}
