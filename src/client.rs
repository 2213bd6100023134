//! The exported `JobClient` class: factories, job operations and `createQuery`.
//!
//! Methods take their arguments as raw JavaScript values and resolve the overloads like
//! `azure-iothub` does; their TypeScript signatures (all overloads) live in `header.d.ts`.

use std::sync::Arc;

use iothub_jobs_core::{ClientOptions, JobClient as CoreClient, Response};
use napi::bindgen_prelude::{Env, JsValue, Unknown};
use napi::sys::{napi_env, napi_value};
use napi::Result;
use napi_derive::napi;

use crate::args;
use crate::callback::{self, Converted, Mode, Outcome, Pack};
use crate::credential::JsTokenCredential;
use crate::errors;
use crate::job_request::{self, Schedule, ScheduleArgs};
use crate::js;
use crate::query::Query;
use crate::recycle::Recycled;
use crate::response;

#[napi]
pub struct JobClient {
    pub(crate) inner: CoreClient,
}

/// A job operation's outcome: `(job, response)`; an invalid JSON body gives the
/// `SyntaxError` together with the response, as the reference does.
fn job_outcome(
    env: napi_env,
    result: std::result::Result<Recycled<Response>, iothub_jobs_core::Error>,
) -> Outcome {
    let response = match result {
        Ok(response) => response,
        Err(e) => return Err((errors::core_error_value(env, e), None)),
    };
    let message = match response::response_object(env, &response) {
        Ok(m) => m,
        Err(e) => return Err((errors::error_value(env, e), None)),
    };
    match response::result_value(env, &response) {
        Ok(job) => Ok((job, message)),
        Err(e) => Err((errors::error_value(env, e), Some(message))),
    }
}

/// [`job_outcome`] in the promise form: the promise's `{ jobStatus, response }` made in one step.
fn job_status_response(
    env: napi_env,
    result: std::result::Result<Recycled<Response>, iothub_jobs_core::Error>,
) -> Converted {
    Converted::Packed(match result {
        Ok(response) => {
            response::job_status_response(env, &response).map_err(|e| errors::error_value(env, e))
        }
        Err(e) => Err(errors::core_error_value(env, e)),
    })
}

/// How a job operation's result is converted for `mode`.
fn job_conversion(
    mode: Mode,
) -> fn(napi_env, std::result::Result<Recycled<Response>, iothub_jobs_core::Error>) -> Converted {
    if mode.is_promise() {
        job_status_response
    } else {
        |env, result| job_outcome(env, result).into()
    }
}

fn core_thrown(env: napi_env, error: iothub_jobs_core::Error) -> napi::Error {
    match errors::core_error(env, error) {
        Ok(v) => js::retain_error(env, v),
        Err(e) => e,
    }
}

/// A factory taking one string (a connection string or a SAS): the reference's falsy check and
/// message, then the core factory.
fn from_string_argument(
    env: &Env,
    value: Unknown,
    name: &str,
    options: Unknown,
    build: fn(&str, ClientOptions) -> std::result::Result<CoreClient, iothub_jobs_core::Error>,
) -> Result<JobClient> {
    let raw = env.raw();
    let value = value.raw();
    if !js::truthy(raw, value) {
        return Err(errors::cannot_be(raw, name, value));
    }
    let text = js::to_string(raw, value)?;
    let options = args::client_options(raw, options.raw())?;
    build(&text, options)
        .map(|inner| JobClient { inner })
        .map_err(|e| core_thrown(raw, e))
}

/// A value created in `env`'s current scope, returned to JavaScript.
fn unknown(env: &Env, value: napi_value) -> Unknown<'_> {
    js::unknown(env, value)
}

impl JobClient {
    fn job_call<'a, F, Fut>(
        &self,
        env: &'a Env,
        job_id: Unknown<'a>,
        done: Unknown<'a>,
        op: F,
    ) -> Result<Unknown<'a>>
    where
        F: FnOnce(CoreClient, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = std::result::Result<Response, iothub_jobs_core::Error>>
            + Send
            + 'static,
    {
        let raw = env.raw();
        let mode = Mode::from_callback(raw, done.raw())?;
        let id =
            args::check_job_id(raw, job_id.raw()).and_then(|()| js::to_string(raw, job_id.raw()));
        let id = match id {
            Ok(id) => id,
            Err(e) => return mode.fail(raw, e).map(|v| unknown(env, v)),
        };
        let client = self.inner.clone();
        let request = move || async move { op(client, id).await.map(Recycled::new) };
        let out = callback::spawn(raw, mode, Pack::Job, request, job_conversion(mode))?;
        Ok(unknown(env, out))
    }

    fn schedule<'a>(&self, env: &'a Env, kind: Schedule, a: ScheduleArgs) -> Result<Unknown<'a>> {
        let raw = env.raw();
        let mode = job_request::mode(raw, &a)?;
        let request = match job_request::build(raw, kind, &a, mode) {
            Ok(request) => request,
            Err(e) => return mode.fail(raw, e).map(|v| unknown(env, v)),
        };
        let client = self.inner.clone();
        let work = move || async move { client.schedule_job(&request).await.map(Recycled::new) };
        let out = callback::spawn(raw, mode, Pack::Job, work, job_conversion(mode))?;
        Ok(unknown(env, out))
    }
}

#[napi]
impl JobClient {
    /// `JobClient.fromConnectionString(connectionString, options?)`.
    #[napi(
        factory,
        catch_unwind,
        ts_args_type = "connectionString: string, options?: JobClientOptions"
    )]
    pub fn from_connection_string(
        env: &Env,
        connection_string: Unknown,
        options: Unknown,
    ) -> Result<Self> {
        from_string_argument(
            env,
            connection_string,
            "connectionString",
            options,
            CoreClient::from_connection_string,
        )
    }

    /// `JobClient.fromSharedAccessSignature(sharedAccessSignature, options?)`.
    #[napi(
        factory,
        catch_unwind,
        ts_args_type = "sharedAccessSignature: string, options?: JobClientOptions"
    )]
    pub fn from_shared_access_signature(
        env: &Env,
        shared_access_signature: Unknown,
        options: Unknown,
    ) -> Result<Self> {
        from_string_argument(
            env,
            shared_access_signature,
            "sharedAccessSignature",
            options,
            CoreClient::from_shared_access_signature,
        )
    }

    /// `JobClient.fromTokenCredential(hostName, tokenCredential, options?)`.
    #[napi(
        factory,
        catch_unwind,
        ts_args_type = "hostName: string, tokenCredential: TokenCredential, options?: JobClientOptions"
    )]
    pub fn from_token_credential(
        env: &Env,
        host_name: Unknown,
        token_credential: Unknown,
        options: Unknown,
    ) -> Result<Self> {
        let raw = env.raw();
        let host = host_name.raw();
        if !js::truthy(raw, host) {
            let shown = js::to_string(raw, host)?;
            return Err(errors::hub_thrown(
                raw,
                "ArgumentError",
                &format!("config.host cannot be '{shown}'"),
            ));
        }
        let host = js::to_string(raw, host)?;
        let options = args::client_options(raw, options.raw())?;
        let credential = token_credential.raw();
        // Like azure-iothub: no credential at all means requests without `Authorization`.
        let inner = if matches!(
            js::kind(raw, credential),
            js::Kind::Null | js::Kind::Undefined
        ) {
            CoreClient::without_authentication(&host, options)
        } else {
            let credential = Arc::new(JsTokenCredential::new(raw, credential)?);
            CoreClient::from_token_credential(&host, credential, options)
        };
        inner
            .map(|inner| JobClient { inner })
            .map_err(|e| core_thrown(raw, e))
    }

    /// `getJob(jobId[, done])`.
    #[napi(skip_typescript, catch_unwind)]
    pub fn get_job<'a>(
        &self,
        env: &'a Env,
        job_id: Unknown<'a>,
        done: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        self.job_call(env, job_id, done, |client, id| async move {
            client.get_job(&id).await
        })
    }

    /// `cancelJob(jobId[, done])`.
    #[napi(skip_typescript, catch_unwind)]
    pub fn cancel_job<'a>(
        &self,
        env: &'a Env,
        job_id: Unknown<'a>,
        done: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        self.job_call(env, job_id, done, |client, id| async move {
            client.cancel_job(&id).await
        })
    }

    /// `scheduleDeviceMethod(jobId, queryCondition, methodParams[, jobStartTime][, maxExecutionTimeInSeconds][, done])`.
    #[napi(skip_typescript, catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn schedule_device_method<'a>(
        &self,
        env: &'a Env,
        job_id: Unknown<'a>,
        query_condition: Unknown<'a>,
        method_params: Unknown<'a>,
        job_start_time: Unknown<'a>,
        max_execution_time_in_seconds: Unknown<'a>,
        done: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        let a = ScheduleArgs {
            job_id: job_id.raw(),
            query_condition: query_condition.raw(),
            third: method_params.raw(),
            start: job_start_time.raw(),
            max_execution: max_execution_time_in_seconds.raw(),
            done: done.raw(),
        };
        self.schedule(env, Schedule::DeviceMethod, a)
    }

    /// `scheduleTwinUpdate(jobId, queryCondition, patch[, jobStartTime][, maxExecutionTimeInSeconds][, done])`.
    #[napi(skip_typescript, catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn schedule_twin_update<'a>(
        &self,
        env: &'a Env,
        job_id: Unknown<'a>,
        query_condition: Unknown<'a>,
        patch: Unknown<'a>,
        job_start_time: Unknown<'a>,
        max_execution_time_in_seconds: Unknown<'a>,
        done: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        let a = ScheduleArgs {
            job_id: job_id.raw(),
            query_condition: query_condition.raw(),
            third: patch.raw(),
            start: job_start_time.raw(),
            max_execution: max_execution_time_in_seconds.raw(),
            done: done.raw(),
        };
        self.schedule(env, Schedule::TwinUpdate, a)
    }

    /// `createQuery(jobType?, jobStatus?, pageSize?)`.
    #[napi(skip_typescript, catch_unwind)]
    pub fn create_query<'a>(
        &self,
        env: &'a Env,
        job_type: Unknown<'a>,
        job_status: Unknown<'a>,
        page_size: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        Query::create(
            env,
            self.inner.clone(),
            job_type.raw(),
            job_status.raw(),
            page_size.raw(),
        )
    }
}

/// Hands the package entry's `lib/errors.js` and `lib/paging.js` to the addon: the one
/// initialisation call `lib/main.js` makes per environment.
#[napi(js_name = "__init", skip_typescript, catch_unwind)]
pub fn init(env: &Env, errors: Unknown, paging: Unknown) -> Result<()> {
    js::init(env.raw(), errors.raw(), paging.raw())
}
