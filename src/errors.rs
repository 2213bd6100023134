//! The one place where failures become JavaScript errors.
//!
//! Hub errors are instances of the classes in `lib/errors.js` (handed to the addon by the
//! package entry through `__init`), so `instanceof errors.ThrottlingError` and
//! `instanceof Error` both hold. Validation errors use the built-in JavaScript classes with the
//! reference's exact messages.

use std::ffi::CStr;

use iothub_jobs_core::Error as CoreError;
use napi::sys::{napi_env, napi_value};
use napi::Result;

use crate::credential::NotCallable;
use crate::js;
use crate::response;

fn class_constructor(env: napi_env, name: &str) -> Option<napi_value> {
    let errors = js::errors_module(env).ok()??;
    let ctor = js::get_by_name(env, errors, name).ok()?;
    js::is_function(env, ctor).then_some(ctor)
}

/// `new errors[class](message)`; a plain `Error` (with `name` set) when the class is unknown
/// or the entry did not register the classes.
pub(crate) fn hub_error(env: napi_env, class: &str, message: &str) -> Result<napi_value> {
    let msg = js::string(env, message)?;
    if class != "Error" {
        if let Some(ctor) = class_constructor(env, class) {
            return js::construct(env, ctor, &[msg]);
        }
    }
    let err = js::error(env, msg)?;
    if class != "Error" {
        js::set(env, err, c"name", js::string(env, class)?)?;
    }
    Ok(err)
}

fn builtin_error(env: napi_env, class: &CStr, message: &str) -> Result<napi_value> {
    let ctor = js::get(env, js::global(env)?, class)?;
    js::construct(env, ctor, &[js::string(env, message)?])
}

pub(crate) fn type_error(env: napi_env, message: &str) -> napi::Error {
    as_thrown(env, builtin_error(env, c"TypeError", message))
}

pub(crate) fn reference_error(env: napi_env, message: &str) -> napi::Error {
    as_thrown(env, builtin_error(env, c"ReferenceError", message))
}

/// The reference's `'<name> cannot be \'' + value + '\''` as a `ReferenceError`.
pub(crate) fn cannot_be(env: napi_env, name: &str, value: napi_value) -> napi::Error {
    match js::to_string(env, value) {
        Ok(v) => reference_error(env, &format!("{name} cannot be '{v}'")),
        Err(e) => e,
    }
}

/// An error of a `lib/errors.js` class, ready to be thrown or used as a rejection.
pub(crate) fn hub_thrown(env: napi_env, class: &str, message: &str) -> napi::Error {
    as_thrown(env, hub_error(env, class, message))
}

fn as_thrown(env: napi_env, value: Result<napi_value>) -> napi::Error {
    match value {
        Ok(v) => js::retain_error(env, v),
        Err(e) => e,
    }
}

/// Converts a core error into the JavaScript value the caller receives.
pub(crate) fn core_error(env: napi_env, error: CoreError) -> Result<napi_value> {
    match error {
        CoreError::Credential(credential) => {
            let inner: &(dyn std::error::Error + Send + Sync) = credential.0.as_ref();
            if let Some(thrown) = inner.downcast_ref::<napi::Error>() {
                // The very value the credential rejected with (or threw).
                return js::error_value(env, thrown.try_clone()?);
            }
            if let Some(issue) = inner.downcast_ref::<NotCallable>() {
                return builtin_error(env, c"TypeError", &issue.to_string());
            }
            hub_error(env, "Error", &inner.to_string())
        }
        CoreError::Service {
            class,
            message,
            response,
            ..
        } => {
            let err = hub_error(env, class.name(), &message)?;
            let resp = response::response_object(env, &response)?;
            js::set(env, err, c"response", resp)?;
            let body = js::string_from_bytes(env, &response.body)?;
            js::set(env, err, c"responseBody", body)?;
            Ok(err)
        }
        other => {
            let class = other.class();
            hub_error(env, class.name(), &other.to_string())
        }
    }
}

/// [`core_error`] for a settlement: a failure to build the error becomes an error value too.
pub(crate) fn core_error_value(env: napi_env, error: CoreError) -> napi_value {
    core_error(env, error).unwrap_or_else(|e| error_value(env, e))
}

/// Converts an internal `napi::Error` raised while building an outcome into an error value.
pub(crate) fn error_value(env: napi_env, error: napi::Error) -> napi_value {
    js::error_value(env, error).unwrap_or_else(|_| internal(env, "conversion failed"))
}

/// A panic or an internal failure, reported as a plain `Error` rather than aborting.
pub(crate) fn internal(env: napi_env, what: &str) -> napi_value {
    hub_error(env, "Error", &format!("iothub-jobs internal error: {what}"))
        .unwrap_or_else(|_| js::undefined(env))
}

/// The rejection of an aborted modern-API call: `new DOMException('This operation was aborted',
/// 'AbortError')` (what `fetch` and `AbortSignal.abort()` use), with the signal's `reason` as
/// `cause` when the caller gave one.
pub(crate) fn abort_error(env: napi_env, signal: napi_value) -> Result<napi_value> {
    let global = js::global(env)?;
    let ctor = js::get(env, global, c"DOMException")?;
    let message = js::string(env, "This operation was aborted")?;
    let err = if js::is_function(env, ctor) {
        js::construct(env, ctor, &[message, js::string(env, "AbortError")?])?
    } else {
        hub_error(env, "AbortError", "This operation was aborted")?
    };
    let reason = js::get(env, signal, c"reason")?;
    if js::kind(env, reason) != js::Kind::Undefined {
        js::set(env, err, c"cause", reason)?;
    }
    Ok(err)
}

/// Converts the end of a failed `waitForJob` into the JavaScript value the caller receives:
/// `errors.TimeoutError` with the last job read as `job`, `errors.JobNotFoundError`, the failed
/// read's error, or exactly what `onProgress` threw.
pub(crate) fn wait_error(
    env: napi_env,
    error: iothub_jobs_core::WaitError,
    job_id: &str,
) -> Result<napi_value> {
    use iothub_jobs_core::WaitError;
    match error {
        WaitError::Timeout { limit, last } => {
            let status = last
                .as_deref()
                .and_then(iothub_jobs_core::monitor::job_status);
            let mut message = format!(
                "Job '{job_id}' did not finish within {} ms",
                limit.as_millis()
            );
            if let Some(status) = status {
                message.push_str(&format!(" (last status: {status})"));
            }
            let err = hub_error(env, "TimeoutError", &message)?;
            let job = match last.as_deref() {
                Some(r) if r.is_json() => js::json_parse(env, &r.body)?,
                _ => js::undefined(env),
            };
            js::set(env, err, c"job", job)?;
            Ok(err)
        }
        WaitError::NotFound { message } => hub_error(env, "JobNotFoundError", &message),
        WaitError::Failed(e) => core_error(env, e),
        WaitError::Progress(e) => {
            if let Some(thrown) = e.downcast_ref::<napi::Error>() {
                return js::error_value(env, thrown.try_clone()?);
            }
            hub_error(env, "Error", &e.to_string())
        }
    }
}
