/* Overloads and shared types, hand-written in lib/header.d.ts; `napi build` puts that file at the
 * top of the generated index.d.ts (package.json "napi.dtsHeaderFile"), the rest is generated from
 * src/. Edit lib/header.d.ts or src/, never index.d.ts. */
/* eslint-disable */

/** The job types this client schedules. */
export type JobType = 'scheduleUpdateTwin' | 'scheduleDeviceMethod'

/**
 * Job status values: the ones azure-iothub declares plus the ones IoT Hub actually returns,
 * so code written for either compiles.
 */
export type JobStatus =
  | 'queued'
  | 'scheduled'
  | 'running'
  | 'cancelled'
  | 'finished'
  | 'unknown'
  | 'enqueued'
  | 'completed'
  | 'failed'

/** Parameters of a direct method run by a job. */
export interface DeviceMethodParams {
  /** The name of the method to call on the device. */
  methodName: string
  /** The method payload sent to the device. */
  payload?: any
  /** The maximum time a device should take to respond to the method. */
  responseTimeoutInSeconds?: number
  /** The maximum time the service tries to connect to the device (passed through to the hub). */
  connectTimeoutInSeconds?: number
}

/** `(error, result1, result2)`; on failure only `error` is given. */
export type TripleValueCallback<TResult1, TResult2> = (
  error?: Error,
  result1?: TResult1,
  result2?: TResult2,
) => void

/** The response part of a result: `statusCode`, `statusMessage` and lower-cased `headers`. */
export interface ResponseMessage {
  statusCode: number
  statusMessage: string
  headers: { [name: string]: string | string[] | undefined }
}

/** What the promise forms of `getJob`, `cancelJob` and `schedule*` resolve to. */
export type JobStatusResponse = {
  /** The job as returned by the hub; see {@link Job}. */
  jobStatus: any
  /** See {@link ResponseMessage}. */
  response: any
}

/** What the promise forms of `Query.next` and `Query.nextAsTwin` resolve to. */
export type ResultWithIncomingMessage<TResult> = {
  result: TResult
  /** See {@link ResponseMessage}. */
  message: any
}

/** `(error, result, response)` callback of the query methods. */
export type IncomingMessageCallback<TResult> = TripleValueCallback<TResult, any>

/** Counters of a job's device operations. */
export interface DeviceJobStatistics {
  deviceCount?: number
  failedCount?: number
  succeededCount?: number
  runningCount?: number
  pendingCount?: number
}

/** A job as IoT Hub returns it (JobResponse of the service API). */
export interface Job {
  jobId: string
  /** The WHERE clause selecting the devices. */
  queryCondition?: string
  /** ISO 8601 times. */
  createdTime?: string
  startTime?: string
  endTime?: string
  /** The same times as some API paths spell them. */
  createdDateTimeUtc?: string
  startTimeUtc?: string
  endTimeUtc?: string
  maxExecutionTimeInSeconds?: number
  /** Other service job types (`export`, `import`, …) arrive as strings too. */
  type?: JobType | (string & {})
  /** `type` as some API paths spell it. */
  jobType?: JobType | (string & {})
  cloudToDeviceMethod?: DeviceMethodParams
  /** The twin patch of a `scheduleUpdateTwin` job. */
  updateTwin?: any
  /** Unknown future values arrive as strings too. */
  status?: JobStatus | (string & {})
  failureReason?: string
  statusMessage?: string
  deviceJobStatistics?: DeviceJobStatistics
}

/** An access token as `TokenCredential.getToken` returns it. */
export interface AccessToken {
  token: string
  expiresOnTimestamp: number
}

/** Any `@azure/identity` credential, or an object with the same `getToken`. */
export interface TokenCredential {
  getToken(scopes: string | string[], options?: any): Promise<AccessToken | null>
}

/** Extra options accepted as the last argument of the `JobClient` factories. */
export interface JobClientOptions {
  /** Extra trusted CA certificate(s), PEM (added to Node's default roots (Mozilla's) and `NODE_EXTRA_CA_CERTS`). */
  ca?: string
  /**
   * Retry policy for transient failures (429, 500, 503, 504, connection errors), or `false` for
   * a single attempt like azure-iothub.
   */
  retry?: false | { maxRetries?: number; initialDelayMs?: number; maxDelayMs?: number }
  /** Overall time limit of one call (retries included), in milliseconds; 0 for none. Default 300000. */
  timeoutMs?: number
  /** Prepended to the `User-Agent` header. */
  userAgentPrefix?: string
  /** The `api-version` sent to the hub (default `2021-04-12`). */
  apiVersion?: string
  /**
   * HTTP proxy URL for HTTPS traffic (tunnelled with CONNECT), e.g. `http://user:pass@proxy:3128`.
   * Default: `HTTPS_PROXY` / `https_proxy` / `ALL_PROXY`, with `NO_PROXY` exceptions, read when the
   * client is created. Applies to token requests of the native credentials too.
   */
  proxy?: string
}

/** Options of `JobClient.fromManagedIdentity`. */
export interface ManagedIdentityOptions extends JobClientOptions {
  /** Client id of a user-assigned identity (default: the system-assigned identity). */
  clientId?: string
}

/** Options of `JobClient.fromWorkloadIdentity`; each defaults to its `AZURE_*` variable. */
export interface WorkloadIdentityOptions extends JobClientOptions {
  /** Default `AZURE_TENANT_ID`. */
  tenantId?: string
  /** Default `AZURE_CLIENT_ID`. */
  clientId?: string
  /** The federated (service account) token file. Default `AZURE_FEDERATED_TOKEN_FILE`. */
  tokenFilePath?: string
  /** `https://` Microsoft Entra authority. Default `AZURE_AUTHORITY_HOST`, else the public cloud. */
  authorityHost?: string
}

/** Options of `JobClient.fromClientSecret`. */
export interface ClientSecretOptions extends JobClientOptions {
  /** `https://` Microsoft Entra authority. Default `AZURE_AUTHORITY_HOST`, else the public cloud. */
  authorityHost?: string
}

/** Options of `JobClient.fromAzureCli`. */
export interface AzureCliOptions extends JobClientOptions {
  /** Tenant to request the token in (default: the CLI's current tenant). */
  tenantId?: string
}

export interface JobClient {
  getJob(jobId: string | number, done: TripleValueCallback<any, any>): void
  getJob(jobId: string | number): Promise<JobStatusResponse>

  createQuery(jobType?: JobType, jobStatus?: JobStatus, pageSize?: number): Query

  cancelJob(jobId: string | number, done: TripleValueCallback<any, any>): void
  cancelJob(jobId: string | number): Promise<JobStatusResponse>

  scheduleDeviceMethod(
    jobId: string | number,
    queryCondition: string,
    methodParams: DeviceMethodParams,
    jobStartTime: Date,
    maxExecutionTimeInSeconds: number,
    done: TripleValueCallback<any, any>,
  ): void
  scheduleDeviceMethod(
    jobId: string | number,
    queryCondition: string,
    methodParams: DeviceMethodParams,
    jobStartTime: Date,
    done: TripleValueCallback<any, any>,
  ): void
  scheduleDeviceMethod(
    jobId: string | number,
    queryCondition: string,
    methodParams: DeviceMethodParams,
    done: TripleValueCallback<any, any>,
  ): void
  scheduleDeviceMethod(
    jobId: string | number,
    queryCondition: string,
    methodParams: DeviceMethodParams,
    jobStartTime: Date,
    maxExecutionTimeInSeconds: number,
  ): Promise<JobStatusResponse>
  scheduleDeviceMethod(
    jobId: string | number,
    queryCondition: string,
    methodParams: DeviceMethodParams,
    jobStartTime: Date,
  ): Promise<JobStatusResponse>
  scheduleDeviceMethod(
    jobId: string | number,
    queryCondition: string,
    methodParams: DeviceMethodParams,
  ): Promise<JobStatusResponse>

  scheduleTwinUpdate(
    jobId: string | number,
    queryCondition: string,
    patch: any,
    jobStartTime: Date,
    maxExecutionTimeInSeconds: number,
    done: TripleValueCallback<any, any>,
  ): void
  scheduleTwinUpdate(
    jobId: string | number,
    queryCondition: string,
    patch: any,
    jobStartTime: Date,
    done: TripleValueCallback<any, any>,
  ): void
  scheduleTwinUpdate(
    jobId: string | number,
    queryCondition: string,
    patch: any,
    done: TripleValueCallback<any, any>,
  ): void
  scheduleTwinUpdate(
    jobId: string | number,
    queryCondition: string,
    patch: any,
    jobStartTime: Date,
    maxExecutionTimeInSeconds?: number,
  ): Promise<JobStatusResponse>
  scheduleTwinUpdate(
    jobId: string | number,
    queryCondition: string,
    patch: any,
    jobStartTime: Date,
  ): Promise<JobStatusResponse>
  scheduleTwinUpdate(jobId: string | number, queryCondition: string, patch: any): Promise<JobStatusResponse>
}

export declare namespace JobClient {
  type JobCallback = TripleValueCallback<any, any>
}

export interface Query {
  /** The token of the next page (`null` before the first page, `undefined` after the last). */
  continuationToken: string
  /** Whether another page is available. */
  hasMoreResults: boolean
  next(continuationToken: string, done: IncomingMessageCallback<any>): void
  next(done: IncomingMessageCallback<any>): void
  next(continuationToken: string): Promise<ResultWithIncomingMessage<any>>
  next(): Promise<ResultWithIncomingMessage<any>>
  nextAsTwin(continuationToken: string, done: IncomingMessageCallback<any[]>): void
  nextAsTwin(done: IncomingMessageCallback<any[]>): void
  nextAsTwin(continuationToken: string): Promise<ResultWithIncomingMessage<any[]>>
  nextAsTwin(): Promise<ResultWithIncomingMessage<any[]>>
}

/** The error classes of azure-iothub (azure-iot-common), all `Error` subclasses. */
export declare namespace errors {
  class ArgumentError extends Error {
    constructor(message?: string)
  }
  class ArgumentOutOfRangeError extends Error {
    constructor(message?: string)
  }
  class DeviceMaximumQueueDepthExceededError extends Error {
    constructor(message?: string)
  }
  class DeviceNotFoundError extends Error {
    constructor(message?: string)
  }
  class FormatError extends Error {
    constructor(message?: string)
  }
  class UnauthorizedError extends Error {
    constructor(message?: string)
  }
  class NotImplementedError extends Error {
    constructor(message?: string)
  }
  class NotConnectedError extends Error {
    constructor(message?: string)
  }
  class IotHubQuotaExceededError extends Error {
    constructor(message?: string)
  }
  class MessageTooLargeError extends Error {
    constructor(message?: string)
  }
  class InternalServerError extends Error {
    constructor(message?: string)
  }
  class ServiceUnavailableError extends Error {
    constructor(message?: string)
  }
  class IotHubNotFoundError extends Error {
    constructor(message?: string)
  }
  class IoTHubSuspendedError extends Error {
    constructor(message?: string)
  }
  class JobNotFoundError extends Error {
    constructor(message?: string)
  }
  class TooManyDevicesError extends Error {
    constructor(message?: string)
  }
  class ThrottlingError extends Error {
    constructor(message?: string)
  }
  class DeviceAlreadyExistsError extends Error {
    constructor(message?: string)
  }
  class DeviceMessageLockLostError extends Error {
    constructor(message?: string)
  }
  class InvalidEtagError extends Error {
    constructor(message?: string)
  }
  class InvalidOperationError extends Error {
    constructor(message?: string)
  }
  class PreconditionFailedError extends Error {
    constructor(message?: string)
  }
  class TimeoutError extends Error {
    constructor(message?: string)
  }
  class BadDeviceResponseError extends Error {
    constructor(message?: string)
  }
  class GatewayTimeoutError extends Error {
    constructor(message?: string)
  }
  class DeviceTimeoutError extends Error {
    constructor(message?: string)
  }
  class CloudToDeviceDetachedError extends Error {
    innerError: Error
    constructor(message?: string)
  }
  class DeviceMethodsDetachedError extends Error {
    innerError: Error
    constructor(message?: string)
  }
  class TwinDetachedError extends Error {
    innerError: Error
    constructor(message?: string)
  }
  class TwinRequestError extends Error {
    transportError: any
    constructor(message?: string)
  }
  class OperationCancelledError extends Error {
    constructor(message?: string)
  }
  class DeviceRegistrationFailedError extends Error {
    constructor(message?: string)
  }
  class SecurityDeviceError extends Error {
    constructor(message?: string)
  }
}

/**
 * Properties that hub errors (every error this client reports for a failed HTTP call) carry,
 * as in azure-iothub: the response and its raw body text.
 */
export interface HubErrorDetails {
  response?: ResponseMessage
  responseBody?: string
}

// ---------------------------------------------------------------------------------------------
// The modern API (iothub-jobs only): async iteration, job monitoring, cancellation.

/**
 * A standard `AbortSignal` (from `AbortController`, `AbortSignal.timeout()`, …), described
 * structurally so these typings need neither the DOM lib nor `@types/node`. An aborted call
 * rejects with a `DOMException` whose `name` is `'AbortError'` (its `cause` is the signal's `reason`).
 */
export interface AbortSignalLike {
  readonly aborted: boolean
  readonly reason?: any
  addEventListener(type: 'abort', listener: (this: AbortSignalLike, ev: any) => any, options?: any): void
  removeEventListener(type: 'abort', listener: (this: AbortSignalLike, ev: any) => any, options?: any): void
}

/** Where `byPage` starts and how large its pages are. */
export interface PageSettings {
  /** The token of a page yielded earlier (`page.continuationToken`): resume after it. */
  continuationToken?: string
  /** Items per page (the hub's `x-ms-max-item-count`; it caps at 1000). */
  maxPageSize?: number
}

/** A page yielded by `byPage`: the items, plus the token of the next page (`undefined` on the last). */
export type ContinuablePage<TElement> = TElement[] & { continuationToken?: string }

/** The Azure SDK's `PagedAsyncIterableIterator` shape: items one by one, or page by page. */
export interface PagedAsyncIterableIterator<TElement, TPage = ContinuablePage<TElement>, TPageSettings = PageSettings> {
  next(): Promise<IteratorResult<TElement>>
  [Symbol.asyncIterator](): PagedAsyncIterableIterator<TElement, TPage, TPageSettings>
  byPage(settings?: TPageSettings): AsyncIterableIterator<TPage>
}

/** Options of `listJobs`. */
export interface ListJobsOptions {
  jobType?: JobType
  jobStatus?: JobStatus
  /** Jobs per page read from the hub. */
  maxPageSize?: number
  abortSignal?: AbortSignalLike
}

/** Options of `listDeviceJobs`. */
export interface ListDeviceJobsOptions {
  /** Rows per page read from the hub. */
  maxPageSize?: number
  abortSignal?: AbortSignalLike
}

/** Options of `waitForJob`. */
export interface WaitForJobOptions {
  /** Pause between two reads of the job, in milliseconds. Default 1000. */
  pollIntervalMs?: number
  /** Give up after this many milliseconds with `errors.TimeoutError` (its `job` is the last read). Default: no limit. */
  timeoutMs?: number
  /** How long a job may still be unknown to the hub (404 or status `unknown`) after the wait starts. Default 30000. */
  notFoundGraceMs?: number
  /** Called with every job read (not the tolerated not-found ones), before the next read; a throw rejects the wait. */
  onProgress?: (job: Job) => void
  /** Stops waiting (the job itself is not cancelled). */
  abortSignal?: AbortSignalLike
}

/** `errors.TimeoutError` from `waitForJob`: `job` is the last job read, if any. */
export interface WaitTimeoutError extends Error {
  name: 'TimeoutError'
  job?: Job
}

/** Status of one device's part in a job (`canceled` is the service's spelling). */
export type DeviceJobStatus = 'pending' | 'scheduled' | 'running' | 'completed' | 'failed' | 'canceled' | (string & {})

/** One device's row of a job (`SELECT * FROM devices.jobs`). */
export interface DeviceJob {
  deviceId: string
  jobId: string
  jobType?: JobType | (string & {})
  status: DeviceJobStatus
  /** ISO 8601 times. */
  startTimeUtc?: string
  endTimeUtc?: string
  createdDateTimeUtc?: string
  lastUpdatedDateTimeUtc?: string
  /** What the device answered to the direct method of a `scheduleDeviceMethod` job. */
  outcome?: { deviceMethodResponse?: { status: number; payload: any } }
  /** Why this device failed (`DeviceNotOnline`, `GatewayTimeout`, `JobTimeout`, …). */
  error?: { code: string; description: string }
}

/** Options of `runDeviceMethodJob` / `runTwinUpdateJob`: exactly one of `deviceIds` and `queryCondition`. */
export interface FleetJobOptions {
  /** Explicit devices, any number (duplicates are ignored): split into jobs whose conditions fit the hub's limit. */
  deviceIds?: string[]
  /** A WHERE clause (`'*'` for every device); resolved to a device list first when `waves` is given. */
  queryCondition?: string
  /** Base id (1 to 64 of `[A-Za-z0-9-]`); hub jobs are `<jobId>-<wave>-<part>` unless there is only one. Default: a random uuid. */
  jobId?: string
  /** Default: now. */
  startTime?: Date | string
  /** Per hub job. Default 3600. */
  maxExecutionTimeInSeconds?: number
  /** Staged rollout: devices per wave, e.g. `[10, 100, 1000]`; the last size repeats until every device is covered. */
  waves?: number[]
  /** 0..1: stop after a wave whose failed / attempted ratio exceeds it (status `'stopped'`). */
  failureThreshold?: number
  /** Hub jobs running at once. Default 1 (an S1 hub allows one). */
  maxConcurrentJobs?: number
  /** Default true: on 429 `ThrottlingMaxActiveJobCountExceeded` wait (backing off, up to 30 s apart) for a slot. */
  waitForJobSlot?: boolean
  /** Pause between two reads of the running jobs. Default 2000. */
  pollIntervalMs?: number
  /** Bound on the whole call → `errors.TimeoutError` with `progress`. Default: none. */
  timeoutMs?: number
  /** Longest `deviceId IN [...]` condition per job, in bytes. Default 8000 (the hub refuses about 8 KB and more). */
  maxConditionLength?: number
  /** → `AbortError`; hub jobs already created go on (they are not cancelled). */
  abortSignal?: AbortSignalLike
  /** The combined state after every round of reads; a throw rejects the call. */
  onProgress?: (progress: FleetProgress) => void
}

/** The combined state of a fleet call. */
export interface FleetProgress {
  phase: 'waitingForSlot' | 'running' | 'done'
  /** 1-based. */
  wave: number
  waveCount: number
  /** Hub jobs created so far. */
  jobIds: string[]
  deviceCount: number
  succeededCount: number
  failedCount: number
  runningCount: number
  pendingCount: number
  /** Devices whose job has not been created (yet). */
  notAttemptedCount: number
}

export interface FleetWave {
  wave: number
  jobIds: string[]
  deviceCount: number
  succeededCount: number
  failedCount: number
}

/** The end of a fleet call. */
export interface FleetJobResult {
  /** `'stopped'`: a wave passed `failureThreshold` and the later waves were not run. */
  status: 'completed' | 'stopped'
  jobIds: string[]
  deviceCount: number
  succeededCount: number
  failedCount: number
  /** Devices never scheduled (after a stop). */
  notAttempted: string[]
  waves: FleetWave[]
  /** Per-device rows of every hub job of the call, job after job: each device once. */
  deviceJobs(options?: ListDeviceJobsOptions): PagedAsyncIterableIterator<DeviceJob>
}

/** `errors.TimeoutError` from a fleet call: `progress` is the last state reported, if any. */
export interface FleetTimeoutError extends Error {
  name: 'TimeoutError'
  progress?: FleetProgress
}

/** Options of `watchJobs`. */
export interface WatchJobsOptions {
  jobType?: JobType
  jobStatus?: JobStatus
  /** Pause between two reads of the jobs query. Default 5000. */
  pollIntervalMs?: number
  /** Ends the iteration with an `AbortError`. */
  abortSignal?: AbortSignalLike
}

/** A job lifecycle change seen by `watchJobs`. */
export interface JobEvent {
  type: 'created' | 'started' | 'progress' | 'finished'
  job: Job
}

export interface JobClient {
  /** A direct method on any number of devices: split into hub jobs, waves, slot waiting, one combined result. */
  runDeviceMethodJob(method: DeviceMethodParams, options: FleetJobOptions): Promise<FleetJobResult>
  /** A twin update on any number of devices, like `runDeviceMethodJob`; `etag` defaults to `'*'`. */
  runTwinUpdateJob(patch: object, options: FleetJobOptions): Promise<FleetJobResult>
  /** Job lifecycle events of the hub's jobs (those finished before the watch started are not reported). */
  watchJobs(options?: WatchJobsOptions): AsyncIterableIterator<JobEvent>
  /** Every job (optionally of one type and status), read page by page as iteration proceeds. */
  listJobs(options?: ListJobsOptions): PagedAsyncIterableIterator<Job>
  /** The per-device rows of a job: status, method response or error. */
  listDeviceJobs(jobId: string | number, options?: ListDeviceJobsOptions): PagedAsyncIterableIterator<DeviceJob>
  /** Resolves with the job once it is `completed`, `failed` or `cancelled`. */
  waitForJob(jobId: string | number, options?: WaitForJobOptions): Promise<Job>
}

export interface Query {
  /** Items of every remaining page, following `continuationToken`. */
  [Symbol.asyncIterator](): AsyncIterableIterator<any>
}

/**
 * Which binding artifact the generated loader actually loaded: `'native'` for
 * a native addon, otherwise the `platformArchABI` of the WASI flavor. Every
 * flavor napi-rs can build is listed, because `NAPI_RS_NATIVE_LIBRARY_PATH`
 * can point the loader at a WASI artifact this package does not build itself.
 */
export declare const __napiBindingTarget: 'native' | 'wasm32-wasi' | 'wasm32-wasip1'

export declare class JobClient {
  /** `JobClient.fromConnectionString(connectionString, options?)`. */
  static fromConnectionString(connectionString: string, options?: JobClientOptions): JobClient
  /** `JobClient.fromSharedAccessSignature(sharedAccessSignature, options?)`. */
  static fromSharedAccessSignature(sharedAccessSignature: string, options?: JobClientOptions): JobClient
  /** `JobClient.fromTokenCredential(hostName, tokenCredential, options?)`. */
  static fromTokenCredential(hostName: string, tokenCredential: TokenCredential, options?: JobClientOptions): JobClient

  /** `JobClient.fromManagedIdentity(hostName, { clientId?, ...options })`. */
  static fromManagedIdentity(hostName: string, options?: ManagedIdentityOptions): JobClient
  /** `JobClient.fromWorkloadIdentity(hostName, { tenantId?, clientId?, tokenFilePath?, authorityHost?, ...options })`. */
  static fromWorkloadIdentity(hostName: string, options?: WorkloadIdentityOptions): JobClient
  /** `JobClient.fromClientSecret(hostName, tenantId, clientId, clientSecret, { authorityHost?, ...options })`. */
  static fromClientSecret(hostName: string, tenantId: string, clientId: string, clientSecret: string, options?: ClientSecretOptions): JobClient
  /** `JobClient.fromAzureCli(hostName, { tenantId?, ...options })`. */
  static fromAzureCli(hostName: string, options?: AzureCliOptions): JobClient

}

export declare class Query {}
