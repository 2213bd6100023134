// `iothub-jobs emulator`: runs the local IoT Hub (crates/emulator) in the foreground, reads its
// one ready line (JSON: hostName, connectionString, caPath, …) and prints how to reach it, then
// runs until Ctrl-C (or SIGTERM), which it passes on to the emulator.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { CliError, EXIT } from './failure.mjs';
import { number, oneOf } from './values.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const INSTALL = 'the emulator is not installed: run `npm i -D iothub-emulator`';

/** startEmulator of the installed `iothub-emulator` (next to the project, else next to this
 * package); in an iothub-jobs checkout, the checkout's launcher (the package on target/'s binary). */
async function emulatorPackage() {
  for (const from of [path.join(process.cwd(), 'noop.js'), fileURLToPath(import.meta.url)]) {
    try {
      return createRequire(from)('iothub-emulator');
    } catch (err) {
      if (err.code !== 'MODULE_NOT_FOUND') throw err;
    }
  }
  const checkout = path.join(ROOT, 'scripts', 'emulator-process.mjs');
  if (existsSync(checkout)) return import(pathToFileURL(checkout).href);
  throw new CliError(INSTALL, EXIT.unsupported);
}

/** startEmulator's options (the emulator's flags) from the command's values. */
function emulatorOptions(values) {
  const { host, seed, faults } = values;
  return {
    port: number(values, 'port', { min: 0, max: 65535 }) ?? 0,
    devices: number(values, 'devices', { min: 0 }),
    tier: oneOf(values, 'tier', ['S1', 'S2', 'S3']),
    host, seed, faults,
  };
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
  const options = emulatorOptions(values);
  const { startEmulator } = await emulatorPackage();
  let hub;
  try {
    // In the foreground: this process runs as long as the hub does.
    hub = await startEmulator({ ...options, stderr: 'inherit', unref: false });
  } catch (err) {
    // No binary for this machine (--omit=optional, another platform's node_modules): its one line.
    if (err.code === 'IOTHUB_EMULATOR_NOT_FOUND') throw new CliError(err.message, EXIT.unsupported);
    throw new CliError(`cannot start the emulator: ${err.message}`);
  }
  let stopped = false;
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      stopped = true;
      hub.stop();
    });
  }
  if (out.json) out.line(hub.ready);
  else out.stdout.write(`${howToReach(hub.ready, values.devices)}\n`);

  const code = await hub.exited;
  // Stopped by our Ctrl-C / SIGTERM: a normal end.
  if (stopped || code === 0) return EXIT.ok;
  throw new CliError(`the emulator stopped (${code})`);
}
