// The commands: each takes the parsed command line and an Output, talks to the hub through the
// addon's public API, and resolves with the exit code.
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';

import { FLEET_OPTIONS } from './args.mjs';
import { createClient } from './auth.mjs';
import { CliError, EXIT, usageError } from './failure.mjs';
import { deviceSummary, formatDeviceRows, formatDeviceSummary, formatJob, formatJobList, outcomeOf, Progress, table } from './output.mjs';
import * as value from './values.mjs';

const { errors } = createRequire(import.meta.url)('../main.js');

// Defaults of `az iot hub job create`: --poll-interval 10 s, --poll-duration 600 s, --ttl 3600 s.
const DEFAULT_POLL_INTERVAL_S = 10;
const DEFAULT_POLL_DURATION_S = 600;
const DEFAULT_TTL_S = 3600;
const DEFAULT_TOP = 1000;
const JOB_TYPES = ['scheduleDeviceMethod', 'scheduleUpdateTwin', 'unknown', 'export', 'import', 'backup', 'readDeviceProperties', 'writeDeviceProperties', 'updateDeviceConfiguration', 'rebootDevice', 'factoryResetDevice', 'firmwareUpdate', 'restoreFromBackup', 'failoverDataCopy'];
const JOB_STATUSES = ['unknown', 'enqueued', 'queued', 'scheduled', 'running', 'completed', 'failed', 'cancelled'];

/** The exit code a finished job stands for. */
function exitCodeForStatus(status) {
  if (status === 'failed') return EXIT.jobFailed;
  if (status === 'cancelled') return EXIT.jobCancelled;
  return EXIT.ok;
}

function pollSettings(values) {
  const interval = value.seconds(values, 'poll-interval', { min: 0.05, integer: false }) ?? DEFAULT_POLL_INTERVAL_S;
  const duration = value.seconds(values, 'poll-duration', { min: 0.1, integer: false }) ?? DEFAULT_POLL_DURATION_S;
  return { pollIntervalMs: interval * 1000, timeoutMs: duration * 1000, duration };
}

/**
 * Runs `call(abortSignal)` with Ctrl-C turned into an abort: the CLI stops waiting and says
 * `whatGoesOn` (nothing is cancelled on the hub).
 */
async function interruptible(whatGoesOn, call) {
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    return await call(controller.signal);
  } catch (err) {
    if (err?.name === 'AbortError' && controller.signal.aborted) throw new CliError(`stopped waiting; ${whatGoesOn}`, EXIT.interrupted);
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** Waits for the job with a progress display on stderr; resolves with the final job. */
async function waitWithProgress(client, jobId, values, { notFoundGraceMs } = {}) {
  const { pollIntervalMs, timeoutMs, duration } = pollSettings(values);
  const progress = new Progress(process.stderr, `job ${jobId}`);
  try {
    const job = await interruptible(`job ${jobId} goes on (cancel it with: iothub-jobs cancel ${jobId})`, (abortSignal) =>
      client.waitForJob(jobId, { pollIntervalMs, timeoutMs, notFoundGraceMs, abortSignal, onProgress: (j) => progress.update(j) }),
    );
    progress.update(job);
    return job;
  } catch (err) {
    if (err instanceof errors.TimeoutError) {
      const status = err.job?.status ? `still ${err.job.status}` : 'not visible yet';
      throw new CliError(`job ${jobId} is ${status} after ${duration} s (--poll-duration); it goes on`, EXIT.timeout);
    }
    throw err;
  } finally {
    progress.finish();
  }
}

/** Prints a finished job and returns the exit code its status stands for. */
function reportEnd(out, job) {
  out.result(job, formatJob);
  const code = exitCodeForStatus(job.status);
  if (code !== EXIT.ok) out.note(`job ${job.jobId} ${job.status}${job.failureReason ? `: ${job.failureReason}` : ''}`);
  return code;
}

/** What every schedule command shares: target devices, times, waiting, fleet options. */
function scheduleSettings(values) {
  const queryCondition = values['query-condition'];
  const deviceIds = value.deviceIds(values, 'device-ids');
  if ((queryCondition === undefined) === (deviceIds === undefined)) {
    throw usageError('give exactly one of --query-condition (a WHERE clause, or * for all devices) and --device-ids');
  }
  if (queryCondition !== undefined && queryCondition.trim() === '') throw usageError('--query-condition is empty (use * for all devices)');
  return {
    jobId: values['job-id'] ?? randomUUID(),
    queryCondition,
    deviceIds,
    startTime: value.isoTime(values, 'start') ?? new Date(),
    ttl: value.seconds(values, 'ttl', { min: 1 }) ?? DEFAULT_TTL_S,
    fleet: FLEET_OPTIONS.filter((name) => values[name] !== undefined),
    waves: value.counts(values, 'waves'),
    failureThreshold: value.ratio(values, 'failure-threshold'),
    maxConcurrentJobs: value.number(values, 'max-concurrent-jobs', { min: 1 }),
  };
}

async function schedule(values, out, kind, payload) {
  const settings = scheduleSettings(values);
  pollSettings(values); // validated before anything is sent
  const client = createClient(values);
  if (settings.fleet.length > 0) return runFleet(client, kind, payload, settings, values, out);
  const { jobId, queryCondition, startTime, ttl } = settings;
  const { jobStatus } =
    kind === 'method'
      ? await client.scheduleDeviceMethod(jobId, queryCondition, payload, startTime, ttl)
      : await client.scheduleTwinUpdate(jobId, queryCondition, payload, startTime, ttl);
  if (!values.wait) {
    out.result(jobStatus, formatJob);
    return EXIT.ok;
  }
  return reportEnd(out, await waitWithProgress(client, jobId, values));
}

export function scheduleMethod({ values }, out) {
  const methodName = values['method-name'];
  if (!methodName) throw usageError('schedule-method: --method-name is required');
  const params = { methodName };
  const payload = value.json(values, 'method-payload');
  if (payload !== undefined) params.payload = payload;
  const response = value.seconds(values, 'method-response-timeout', { min: 5, max: 300 });
  const connect = value.seconds(values, 'method-connect-timeout', { min: 0, max: 300 });
  if (response !== undefined) params.responseTimeoutInSeconds = response;
  if (connect !== undefined) params.connectTimeoutInSeconds = connect;
  return schedule(values, out, 'method', params);
}

export function scheduleTwin({ values }, out) {
  const patch = value.twinPatch(values, 'twin-patch');
  if (patch === undefined) throw usageError('schedule-twin: --twin-patch is required');
  return schedule(values, out, 'twin', patch);
}

// ---------------------------------------------------------------------------------------------
// Fleet calls (explicit device lists, waves): JobClient.runDeviceMethodJob / runTwinUpdateJob.

function formatFleetResult(result) {
  const lines = [
    `Rollout ${result.status}: ${result.deviceCount} devices, succeeded ${result.succeededCount}, failed ${result.failedCount}` +
      (result.notAttempted?.length ? `, not attempted ${result.notAttempted.length}` : ''),
  ];
  if (result.waves?.length) {
    lines.push('', table(['WAVE', 'JOBS', 'DEVICES', 'SUCCEEDED', 'FAILED'], result.waves.map((w) => [w.wave, w.jobIds.join(','), w.deviceCount, w.succeededCount, w.failedCount])));
  }
  return lines.join('\n');
}

async function runFleet(client, kind, payload, settings, values, out) {
  const call = kind === 'method' ? 'runDeviceMethodJob' : 'runTwinUpdateJob';
  const { pollIntervalMs, timeoutMs, duration } = pollSettings(values);
  const progress = new Progress(process.stderr, `rollout ${settings.jobId}`);
  const options = {
    jobId: settings.jobId,
    startTime: settings.startTime,
    maxExecutionTimeInSeconds: settings.ttl,
    pollIntervalMs,
    timeoutMs,
    onProgress: (p) => progress.update(p),
  };
  for (const key of ['deviceIds', 'queryCondition', 'waves', 'failureThreshold', 'maxConcurrentJobs']) {
    if (settings[key] !== undefined) options[key] = settings[key];
  }
  let result;
  try {
    const goesOn = `the rollout's running hub jobs go on (see: iothub-jobs list --job-status running)`;
    result = await interruptible(goesOn, (abortSignal) => client[call](payload, { ...options, abortSignal }));
  } catch (err) {
    if (err instanceof errors.TimeoutError) throw new CliError(`rollout ${settings.jobId} not done after ${duration} s (--poll-duration); its hub jobs go on`, EXIT.timeout);
    throw err;
  } finally {
    progress.finish();
  }
  const { deviceJobs, ...document } = result;
  out.result(document, formatFleetResult);
  return result.status === 'stopped' ? EXIT.jobFailed : EXIT.ok;
}

// ---------------------------------------------------------------------------------------------

export async function show({ values, jobId }, out) {
  const { jobStatus } = await createClient(values).getJob(jobId);
  out.result(jobStatus, formatJob);
  return EXIT.ok;
}

export async function cancel({ values, jobId }, out) {
  const { jobStatus } = await createClient(values).cancelJob(jobId);
  out.result(jobStatus, formatJob);
  return EXIT.ok;
}

export async function wait({ values, jobId }, out) {
  const client = createClient(values);
  // The job is expected to exist already: an unknown id is reported at once, not after a grace.
  return reportEnd(out, await waitWithProgress(client, jobId, values, { notFoundGraceMs: 0 }));
}

export async function list({ values }, out) {
  const jobType = value.oneOf(values, 'job-type', JOB_TYPES);
  const jobStatus = value.oneOf(values, 'job-status', JOB_STATUSES);
  const top = values.top === '-1' ? Infinity : (value.number(values, 'top', { min: 1 }) ?? DEFAULT_TOP);
  const client = createClient(values);
  const jobs = [];
  for await (const job of client.listJobs({ jobType, jobStatus, maxPageSize: Math.min(top, 100) })) {
    jobs.push(job);
    if (jobs.length >= top) break;
  }
  out.result(jobs, formatJobList);
  return EXIT.ok;
}

export async function devices({ values, jobId }, out) {
  const client = createClient(values);
  const { jobStatus: job } = await client.getJob(jobId); // an unknown job is "not found", not "no devices"
  const rows = client.listDeviceJobs(jobId, { maxPageSize: 1000 });
  if (values.all) {
    const wanted = values.status;
    const kept = [];
    for await (const row of rows) {
      if (wanted !== undefined && row.status !== wanted) continue;
      if (out.json) out.line(row);
      else kept.push(row);
    }
    if (!out.json) out.stdout.write(`${formatDeviceRows(kept)}\n`);
    return EXIT.ok;
  }
  if (values.status !== undefined) throw usageError('devices: --status filters the rows of --all');
  const summary = { jobId, jobStatus: job.status, deviceCount: 0, byStatus: {}, byOutcome: {} };
  for await (const row of rows) {
    summary.deviceCount += 1;
    summary.byStatus[row.status] = (summary.byStatus[row.status] ?? 0) + 1;
    const outcome = outcomeOf(row);
    summary.byOutcome[outcome] = (summary.byOutcome[outcome] ?? 0) + 1;
  }
  summary.jobStatistics = job.deviceJobStatistics;
  out.result(summary, (s) => `${formatDeviceSummary(s)}${s.jobStatistics ? `\n\nJob counters: ${deviceSummary(s.jobStatistics)}` : ''}`);
  return EXIT.ok;
}
