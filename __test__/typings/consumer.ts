// A TypeScript consumer of the JobClient API, compiled with `--strict --noEmit` twice:
//   tsconfig.json            → 'jobclient-under-test' is iothub-jobs (../../index.d.ts)
//   tsconfig.reference.json  → 'jobclient-under-test' is azure-iothub's own typings (reference-shim.ts)
// Code written against azure-iothub must compile unchanged against iothub-jobs, and the
// `@ts-expect-error` lines (mistakes) must be rejected by both.
import { JobClient, Query, errors } from 'jobclient-under-test';
import type { JobType, JobStatus, JobStatusResponse, DeviceMethodParams, TripleValueCallback } from 'jobclient-under-test';

declare const connectionString: string;
declare const sharedAccessSignature: string;

// ---- factories ----
const client: JobClient = JobClient.fromConnectionString(connectionString);
const sasClient: JobClient = JobClient.fromSharedAccessSignature(sharedAccessSignature);
const credential = {
  getToken: async (_scopes: string | string[]) => ({ token: 'token', expiresOnTimestamp: Date.now() + 3600_000 }),
};
const tokenClient: JobClient = JobClient.fromTokenCredential('myhub.azure-devices.net', credential);
void sasClient;
void tokenClient;

// @ts-expect-error a connection string is a string
JobClient.fromConnectionString(42);
// @ts-expect-error a credential needs getToken
JobClient.fromTokenCredential('myhub.azure-devices.net', {});
// @ts-expect-error the host name comes first
JobClient.fromTokenCredential(credential, 'myhub.azure-devices.net');

// ---- shared types ----
const methodParams: DeviceMethodParams = { methodName: 'reboot', payload: { delay: 5 }, responseTimeoutInSeconds: 30, connectTimeoutInSeconds: 10 };
const minimalParams: DeviceMethodParams = { methodName: 'ping' };
const patch = { etag: '*', tags: { building: '43' }, properties: { desired: { telemetryInterval: 30 } } };
const query = "tags.building = '43'";
const jobType: JobType = 'scheduleDeviceMethod';
const twinType: JobType = 'scheduleUpdateTwin';
const statuses: JobStatus[] = ['queued', 'scheduled', 'running', 'cancelled'];
const start = new Date(Date.now() + 60_000);

// @ts-expect-error methodName is required
const noName: DeviceMethodParams = { payload: 1 };
// @ts-expect-error responseTimeoutInSeconds is a number
const badTimeout: DeviceMethodParams = { methodName: 'm', responseTimeoutInSeconds: '30' };
// @ts-expect-error the twin job type is spelled scheduleUpdateTwin
const misspelled: JobType = 'scheduleTwinUpdate';
// @ts-expect-error not a job status
const badStatus: JobStatus = 'bogus';
void noName;
void badTimeout;
void misspelled;
void badStatus;

// ---- callbacks ----
const tripleCallback: TripleValueCallback<any, any> = (err, job, response) => {
  if (err) {
    const message: string = err.message;
    void message;
    return;
  }
  void job;
  void response;
};
const jobCallback: JobClient.JobCallback = (err?: Error, job?: any, response?: any) => {
  void err;
  void job;
  void response;
};

// Every callback overload returns void.
const r1: void = client.getJob('job-1', tripleCallback);
const r2: void = client.getJob(42, jobCallback);
const r3: void = client.cancelJob('job-1', (err, job, response) => {
  void err;
  void job;
  void response;
});
const r4: void = client.scheduleDeviceMethod('job-2', query, methodParams, jobCallback);
const r5: void = client.scheduleDeviceMethod('job-2', query, methodParams, start, jobCallback);
const r6: void = client.scheduleDeviceMethod('job-2', query, minimalParams, start, 3600, jobCallback);
const r7: void = client.scheduleTwinUpdate('job-3', query, patch, tripleCallback);
const r8: void = client.scheduleTwinUpdate('job-3', query, patch, start, tripleCallback);
const r9: void = client.scheduleTwinUpdate(3, query, patch, start, 600, tripleCallback);
void [r1, r2, r3, r4, r5, r6, r7, r8, r9];

// ---- promises ----
async function promises(): Promise<void> {
  const got: JobStatusResponse = await client.getJob('job-1');
  const statusCode: number = got.response.statusCode;
  const continuation: string | undefined = got.response.headers['x-ms-continuation'];
  void statusCode;
  void continuation;
  const job = got.jobStatus;
  void job;

  const cancelled: JobStatusResponse = await client.cancelJob(7);
  void cancelled;

  const m1: JobStatusResponse = await client.scheduleDeviceMethod('job-2', query, methodParams);
  const m2: JobStatusResponse = await client.scheduleDeviceMethod('job-2', query, methodParams, start);
  const m3: JobStatusResponse = await client.scheduleDeviceMethod('job-2', query, methodParams, start, 3600);
  const t1: JobStatusResponse = await client.scheduleTwinUpdate('job-3', query, patch);
  const t2: JobStatusResponse = await client.scheduleTwinUpdate('job-3', query, patch, start);
  const t3: JobStatusResponse = await client.scheduleTwinUpdate('job-3', query, patch, start, 3600);
  void [m1, m2, m3, t1, t2, t3];

  const pending: Promise<JobStatusResponse> = client.getJob('job-1');
  await pending;

  // @ts-expect-error the promise form does not resolve to a string
  const wrong: string = await client.getJob('job-1');
  void wrong;
}
void promises;

// ---- mistakes every client must reject ----
// @ts-expect-error jobId is required
client.getJob();
// @ts-expect-error jobId is a string or a number
client.getJob({ id: 'job-1' });
// @ts-expect-error the callback must be a function
client.getJob('job-1', 'callback');
// @ts-expect-error too many arguments
client.cancelJob('job-1', tripleCallback, 'extra');
// @ts-expect-error the callback form returns nothing to await
const notAPromise: Promise<JobStatusResponse> = client.cancelJob('job-1', tripleCallback);
void notAPromise;
// @ts-expect-error the callback must be the last parameter
client.scheduleDeviceMethod('job-2', query, methodParams, jobCallback, 3600);
// @ts-expect-error the callback must be the last parameter
client.scheduleTwinUpdate('job-3', query, patch, tripleCallback, start);
// @ts-expect-error queryCondition is a string
client.scheduleDeviceMethod('job-2', 42, methodParams);
// @ts-expect-error methodParams needs a methodName
client.scheduleDeviceMethod('job-2', query, { payload: 1 });
// @ts-expect-error jobStartTime is a Date
client.scheduleDeviceMethod('job-2', query, methodParams, '2030-01-01T00:00:00Z');
// @ts-expect-error maxExecutionTimeInSeconds is a number
client.scheduleTwinUpdate('job-3', query, patch, start, '3600');
// @ts-expect-error the error argument is an Error, not a string
client.getJob('job-1', (err: string) => void err);

// ---- queries ----
const q0: Query = client.createQuery();
const q1: Query = client.createQuery(jobType);
const q2: Query = client.createQuery(undefined, 'running');
const q3: Query = client.createQuery(twinType, statuses[0], 50);
void [q0, q1, q2];

// @ts-expect-error not a job type
client.createQuery('notAJobType');
// @ts-expect-error not a job status
client.createQuery('scheduleDeviceMethod', 'bogus');
// @ts-expect-error the page size is a number
client.createQuery('scheduleDeviceMethod', 'queued', '10');

async function paging(): Promise<number> {
  let count = 0;
  const more: boolean = q3.hasMoreResults;
  void more;
  while (q3.hasMoreResults) {
    const page = await q3.next();
    count += (page.result as unknown[]).length;
    const code: number | undefined = page.message.statusCode;
    void code;
    const token: string = q3.continuationToken;
    void token;
  }
  const again = await q3.next(q3.continuationToken);
  void again.result;
  const twins = await q3.nextAsTwin();
  count += twins.result.length;
  const twinsFrom = await q3.nextAsTwin('token');
  void twinsFrom;
  q3.next((err, result, response) => {
    void err;
    void result;
    void response;
  });
  q3.next('token', (err, result, response) => {
    void err;
    void result;
    void response;
  });
  q3.nextAsTwin((err, result) => {
    if (!err && result) count += result.length;
  });
  q3.nextAsTwin('token', (err) => void err);
  // @ts-expect-error the continuation token is a string
  await q3.next(42);
  // @ts-expect-error hasMoreResults is a boolean
  const notString: string = q3.hasMoreResults;
  void notString;
  return count;
}
void paging;

// ---- errors ----
async function errorHandling(): Promise<void> {
  try {
    await client.getJob('job-1');
  } catch (e) {
    if (e instanceof errors.ThrottlingError) {
      const name: string = e.name;
      const message: string = e.message;
      void name;
      void message;
    } else if (e instanceof errors.DeviceNotFoundError || e instanceof errors.JobNotFoundError) {
      const asError: Error = e;
      void asError;
    } else if (e instanceof errors.UnauthorizedError) {
      throw e;
    }
  }
  const handle = (err: errors.ArgumentError): Error => err;
  void handle;
  const thrown: Error = new errors.InternalServerError('boom');
  void thrown;
}
void errorHandling;

// All 33 error classes of the reference are there, each constructible with a message.
const allErrorClasses: Array<new (message?: string) => Error> = [
  errors.ArgumentError,
  errors.ArgumentOutOfRangeError,
  errors.DeviceMaximumQueueDepthExceededError,
  errors.DeviceNotFoundError,
  errors.FormatError,
  errors.UnauthorizedError,
  errors.NotImplementedError,
  errors.NotConnectedError,
  errors.IotHubQuotaExceededError,
  errors.MessageTooLargeError,
  errors.InternalServerError,
  errors.ServiceUnavailableError,
  errors.IotHubNotFoundError,
  errors.IoTHubSuspendedError,
  errors.JobNotFoundError,
  errors.TooManyDevicesError,
  errors.ThrottlingError,
  errors.DeviceAlreadyExistsError,
  errors.DeviceMessageLockLostError,
  errors.InvalidEtagError,
  errors.InvalidOperationError,
  errors.PreconditionFailedError,
  errors.TimeoutError,
  errors.BadDeviceResponseError,
  errors.GatewayTimeoutError,
  errors.DeviceTimeoutError,
  errors.CloudToDeviceDetachedError,
  errors.DeviceMethodsDetachedError,
  errors.TwinDetachedError,
  errors.TwinRequestError,
  errors.OperationCancelledError,
  errors.DeviceRegistrationFailedError,
  errors.SecurityDeviceError,
];
void allErrorClasses;
// @ts-expect-error there is no such error class
void errors.NoSuchError;
