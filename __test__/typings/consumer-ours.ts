// iothub-jobs-only typings (compiled by tsconfig.json only): what ours adds on top of the
// reference's surface — JobStatus accepts the service's statuses as well as the reference's,
// a typed Job that JobStatusResponse.jobStatus narrows to, ResultWithIncomingMessage, and the
// options object (ca, retry) accepted as the extra last argument of the factories.
import { JobClient } from 'jobclient-under-test';
import type { Job, JobStatus, JobStatusResponse, ResultWithIncomingMessage } from 'jobclient-under-test';

declare const pem: string;

// The union of the reference's statuses and the service's.
const allStatuses: JobStatus[] = ['queued', 'scheduled', 'running', 'cancelled', 'finished', 'unknown', 'enqueued', 'completed', 'failed'];
void allStatuses;
// @ts-expect-error still not any string
const notAStatus: JobStatus = 'paused';
void notAStatus;

const client = JobClient.fromConnectionString('HostName=127.0.0.1:8443;SharedAccessKeyName=p;SharedAccessKey=a2V5', { ca: pem });
const sas = JobClient.fromSharedAccessSignature('SharedAccessSignature sr=h&sig=s&skn=p&se=1', { ca: pem, retry: false });
const tok = JobClient.fromTokenCredential('h:8443', { getToken: async () => ({ token: 't', expiresOnTimestamp: 0 }) }, { ca: pem });
void sas;
void tok;
// @ts-expect-error ca is PEM text
JobClient.fromConnectionString('HostName=h;SharedAccessKeyName=p;SharedAccessKey=a2V5', { ca: 42 });

async function typedJob(): Promise<void> {
  const got: JobStatusResponse = await client.getJob('job-1');
  const job = got.jobStatus as Job;
  const id: string | number | undefined = job.jobId;
  const status: string | undefined = job.status;
  const devices: number | undefined = job.deviceJobStatistics?.deviceCount;
  const failed: number | undefined = job.deviceJobStatistics?.failedCount;
  void [id, status, devices, failed];
  const page: ResultWithIncomingMessage<any> = await client.createQuery().next();
  const code: number | undefined = page.message.statusCode;
  void code;
}
void typedJob;

// The modern API: paged async iterators, waitForJob, abortSignal.
import type { DeviceJob, PagedAsyncIterableIterator, ContinuablePage, WaitForJobOptions, WaitTimeoutError } from 'jobclient-under-test';

async function modern(): Promise<void> {
  const controller = new AbortController();
  const jobs: PagedAsyncIterableIterator<Job> = client.listJobs({ jobType: 'scheduleDeviceMethod', jobStatus: 'running', maxPageSize: 3, abortSignal: controller.signal });
  for await (const job of jobs) {
    const id: string = job.jobId;
    const pending: number | undefined = job.deviceJobStatistics?.pendingCount;
    void [id, pending];
  }
  for await (const page of client.listJobs().byPage({ continuationToken: 'tok', maxPageSize: 2 })) {
    const first: Job | undefined = page[0];
    const token: string | undefined = page.continuationToken;
    void [first, token];
  }
  const step: IteratorResult<Job> = await client.listJobs().next();
  void step;

  const options: WaitForJobOptions = { pollIntervalMs: 500, timeoutMs: 60_000, abortSignal: controller.signal, onProgress: (j: Job) => void j.status };
  const done: Job = await client.waitForJob('job-1', options);
  void done;
  try {
    await client.waitForJob(42);
  } catch (e) {
    const last: Job | undefined = (e as WaitTimeoutError).job;
    void last;
  }

  const rows: PagedAsyncIterableIterator<DeviceJob> = client.listDeviceJobs('job-1', { maxPageSize: 100 });
  for await (const row of rows) {
    const device: string = row.deviceId;
    const methodStatus: number | undefined = row.outcome?.deviceMethodResponse?.status;
    const code: string | undefined = row.error?.code;
    const canceled: boolean = row.status === 'canceled';
    void [device, methodStatus, code, canceled];
  }
  const pages: AsyncIterableIterator<ContinuablePage<DeviceJob>> = rows.byPage();
  void pages;

  for await (const item of client.createQuery()) void item;

  // @ts-expect-error maxPageSize is a number
  client.listJobs({ maxPageSize: '3' });
  // @ts-expect-error not a job type
  client.listJobs({ jobType: 'export' });
  // @ts-expect-error abortSignal is an AbortSignal, not a controller
  client.waitForJob('j', { abortSignal: controller });
  // @ts-expect-error onProgress receives a Job
  client.waitForJob('j', { onProgress: (j: number) => void j });
  // @ts-expect-error waitForJob resolves with a Job, not a JobStatusResponse
  const wrong: JobStatusResponse = await client.waitForJob('j');
  void wrong;
  // @ts-expect-error listDeviceJobs needs a job id
  client.listDeviceJobs();
  // @ts-expect-error byPage settings have no abortSignal
  client.listJobs().byPage({ abortSignal: controller.signal });
}
void modern;

// Native credentials (azure_identity inside the addon) and the common options on every factory.
import type { ManagedIdentityOptions, WorkloadIdentityOptions, ClientSecretOptions, AzureCliOptions, JobClientOptions } from 'jobclient-under-test';

function nativeCredentials(): JobClient[] {
  const common: JobClientOptions = {
    ca: pem,
    retry: { maxRetries: 3, initialDelayMs: 100, maxDelayMs: 2000 },
    timeoutMs: 30_000,
    proxy: 'http://user:pass@127.0.0.1:3128',
    userAgentPrefix: 'my-app/1.0',
    apiVersion: '2021-04-12',
  };
  const mi: ManagedIdentityOptions = { ...common, clientId: '00000000-0000-0000-0000-000000000000' };
  const wi: WorkloadIdentityOptions = { tenantId: 't', clientId: 'c', tokenFilePath: '/var/run/secrets/token', authorityHost: 'https://login.microsoftonline.com' };
  const cs: ClientSecretOptions = { ...common, authorityHost: 'https://login.microsoftonline.us' };
  const cli: AzureCliOptions = { tenantId: 't', retry: false };
  // @ts-expect-error clientId is a string
  const badMi: ManagedIdentityOptions = { clientId: 42 };
  void badMi;
  // @ts-expect-error the client secret is required
  JobClient.fromClientSecret('hub.azure-devices.net', 'tenant', 'client');
  return [
    JobClient.fromManagedIdentity('hub.azure-devices.net'),
    JobClient.fromManagedIdentity('hub.azure-devices.net', mi),
    JobClient.fromWorkloadIdentity('hub.azure-devices.net', wi),
    JobClient.fromWorkloadIdentity('hub.azure-devices.net'),
    JobClient.fromClientSecret('hub.azure-devices.net', 'tenant', 'client', 'secret', cs),
    JobClient.fromClientSecret('hub.azure-devices.net', 'tenant', 'client', 'secret'),
    JobClient.fromAzureCli('hub.azure-devices.net', cli),
    JobClient.fromAzureCli('hub.azure-devices.net'),
  ];
}
void nativeCredentials;

// Fleet calls and job events.
import type { FleetJobOptions, FleetJobResult, FleetProgress, FleetTimeoutError, JobEvent } from 'jobclient-under-test';

async function fleet(): Promise<void> {
  const controller = new AbortController();
  const options: FleetJobOptions = {
    deviceIds: ['a', 'b'],
    jobId: 'rollout',
    startTime: new Date(),
    waves: [1, 10],
    failureThreshold: 0.1,
    maxConcurrentJobs: 1,
    waitForJobSlot: true,
    pollIntervalMs: 1000,
    timeoutMs: 60_000,
    abortSignal: controller.signal,
    onProgress: (p: FleetProgress) => void [p.phase, p.wave, p.notAttemptedCount],
  };
  const result: FleetJobResult = await client.runDeviceMethodJob({ methodName: 'reboot', payload: { a: 1 } }, options);
  const stopped: boolean = result.status === 'stopped';
  const untouched: string[] = result.notAttempted;
  const firstWave: number | undefined = result.waves[0]?.failedCount;
  for await (const row of result.deviceJobs({ maxPageSize: 1000 })) void (row.deviceId as string);
  void [stopped, untouched, firstWave];
  const twin: FleetJobResult = await client.runTwinUpdateJob({ tags: { site: 'north' } }, { queryCondition: "tags.site = 'south'" });
  void twin;
  try {
    await client.runTwinUpdateJob({ tags: {} }, { queryCondition: '*', timeoutMs: 1 });
  } catch (e) {
    const last: FleetProgress | undefined = (e as FleetTimeoutError).progress;
    void last;
  }
  for await (const event of client.watchJobs({ jobType: 'scheduleDeviceMethod', pollIntervalMs: 5000, abortSignal: controller.signal })) {
    const e: JobEvent = event;
    const kind: 'created' | 'started' | 'progress' | 'finished' = e.type;
    void [kind, e.job.jobId];
  }

  // @ts-expect-error deviceIds are strings
  client.runDeviceMethodJob({ methodName: 'm' }, { deviceIds: [1] });
  // @ts-expect-error a method needs its name
  client.runDeviceMethodJob({}, { deviceIds: ['a'] });
  // @ts-expect-error options are required
  client.runTwinUpdateJob({ tags: {} });
  // @ts-expect-error not an event option
  client.watchJobs({ deviceIds: ['a'] });
  // @ts-expect-error phase is one of three
  const phase: FleetProgress['phase'] = 'paused';
  void phase;
}
void fleet;
