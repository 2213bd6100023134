// 'jobclient-under-test' for tsconfig.reference.json: azure-iothub@1.16.6's own typings, exposed
// under the names iothub-jobs exports (azure-iothub ships azure-iot-common's errors bundled in
// dist/common-core; it does not re-export them nor the JobClient helper types from its root).
export { JobClient } from 'azure-iothub';
export type { DeviceMethodParams } from 'azure-iothub';
export { Query } from 'azure-iothub/dist/query';
export type { JobType, JobStatus, JobStatusResponse } from 'azure-iothub/dist/job_client';
export type { TripleValueCallback } from 'azure-iothub/dist/common-core/promise_utils';
export type { ResultWithIncomingMessage } from 'azure-iothub/dist/interfaces';
export * as errors from 'azure-iothub/dist/common-core/errors';
