//! `scheduleDeviceMethod` / `scheduleTwinUpdate` arguments → core `JobRequest`.
//!
//! Follows the reference step by step (overload resolution, validation order, defaults) and
//! produces every JSON fragment with the real `JSON.stringify`, so the request body is
//! byte-identical to `azure-iothub`'s. Allowed differences: the promise forms get the same
//! defaults as the callback forms (`startTime` now, `maxExecutionTimeInSeconds` 3600), and
//! `connectTimeoutInSeconds` is passed through.

use std::time::SystemTime;

use iothub_jobs_core::{json_value, CloudToDeviceMethod, JobKind, JobRequest, RawValue};
use napi::sys::{napi_env, napi_value};
use napi::Result;

use crate::args;
use crate::callback::Mode;
use crate::errors;
use crate::js::{self, Kind};

const DEFAULT_MAX_EXECUTION_TIME_JSON: &str = "3600";

/// Which job is being scheduled; the third argument is `methodParams` or `patch`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schedule {
    DeviceMethod,
    TwinUpdate,
}

/// The six positional arguments as received.
pub(crate) struct ScheduleArgs {
    pub job_id: napi_value,
    pub query_condition: napi_value,
    pub third: napi_value,
    pub start: napi_value,
    pub max_execution: napi_value,
    pub done: napi_value,
}

/// Finds the callback: the first of `jobStartTime`, `maxExecutionTimeInSeconds` that is a
/// function, else `done`; validates it like `tripleValueCallbackToPromise`.
pub(crate) fn mode(env: napi_env, a: &ScheduleArgs) -> Result<Mode> {
    let callback = if js::is_function(env, a.start) {
        a.start
    } else if js::is_function(env, a.max_execution) {
        a.max_execution
    } else {
        a.done
    };
    Mode::from_callback(env, callback)
}

/// Validates (in the reference's order) and builds the request. `Err` carries the JavaScript
/// error to throw or reject with.
pub(crate) fn build(
    env: napi_env,
    kind: Schedule,
    a: &ScheduleArgs,
    mode: Mode,
) -> Result<JobRequest> {
    args::check_job_id(env, a.job_id)?;
    if !js::truthy(env, a.query_condition) {
        return Err(errors::cannot_be(env, "queryCondition", a.query_condition));
    }
    let name = match kind {
        Schedule::DeviceMethod => "methodParams",
        Schedule::TwinUpdate => "patch",
    };
    if !js::truthy(env, a.third) {
        return Err(errors::cannot_be(env, name, a.third));
    }
    let method_name = if kind == Schedule::DeviceMethod {
        let method_name = js::get_any(env, a.third, c"methodName")?;
        if js::is_missing_id(env, method_name) {
            return Err(errors::cannot_be(
                env,
                "methodParams.methodName",
                method_name,
            ));
        }
        Some(method_name)
    } else {
        None
    };

    // Callback position and the defaults the callback forms get.
    let mut start = Start::Value(a.start);
    let mut max_execution = MaxExecution::Value(a.max_execution);
    if js::is_function(env, a.start) {
        if js::truthy(env, a.max_execution) || js::truthy(env, a.done) {
            return Err(errors::type_error(
                env,
                "The callback must be the last parameter",
            ));
        }
        start = Start::Now;
        max_execution = MaxExecution::Default;
    } else if js::is_function(env, a.max_execution) {
        if js::truthy(env, a.done) {
            return Err(errors::type_error(
                env,
                "The callback must be the last parameter",
            ));
        }
        max_execution = MaxExecution::Default;
    } else if matches!(mode, Mode::Promise) {
        // Ours: the promise forms get the callback forms' defaults for missing arguments.
        if js::kind(env, a.start) == Kind::Undefined {
            start = Start::Now;
        }
        if js::kind(env, a.max_execution) == Kind::Undefined {
            max_execution = MaxExecution::Default;
        }
    }

    // cloudToDeviceMethod: { methodName, payload: payload || null, responseTimeoutInSeconds: t || 30 }
    // (read now, serialized after the remaining checks, as the reference does).
    let method_values = match method_name {
        Some(method_name) => {
            let params = a.third;
            let payload = js::get_any(env, params, c"payload")?;
            let response_timeout = js::get_any(env, params, c"responseTimeoutInSeconds")?;
            let connect_timeout = js::get_any(env, params, c"connectTimeoutInSeconds")?;
            Some((method_name, payload, response_timeout, connect_timeout))
        }
        None => None,
    };

    // startTime: jobStartTime ? jobStartTime.toISOString() : null
    let start_time = match start {
        Start::Now => Some(iso_now()),
        Start::Value(v) if !js::truthy(env, v) => None,
        Start::Value(v) => Some(to_iso_string(env, v)?),
    };

    if js::kind(env, a.query_condition) != Kind::String {
        return Err(errors::type_error(
            env,
            "queryCondition must be a sql WHERE clause string",
        ));
    }
    let query_condition = js::read_string(env, a.query_condition)?;
    let job_id = js::to_string(env, a.job_id)?;

    // The body, in the reference's key order.
    let job_id_json = stringify_required(env, "jobId", a.job_id)?;
    let job_kind = match method_values {
        Some((method_name, payload, response_timeout, connect_timeout)) => {
            let method_name_json = stringify_required(env, "methodName", method_name)?;
            let payload_json = if js::truthy(env, payload) {
                stringify(env, "payload", payload)?
            } else {
                None
            };
            let response_timeout_json = if js::truthy(env, response_timeout) {
                stringify(env, "responseTimeoutInSeconds", response_timeout)?
            } else {
                None
            };
            let connect_timeout_json = if js::kind(env, connect_timeout) == Kind::Undefined {
                None
            } else {
                stringify(env, "connectTimeoutInSeconds", connect_timeout)?
            };
            JobKind::DeviceMethod(CloudToDeviceMethod {
                method_name_json,
                payload_json,
                response_timeout_json,
                connect_timeout_json,
            })
        }
        None => JobKind::TwinUpdate {
            patch_json: stringify_required(env, "patch", a.third)?,
        },
    };
    let max_execution_time_json = match max_execution {
        MaxExecution::Default => Some(raw_json(
            env,
            "maxExecutionTimeInSeconds",
            DEFAULT_MAX_EXECUTION_TIME_JSON.to_owned(),
        )?),
        MaxExecution::Value(v) if js::kind(env, v) == Kind::Undefined => None,
        MaxExecution::Value(v) => stringify(env, "maxExecutionTimeInSeconds", v)?,
    };

    Ok(JobRequest {
        job_id,
        job_id_json,
        kind: job_kind,
        start_time,
        max_execution_time_json,
        query_condition,
    })
}

enum Start {
    Now,
    Value(napi_value),
}

enum MaxExecution {
    Default,
    Value(napi_value),
}

/// The real `JSON.stringify(value)` as a body value; `None` when it gives `undefined`.
fn stringify(env: napi_env, what: &str, value: napi_value) -> Result<Option<Box<RawValue>>> {
    js::json_stringify(env, value)?
        .map(|text| raw_json(env, what, text))
        .transpose()
}

/// [`stringify`] for a value that is always present in the body; values JSON cannot represent
/// (functions, symbols) are sent as `null`.
fn stringify_required(env: napi_env, what: &str, value: napi_value) -> Result<Box<RawValue>> {
    let text = js::json_stringify(env, value)?.unwrap_or_else(|| "null".to_owned());
    raw_json(env, what, text)
}

/// `JSON.stringify` always gives JSON, so this fails only if the engine's `JSON` was replaced
/// by something that does not; the caller then gets an `ArgumentError` naming the value.
fn raw_json(env: napi_env, what: &str, text: String) -> Result<Box<RawValue>> {
    json_value(what, text).map_err(|e| errors::hub_thrown(env, e.class().name(), &e.to_string()))
}

/// Calls the real `jobStartTime.toISOString()` (a `RangeError` from an invalid Date
/// propagates); a value without that method gets the reference's `TypeError`.
fn to_iso_string(env: napi_env, value: napi_value) -> Result<String> {
    let method = js::get_any(env, value, c"toISOString")?;
    if !js::is_function(env, method) {
        return Err(errors::type_error(
            env,
            "jobStartTime.toISOString is not a function",
        ));
    }
    let iso = js::call(env, value, method, &[])?;
    js::to_string(env, iso)
}

/// `new Date().toISOString()` computed in Rust: `YYYY-MM-DDTHH:mm:ss.sssZ`.
pub(crate) fn iso_now() -> String {
    let ms = iothub_jobs_core::time::unix_millis(SystemTime::now());
    iothub_jobs_core::time::format_iso8601_millis(ms as i64)
}
