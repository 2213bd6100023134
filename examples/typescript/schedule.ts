// Typed use of iothub-jobs: schedule a direct-method job (promise form), a twin-update job
// (callback form), wait for them, page through the job list, and tell hub errors apart.
//
//   IOTHUB_CONNECTION_STRING='HostName=…;SharedAccessKeyName=…;SharedAccessKey=…' node schedule.js
//   IOTHUB_HOST_NAME=myhub.azure-devices.net node schedule.js      (signs in with @azure/identity)
//   IOTHUB_CA_FILE=ca.pem                                          (optional: extra trusted CA, e.g. the emulator's)
//
// With the emulator: `npm run emulator` prints a connection string and a caPath to use here.
// In a project of your own, `npm install iothub-jobs` (and `@azure/identity` for Entra ID sign-in);
// this folder's tsconfig.json maps 'iothub-jobs' to the repo's typings instead.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultAzureCredential } from '@azure/identity';
import { JobClient, Query, errors } from 'iothub-jobs';
import type { DeviceMethodParams, HubErrorDetails, Job, JobClientOptions, JobStatusResponse } from 'iothub-jobs';

function createClient(): JobClient {
  const options: JobClientOptions = {};
  if (process.env.IOTHUB_CA_FILE) options.ca = readFileSync(process.env.IOTHUB_CA_FILE, 'utf8');
  const connectionString = process.env.IOTHUB_CONNECTION_STRING;
  if (connectionString) return JobClient.fromConnectionString(connectionString, options);
  const hostName = process.env.IOTHUB_HOST_NAME;
  // Any @azure/identity credential is a TokenCredential: tokens for https://iothubs.azure.net/.default.
  if (hostName) return JobClient.fromTokenCredential(hostName, new DefaultAzureCredential(), options);
  throw new Error('set IOTHUB_CONNECTION_STRING, or IOTHUB_HOST_NAME to sign in with @azure/identity');
}

/** One line for any error: hub errors are classes of `errors`, with the HTTP response attached. */
function describeError(err: unknown): string {
  if (err instanceof errors.JobNotFoundError) return `no such job (${err.message})`;
  if (err instanceof errors.ThrottlingError) return 'throttled by the hub: retry later';
  if (err instanceof errors.UnauthorizedError) return `not authorized: ${err.message}`;
  if (err instanceof errors.ArgumentError) return `bad argument: ${err.message}`;
  if (err instanceof Error) {
    const { response } = err as Error & HubErrorDetails;
    return `${err.name}: ${err.message}${response ? ` (HTTP ${response.statusCode})` : ''}`;
  }
  return String(err);
}

const FINISHED = new Set(['completed', 'failed', 'cancelled']);

/** Promise form: polls getJob until the job has finished. */
async function waitForJob(client: JobClient, jobId: string, timeoutMs = 60_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { jobStatus }: JobStatusResponse = await client.getJob(jobId);
    const job: Job = jobStatus;
    if (job.status !== undefined && FINISHED.has(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${job.status} after ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Callback form, wrapped in a promise: `(err, job, response)`. */
function scheduleTwinUpdateWithCallback(client: JobClient, jobId: string, queryCondition: string, patch: object): Promise<Job> {
  return new Promise((resolve, reject) => {
    client.scheduleTwinUpdate(jobId, queryCondition, patch, new Date(), 300, (err, job, response) => {
      if (err) return reject(err);
      console.log(`callback: scheduled twin update ${jobId} (HTTP ${response.statusCode})`);
      resolve(job as Job);
    });
  });
}

/** Query paging: `next()` continues from the stored continuation token until no page is left. */
async function listJobs(client: JobClient, pageSize: number): Promise<{ jobs: Job[]; pages: number }> {
  const query: Query = client.createQuery('scheduleDeviceMethod', undefined, pageSize);
  const jobs: Job[] = [];
  let pages = 0;
  while (query.hasMoreResults) {
    const { result } = await query.next();
    jobs.push(...(result as Job[]));
    pages += 1;
  }
  return { jobs, pages };
}

async function main(): Promise<void> {
  const client = createClient();
  const run = Date.now().toString(36);

  // Promise form: resolves with { jobStatus, response }.
  const methodJobId = `reboot-${run}`;
  const params: DeviceMethodParams = { methodName: 'reboot', payload: { delaySeconds: 0 }, responseTimeoutInSeconds: 30 };
  const { jobStatus, response } = await client.scheduleDeviceMethod(methodJobId, "tags.group = 'even'", params);
  console.log(`promise: scheduled ${(jobStatus as Job).jobId}, status ${(jobStatus as Job).status} (HTTP ${response.statusCode})`);

  // Callback form.
  const twinJobId = `tag-${run}`;
  await scheduleTwinUpdateWithCallback(client, twinJobId, "tags.group = 'odd'", { etag: '*', tags: { firmware: '2.0' } });

  for (const id of [methodJobId, twinJobId]) {
    const job = await waitForJob(client, id);
    const stats = job.deviceJobStatistics;
    console.log(`${id}: ${job.status}, ${stats?.succeededCount ?? 0} succeeded, ${stats?.failedCount ?? 0} failed`);
  }

  const { jobs, pages } = await listJobs(client, 2);
  console.log(`listed ${jobs.length} method jobs in ${pages} pages`);

  // Errors narrow with instanceof.
  try {
    await client.getJob(`missing-${run}`);
  } catch (err) {
    console.log(`getJob(missing): ${describeError(err)}`);
  }
  try {
    await client.scheduleDeviceMethod(`bad-${run}`, '*', { methodName: '' });
  } catch (err) {
    console.log(`scheduleDeviceMethod(no method name): ${describeError(err)}`);
  }
}

main().catch((err: unknown) => {
  console.error(describeError(err));
  process.exitCode = 1;
});
