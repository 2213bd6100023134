#!/usr/bin/env node
'use strict';
// The `iothub-emulator` command:
//   iothub-emulator [FLAGS…]                    runs the hub in the foreground (the binary's flags,
//                                               help and exit code; SIGINT/SIGTERM/SIGHUP passed on)
//   iothub-emulator exec [FLAGS…] -- CMD [ARG…] starts a hub, runs CMD with IOTHUB_CONNECTION_STRING,
//                                               IOTHUB_CA_FILE and NODE_EXTRA_CA_CERTS (with the hub's
//                                               CA added) set, stops the hub, exits with CMD's code
//   iothub-emulator export [FLAGS…] --to DIR [--exclude-keys]
//   iothub-emulator import [FLAGS…] --from DIR  starts a hub (with Azurite unless FLAGS link an
//                                               account), runs an export job into DIR/devices.txt,
//                                               or an import job of DIR/devices.txt (failed lines in
//                                               DIR/importErrors.log), showing the job's progress;
//                                               typically with --data-dir to export or fill one
const { spawn } = require('node:child_process');
const { mkdtempSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { azuriteEnv, binaryPath, startEmulator } = require('../lib/index.js');

const FORWARDED = process.platform === 'win32' ? ['SIGINT', 'SIGTERM'] : ['SIGINT', 'SIGTERM', 'SIGHUP'];

function fail(message, code = 1) {
  process.stderr.write(`${message.startsWith('iothub-emulator') ? message : `iothub-emulator: ${message}`}\n`);
  process.exit(code);
}

/** Ends this process as the child ended: same exit code, or killed by the same signal. */
function exitLike(code, signal) {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
}

function forwardSignals(child) {
  for (const signal of FORWARDED) process.on(signal, () => child.kill(signal));
}

function run(argv) {
  let binary;
  try {
    binary = binaryPath();
  } catch (err) {
    fail(err.message);
  }
  // A stdin pipe with --exit-on-stdin-eof: the hub stops with this launcher, however it ends.
  const child = spawn(binary, ['--exit-on-stdin-eof', ...argv], { stdio: ['pipe', 'inherit', 'inherit'], windowsHide: true, env: { ...azuriteEnv(), ...process.env } });
  child.on('error', (err) => fail(`cannot run ${binary}: ${err.message}`));
  forwardSignals(child);
  child.on('exit', (code, signal) => {
    if (code === 0 && (argv.includes('--help') || argv.includes('-h'))) process.stdout.write(EXEC_HELP);
    exitLike(code, signal);
  });
}

const EXEC_HELP = `
Or: iothub-emulator exec [FLAGS...] -- COMMAND [ARG...]
  starts a hub with FLAGS, runs COMMAND with IOTHUB_CONNECTION_STRING, EVENTHUB_CONNECTION_STRING
  (the built-in events endpoint), IOTHUB_CA_FILE and NODE_EXTRA_CA_CERTS (the hub's CA added),
  STORAGE_CONNECTION_STRING with --storage azurite or --storage-connection-string,
  stops the hub and exits with COMMAND's exit code
Or: iothub-emulator export [FLAGS...] --to DIR [--exclude-keys]
    iothub-emulator import [FLAGS...] --from DIR
  starts a hub with FLAGS (and --storage azurite unless FLAGS link an account), runs an export job
  into DIR/devices.txt or an import job of DIR/devices.txt (failed lines in DIR/importErrors.log),
  showing the job's status and progress, and stops the hub
`;

// Node reads one extra CA file, at start: the hub's CA, or when the caller already names a file,
// that file's certificates followed by the hub's CA (in a temporary file removed afterwards).
function extraCaFile(hub) {
  const theirs = process.env.NODE_EXTRA_CA_CERTS;
  if (!theirs) return { path: hub.caPath, remove() {} };
  let text = '';
  try {
    text = readFileSync(theirs, 'utf8');
  } catch {
    // Node would ignore an unreadable file too (with a warning); the hub's CA still counts
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-emulator-exec-'));
  const file = path.join(dir, 'extra-ca.pem');
  writeFileSync(file, `${text.trimEnd()}\n${hub.ca}`);
  return { path: file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

async function exec(argv) {
  const dashes = argv.indexOf('--');
  if (dashes < 0 || dashes === argv.length - 1) fail('usage: iothub-emulator exec [FLAGS…] -- COMMAND [ARG…]', 2);
  const [command, ...commandArgs] = argv.slice(dashes + 1);
  let hub;
  try {
    hub = await startEmulator({ args: argv.slice(0, dashes) });
  } catch (err) {
    fail(err.message);
  }
  const env = {
    ...process.env,
    IOTHUB_CONNECTION_STRING: hub.connectionString,
    EVENTHUB_CONNECTION_STRING: hub.eventHubConnectionString,
    IOTHUB_CA_FILE: hub.caPath,
  };
  if (hub.storageConnectionString) env.STORAGE_CONNECTION_STRING = hub.storageConnectionString;
  const extraCa = extraCaFile(hub);
  env.NODE_EXTRA_CA_CERTS = extraCa.path;
  // Windows finds npm.cmd, npx.cmd … only through a shell.
  const child = spawn(command, commandArgs, { stdio: 'inherit', env, shell: process.platform === 'win32' });
  forwardSignals(child);
  const [code, signal] = await new Promise((resolve) => {
    child.once('error', (err) => {
      process.stderr.write(`iothub-emulator exec: cannot run ${command}: ${err.message}\n`);
      resolve([127, null]);
    });
    child.once('exit', (c, s) => resolve([c, s]));
  });
  extraCa.remove();
  await hub.stop();
  process.exit(signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 1));
}

/**
 * An import/export job's progress on `stream` (stderr), as `iothub-jobs` shows a job's: on a
 * terminal one line redrawn in place (`[#########.....................] 30%`), otherwise a plain
 * line each time the status or the percentage changes.
 */
function jobProgress(stream, label) {
  const started = Date.now();
  let drawn = false;
  return {
    update(job) {
      const head = `${label}: job ${job.jobId} ${job.status}`;
      if (!stream.isTTY) return stream.write(`${head} ${job.progress}%\n`);
      const filled = Math.round((job.progress / 100) * 30);
      const elapsed = Math.round((Date.now() - started) / 1000);
      stream.write(`\r\x1b[2K${head} [${'#'.repeat(filled)}${'.'.repeat(30 - filled)}] ${job.progress}% ${elapsed}s`);
      drawn = true;
    },
    finish() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  };
}

/** `export`/`import`: the directory option taken out of `argv`, the rest are the hub's flags. */
async function bulkFiles(kind, argv) {
  const dirFlag = kind === 'export' ? '--to' : '--from';
  const at = argv.indexOf(dirFlag);
  if (at < 0 || at === argv.length - 1) fail(`usage: iothub-emulator ${kind} [FLAGS…] ${dirFlag} DIR${kind === 'export' ? ' [--exclude-keys]' : ''}`, 2);
  const dir = argv[at + 1];
  const excludeKeys = argv.includes('--exclude-keys');
  const flags = argv.filter((a, i) => i !== at && i !== at + 1 && a !== '--exclude-keys');
  if (!flags.some((f) => f === '--storage' || f.startsWith('--storage=') || f.startsWith('--storage-connection-string'))) flags.push('--storage', 'azurite');
  const { exportToDirectory, importFromDirectory } = require('../lib/import-export.js');
  let hub;
  try {
    hub = await startEmulator({ args: flags });
    const progress = jobProgress(process.stderr, `iothub-emulator ${kind}`);
    const onProgress = (job) => progress.update(job);
    if (kind === 'export') {
      const lines = await exportToDirectory(hub, dir, { excludeKeys, onProgress }).finally(() => progress.finish());
      process.stdout.write(`${path.join(dir, 'devices.txt')}: ${lines} lines (devices and modules)\n`);
    } else {
      const failed = await importFromDirectory(hub, dir, { onProgress }).finally(() => progress.finish());
      process.stdout.write(`${path.join(dir, 'devices.txt')} imported; ${failed} lines failed (${path.join(dir, 'importErrors.log')})\n`);
    }
  } catch (err) {
    await hub?.stop();
    fail(`${kind}: ${err.message}`);
  }
  await hub.stop();
}

const argv = process.argv.slice(2);
if (argv[0] === 'exec') exec(argv.slice(1));
else if (argv[0] === 'export' || argv[0] === 'import') bulkFiles(argv[0], argv.slice(1));
else run(argv);
