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
