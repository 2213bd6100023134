'use strict';
// Run by __test__/windows.test.mjs in the official Windows node.exe under Wine, from a folder
// whose node_modules hold the package and its win32 platform package as npm would install them.
// Prints one JSON line: what ran where, and what each call gave.
const { readFileSync } = require('node:fs');
const { JobClient, errors } = require('iothub-jobs');

const client = JobClient.fromConnectionString(process.env.HUB_CS, { ca: readFileSync(process.env.HUB_CA, 'utf8') });
const jobId = `wine-${process.pid}`;
const failure = (promise) => promise.then(() => null, (err) => err);

(async () => {
  const out = { platform: process.platform, arch: process.arch, natives: Object.keys(require.cache).filter((f) => f.endsWith('.node')) };

  // Promise form: schedule a method job and wait for it.
  const scheduled = await client.scheduleDeviceMethod(jobId, '*', { methodName: 'reboot', payload: { from: 'wine' } });
  out.scheduledStatus = scheduled.response.statusCode;
  const done = await client.waitForJob(jobId, { pollIntervalMs: 50, timeoutMs: 60_000 });
  out.status = done.status;
  out.succeeded = done.deviceJobStatistics.succeededCount;

  // Callback form.
  out.callback = await new Promise((resolve, reject) =>
    client.getJob(jobId, (err, job, response) => (err ? reject(err) : resolve({ status: job.status, method: job.cloudToDeviceMethod.methodName, statusCode: response.statusCode }))),
  );

  const missing = await failure(client.getJob('no-such-job'));
  out.notFound = { isJobNotFoundError: missing instanceof errors.JobNotFoundError, name: missing?.name };

  // Abort: a job scheduled an hour ahead is waited for, then the wait is aborted; the job stays.
  await client.scheduleDeviceMethod(`${jobId}-later`, '*', { methodName: 'reboot' }, new Date(Date.now() + 3_600_000));
  const controller = new AbortController();
  let polls = 0;
  const waiting = failure(client.waitForJob(`${jobId}-later`, { pollIntervalMs: 20, abortSignal: controller.signal, onProgress: () => polls++ }));
  while (polls === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  controller.abort();
  const aborted = await waiting;
  out.abort = { name: aborted?.name, polled: polls > 0, after: (await client.getJob(`${jobId}-later`)).jobStatus.status };

  out.jobId = jobId;
  process.stdout.write(`${JSON.stringify(out)}\n`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
