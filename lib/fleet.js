'use strict';
// The fleet calls' JavaScript shape: `runDeviceMethodJob` / `runTwinUpdateJob` (orchestrated by
// the addon, `__runFleetJob`), the combined per-device stream of their result, and `watchJobs`.
// Plain JS for the same reason as paging.js: napi-rs cannot create async generator objects.
// node:crypto and node:timers/promises are loaded on first use, not at `require` (cold start).

const { pagedIterator } = require('./paging.js');

const FINAL = new Set(['completed', 'failed', 'cancelled', 'canceled']);

function checkOptions(call, options) {
  if (options === null || typeof options !== 'object') throw new TypeError(`${call}: options must be an object`);
  const { startTime } = options;
  if (startTime instanceof Date && Number.isNaN(startTime.getTime())) throw new RangeError(`${call}: options.startTime is an invalid Date`);
}

/** What the addon parses: everything but the callback and the signal, dates as ISO strings. */
function spec(job, options) {
  const { onProgress, abortSignal, ...rest } = options;
  return JSON.stringify({ ...job, options: { ...rest, jobId: rest.jobId ?? require('node:crypto').randomUUID() } });
}

/**
 * Per-device rows of every hub job of a fleet call, job after job, as one Azure SDK
 * `PagedAsyncIterableIterator`. A page's `continuationToken` is `<job index>:<that job's token>`.
 */
function deviceJobs(client, jobIds, options = {}) {
  const { maxPageSize, abortSignal } = options ?? {};
  async function* byPage(settings) {
    let [index, token] = parsePosition(settings?.continuationToken);
    const size = settings?.maxPageSize ?? maxPageSize;
    for (; index < jobIds.length; index++, token = undefined) {
      const pages = client.listDeviceJobs(jobIds[index], { abortSignal }).byPage({ continuationToken: token, maxPageSize: size });
      for await (const page of pages) {
        const next = page.continuationToken
          ? `${index}:${page.continuationToken}`
          : index + 1 < jobIds.length
            ? `${index + 1}:`
            : undefined;
        page.continuationToken = next;
        yield page;
      }
    }
  }
  return pagedIterator(byPage);
}

function parsePosition(token) {
  if (token === undefined || token === null || token === '') return [0, undefined];
  const match = /^(\d+):(.*)$/s.exec(String(token));
  if (!match) throw new TypeError('continuationToken is not one of this result\'s tokens');
  return [Number(match[1]), match[2] || undefined];
}

function fleetCall(call, key) {
  return async function (job, options) {
    checkOptions(call, options);
    const result = await this.__runFleetJob(call, spec({ [key]: job }, options), options.onProgress, options.abortSignal);
    const client = this;
    Object.defineProperty(result, 'deviceJobs', {
      value: (opts) => deviceJobs(client, result.jobIds, opts),
      enumerable: false,
    });
    return result;
  };
}

/**
 * Lifecycle events of the hub's jobs, read with the jobs query every `pollIntervalMs`:
 * `created` (a job not seen before), `started` (status `running`), `progress` (its
 * `deviceJobStatistics` changed), `finished` (a final status). Jobs already finished when the
 * watch starts are not reported.
 */
async function* watchJobs(options = {}) {
  const { jobType, jobStatus, pollIntervalMs = 5000, abortSignal } = options ?? {};
  if (!(Number.isFinite(pollIntervalMs) && pollIntervalMs >= 0)) throw new TypeError('watchJobs: options.pollIntervalMs must be a non-negative number');
  const seen = new Map();
  let first = true;
  for (;;) {
    for await (const job of this.listJobs({ jobType, jobStatus, maxPageSize: 100, abortSignal })) {
      const stats = JSON.stringify(job.deviceJobStatistics ?? null);
      const before = seen.get(job.jobId);
      const final = FINAL.has(job.status);
      seen.set(job.jobId, { status: job.status, stats });
      if (!before) {
        if (first && final) continue;
        yield { type: 'created', job };
        if (job.status === 'running') yield { type: 'started', job };
        if (final) yield { type: 'finished', job };
        continue;
      }
      if (FINAL.has(before.status)) continue;
      if (job.status === 'running' && before.status !== 'running') yield { type: 'started', job };
      else if (!final && stats !== before.stats) yield { type: 'progress', job };
      if (final) yield { type: 'finished', job };
    }
    first = false;
    await require('node:timers/promises').setTimeout(pollIntervalMs, undefined, { signal: abortSignal });
  }
}

function installFleet(JobClient) {
  for (const [name, value] of [
    ['runDeviceMethodJob', fleetCall('runDeviceMethodJob', 'method')],
    ['runTwinUpdateJob', fleetCall('runTwinUpdateJob', 'patch')],
    ['watchJobs', watchJobs],
  ]) {
    Object.defineProperty(JobClient.prototype, name, { value, writable: true, configurable: true });
  }
}

exports.installFleet = installFleet;
