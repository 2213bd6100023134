// The command line's grammar: every command with its options (one table, from which both the
// parser (node:util.parseArgs) and the --help text are made).
import { parseArgs } from 'node:util';

import { usageError } from './failure.mjs';

const CONNECTION = {
  'connection-string': { type: 'string', value: 'CS', help: 'IoT Hub connection string (default: $IOTHUB_CONNECTION_STRING)' },
  hub: { type: 'string', value: 'HOST', help: 'hub host name (my-hub.azure-devices.net), with --auth login|identity' },
  auth: {
    type: 'string',
    value: 'TYPE',
    help: 'key (connection string, the default), login (the Azure CLI\'s `az login` account) or identity (managed identity)',
  },
  'client-id': { type: 'string', value: 'ID', help: 'client id of a user-assigned managed identity (--auth identity)' },
  ca: { type: 'string', value: 'FILE', help: 'extra trusted CA certificate(s), PEM (default: $IOTHUB_CA_FILE); the emulator needs its CA' },
};
const OUTPUT = {
  output: { type: 'string', short: 'o', value: 'FORMAT', help: 'table (default) or json' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
};
const JOB_ID = { 'job-id': { type: 'string', value: 'ID', help: 'the job id (or give it as the first argument)' } };
const WAIT = {
  'poll-interval': { type: 'string', value: 'SECONDS', help: 'seconds between two reads of the job (default 10)' },
  'poll-duration': { type: 'string', value: 'SECONDS', help: 'stop waiting after this many seconds, exit 7; the job goes on (default 600)' },
};
const SCHEDULE = {
  'job-id': { type: 'string', value: 'ID', help: 'id of the new job (default: a random UUID)' },
  'query-condition': { type: 'string', short: 'q', value: 'COND', help: "devices to run on: a WHERE clause (\"tags.site = 'north'\"), or * for all devices" },
  'device-ids': { type: 'string', value: '@FILE|IDS', help: 'explicit devices instead: a file (one id per line, or a JSON array) or a comma-separated list (fleet calls)' },
  start: { type: 'string', value: 'TIME', help: 'ISO 8601 start time, e.g. 2026-12-24T06:00:00Z (default: now)' },
  ttl: { type: 'string', value: 'SECONDS', help: 'maximum execution time: devices not reached by then fail (default 3600)' },
  wait: { type: 'boolean', short: 'w', help: 'wait until the job ends, showing its progress' },
  ...WAIT,
  waves: { type: 'string', value: 'N,N,…', help: 'staged rollout: devices per wave, the last size repeating, e.g. 10,100,1000 (fleet calls)' },
  'failure-threshold': { type: 'string', value: 'RATIO', help: 'stop after a wave whose failed/attempted ratio exceeds it, 0..1 (fleet calls)' },
  'max-concurrent-jobs': { type: 'string', value: 'N', help: 'hub jobs running at once (fleet calls; default 1, an S1 hub allows one)' },
};

/** Options that only the fleet calls (runDeviceMethodJob / runTwinUpdateJob) implement. */
export const FLEET_OPTIONS = ['device-ids', 'waves', 'failure-threshold', 'max-concurrent-jobs'];

const COMMANDS = {
  'schedule-method': {
    summary: 'schedule a direct-method job on many devices',
    usage: 'schedule-method --method-name NAME (--query-condition COND | --device-ids @FILE) [options]',
    details: 'Like `az iot hub job create --job-type scheduleDeviceMethod`. Prints the new job, or with --wait its end.',
    groups: {
      Job: SCHEDULE,
      Method: {
        'method-name': { type: 'string', value: 'NAME', help: 'the direct method to call (required)' },
        'method-payload': { type: 'string', value: 'JSON|@FILE', help: 'the method payload, JSON text or @file (default: none)' },
        'method-connect-timeout': { type: 'string', value: 'SECONDS', help: 'how long the hub waits for an offline device to connect (0..300; hub default 0)' },
        'method-response-timeout': { type: 'string', value: 'SECONDS', help: 'how long the hub waits for the device\'s answer (5..300; hub default 30)' },
      },
    },
  },
  'schedule-twin': {
    summary: 'schedule a twin-update job on many devices',
    usage: 'schedule-twin --twin-patch JSON|@FILE (--query-condition COND | --device-ids @FILE) [options]',
    details:
      'Like `az iot hub job create --job-type scheduleUpdateTwin`. The patch holds `tags` and/or\n' +
      '`properties.desired`; `etag` is sent as "*" unless the patch has one.',
    groups: {
      Job: SCHEDULE,
      Twin: { 'twin-patch': { type: 'string', value: 'JSON|@FILE', help: 'the twin patch, JSON text or @file (required)' } },
    },
  },
  show: {
    summary: 'show a job',
    usage: 'show JOB_ID [options]',
    details: 'Like `az iot hub job show`.',
    positional: true,
    groups: { Job: JOB_ID },
  },
  cancel: {
    summary: 'cancel a job; devices not reached yet are left alone',
    usage: 'cancel JOB_ID [options]',
    details: 'Like `az iot hub job cancel`. Prints the job as the hub returns it after the cancel.',
    positional: true,
    groups: { Job: JOB_ID },
  },
  list: {
    summary: 'list jobs, newest last',
    usage: 'list [--job-type TYPE] [--job-status STATUS] [--top N] [options]',
    details: 'Like `az iot hub job list`.',
    groups: {
      Filters: {
        'job-type': { type: 'string', value: 'TYPE', help: 'scheduleDeviceMethod or scheduleUpdateTwin (or another service job type)' },
        'job-status': { type: 'string', value: 'STATUS', help: 'queued, scheduled, running, completed, failed, cancelled, …' },
        top: { type: 'string', value: 'N', help: 'at most N jobs, -1 for all (default 1000)' },
      },
    },
  },
  devices: {
    summary: "a job's per-device outcomes: a summary, or every device with --all",
    usage: 'devices JOB_ID [--all] [--status STATUS] [options]',
    details:
      'The summary counts devices by status and by outcome (method status code or error code).\n' +
      'With --all, one row per device; --output json then writes JSON lines, one device per line.',
    positional: true,
    groups: {
      Job: {
        ...JOB_ID,
        all: { type: 'boolean', short: 'a', help: 'list every device instead of the summary' },
        status: { type: 'string', value: 'STATUS', help: 'with --all: only devices in this status (pending, running, completed, failed, canceled)' },
      },
    },
  },
  wait: {
    summary: 'wait for a job to end, showing its progress',
    usage: 'wait JOB_ID [--poll-interval SECONDS] [--poll-duration SECONDS] [options]',
    details:
      'Exit code 0 when the job completes, 3 failed, 4 cancelled, 7 when --poll-duration runs out.\n' +
      'Ctrl-C stops waiting (exit 130); the job goes on.',
    positional: true,
    groups: { Job: { ...JOB_ID, ...WAIT } },
  },
  emulator: {
    summary: 'run the local IoT Hub emulator and print how to reach it',
    usage: 'emulator [--devices N] [--tier S1|S2|S3] [--port PORT] [options]',
    details: 'Runs until Ctrl-C. Prints the `export` lines that point iothub-jobs at it.',
    connection: false,
    groups: {
      Emulator: {
        devices: { type: 'string', value: 'N', help: 'simulated devices device-0000 … (default: none)' },
        tier: { type: 'string', value: 'TIER', help: 'enforce the limits of an S1, S2 or S3 hub (default: no limits)' },
        port: { type: 'string', value: 'PORT', help: 'port to listen on (default 0: a free one)' },
        host: { type: 'string', value: 'ADDRESS', help: 'address to listen on (default 127.0.0.1)' },
        seed: { type: 'string', value: 'FILE', help: 'devices from a seed file (see the emulator README)' },
        faults: { type: 'string', value: 'SPEC', help: 'fault injection, e.g. 429:0.1,503:0.05' },
      },
    },
  },
};

export const COMMAND_NAMES = Object.keys(COMMANDS);

function groupsOf(name) {
  const spec = COMMANDS[name];
  return { ...spec.groups, ...(spec.connection === false ? {} : { Connection: CONNECTION }), Output: OUTPUT };
}

function parserOptions(name) {
  const options = {};
  for (const group of Object.values(groupsOf(name))) {
    for (const [option, { type, short }] of Object.entries(group)) options[option] = short ? { type, short } : { type };
  }
  return options;
}

/**
 * `argv` (without node and the script) → `{ command, values, jobId }`; `command` is undefined
 * for the general help. Throws a usage error (exit 2) with a one-line message.
 */
export function parseCommandLine(argv) {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    const topic = first === 'help' ? rest[0] : undefined;
    if (topic !== undefined && !COMMANDS[topic]) throw usageError(`unknown command '${topic}' (commands: ${COMMAND_NAMES.join(', ')})`);
    return { command: topic, values: { help: true } };
  }
  if (first === '--version' || first === '-V') return { command: undefined, values: { version: true } };
  if (!COMMANDS[first]) {
    throw usageError(`unknown command '${first}' (commands: ${COMMAND_NAMES.join(', ')}; see iothub-jobs --help)`);
  }
  const options = parserOptions(first);
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(rest, options), options, allowPositionals: true, strict: true });
  } catch (err) {
    throw usageError(`${first}: ${shortParseError(err)} (see iothub-jobs ${first} --help)`);
  }
  const { values, positionals } = parsed;
  const spec = COMMANDS[first];
  const maxPositionals = spec.positional ? 1 : 0;
  if (positionals.length > maxPositionals) {
    throw usageError(`${first}: unexpected argument '${positionals[maxPositionals]}' (see iothub-jobs ${first} --help)`);
  }
  let jobId = values['job-id'];
  if (spec.positional) {
    if (positionals[0] !== undefined && jobId !== undefined && positionals[0] !== jobId) {
      throw usageError(`${first}: two different job ids given ('${positionals[0]}' and --job-id '${jobId}')`);
    }
    jobId ??= positionals[0];
    if (jobId === undefined && !values.help) throw usageError(`${first}: a job id is required (iothub-jobs ${spec.usage})`);
  }
  if (values.output !== undefined && !['table', 'json'].includes(values.output)) {
    throw usageError(`--output must be table or json, not '${values.output}'`);
  }
  return { command: first, values, jobId };
}

/**
 * parseArgs takes `--top -1` for two options; a string option followed by a negative number
 * gets it as its value (`--top=-1`), as a person means it.
 */
function joinNegativeValues(args, options) {
  const out = [];
  for (let i = 0; i < args.length; i += 1) {
    const name = /^--([\w-]+)$/.exec(args[i])?.[1];
    if (name && options[name]?.type === 'string' && /^-\d/.test(args[i + 1] ?? '')) {
      out.push(`${args[i]}=${args[i + 1]}`);
      i += 1;
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

/** parseArgs' messages carry a paragraph of advice; keep the first sentence. */
function shortParseError(err) {
  const unknown = /^Unknown option '([^']+)'/.exec(err.message);
  if (unknown) return `unknown option '${unknown[1]}'`;
  return err.message.split(/\.\s/)[0].replace(/\.$/, '');
}

function formatGroup(title, group) {
  const rows = Object.entries(group).map(([option, { short, value, help }]) => {
    const flag = `${short ? `-${short}, ` : '    '}--${option}${value ? ` ${value}` : ''}`;
    return [flag, help];
  });
  const width = Math.max(...rows.map(([flag]) => flag.length));
  return [`${title}:`, ...rows.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`)].join('\n');
}

/** The help of one command, or the general help when `name` is undefined. */
export function helpText(name) {
  if (name === undefined) {
    const width = Math.max(...COMMAND_NAMES.map((n) => n.length));
    return [
      'Usage: iothub-jobs COMMAND [options]',
      '',
      'Schedule, watch and cancel Azure IoT Hub jobs (direct methods and twin updates on many devices).',
      '',
      'Commands:',
      ...COMMAND_NAMES.map((n) => `  ${n.padEnd(width)}  ${COMMANDS[n].summary}`),
      '',
      'Authentication: IOTHUB_CONNECTION_STRING or --connection-string; or --hub HOST --auth login|identity.',
      'Output: a table, or --output json for scripts. `iothub-jobs COMMAND --help` shows a command\'s options.',
      'Exit codes: 0 done, 1 error, 2 usage, 3 job failed, 4 job cancelled, 5 job not found, 6 auth,',
      '7 timeout, 8 not supported by this addon, 130 interrupted (the job goes on).',
      '',
    ].join('\n');
  }
  const spec = COMMANDS[name];
  const sections = Object.entries(groupsOf(name)).map(([title, group]) => formatGroup(title, group));
  return [`Usage: iothub-jobs ${spec.usage}`, '', `${spec.summary[0].toUpperCase()}${spec.summary.slice(1)}.`, spec.details, '', ...sections.flatMap((s) => [s, '']), ''].join('\n').replace(/\n\n\n$/, '\n');
}
