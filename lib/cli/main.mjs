#!/usr/bin/env node
// `iothub-jobs`: the package's command line (the `bin` of package.json). Parses the command
// line, runs one command, and ends with the command's exit code; any error becomes one line on
// stderr (no stack trace, no secret) and its exit code (see failure.mjs).
import { readFileSync } from 'node:fs';

import { helpText, parseCommandLine } from './args.mjs';
import * as commands from './commands.mjs';
import { emulator } from './emulator.mjs';
import { exitCodeOf, messageOf } from './failure.mjs';
import { Output } from './output.mjs';

const RUN = {
  'schedule-method': commands.scheduleMethod,
  'schedule-twin': commands.scheduleTwin,
  show: commands.show,
  cancel: commands.cancel,
  list: commands.list,
  devices: commands.devices,
  wait: commands.wait,
  emulator,
};

function version() {
  return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
}

async function main(argv) {
  const parsed = parseCommandLine(argv);
  if (parsed.values.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (parsed.values.help) {
    process.stdout.write(helpText(parsed.command));
    return 0;
  }
  return RUN[parsed.command](parsed, new Output({ json: parsed.values.output === 'json' }));
}

function fail(err) {
  process.stderr.write(`iothub-jobs: ${messageOf(err)}\n`);
  process.exitCode = exitCodeOf(err);
}

process.on('uncaughtException', fail);
// A reader that went away (`| head`) is not an error of ours.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  fail(err);
});
// Set the code and let the process end by itself, so piped stdout is flushed whole.
main(process.argv.slice(2)).then((code) => (process.exitCode = code), fail);
