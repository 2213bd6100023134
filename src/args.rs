//! Argument handling shared by the factories and methods: the factories' options object and
//! the reference's small validation rules.

use std::ffi::CStr;
use std::time::Duration;

use iothub_jobs_core::ClientOptions;
use napi::sys::{napi_env, napi_value};
use napi::Result;

use crate::errors;
use crate::js::{self, Kind};

/// Parses the optional options object accepted as an extra last argument of the factories:
/// `{ ca?: string, retry?: false | { maxRetries?, initialDelayMs?, maxDelayMs? },
///    timeoutMs?: number, userAgentPrefix?: string, apiVersion?: string, proxy?: string }`.
pub(crate) fn client_options(env: napi_env, options: napi_value) -> Result<ClientOptions> {
    let mut out = ClientOptions::default();
    match js::kind(env, options) {
        Kind::Undefined | Kind::Null => return Ok(out),
        Kind::Object => {}
        _ => return Err(errors::type_error(env, "options must be an object")),
    }
    if let Some(ca) = optional_string(env, options, c"ca", "options.ca")? {
        out.ca_pem = Some(ca);
    }
    let retry = js::get(env, options, c"retry")?;
    match js::kind(env, retry) {
        Kind::Undefined | Kind::Null => {}
        Kind::Boolean => {
            if !js::truthy(env, retry) {
                out.retry = None;
            }
        }
        Kind::Object => {
            let mut policy = out.retry.clone().unwrap_or_default();
            if let Some(n) = optional_number(env, retry, c"maxRetries", "options.retry.maxRetries")?
            {
                policy.max_retries = n.min(f64::from(u32::MAX)) as u32;
            }
            if let Some(ms) = optional_number(
                env,
                retry,
                c"initialDelayMs",
                "options.retry.initialDelayMs",
            )? {
                policy.initial_delay = millis(ms);
            }
            if let Some(ms) =
                optional_number(env, retry, c"maxDelayMs", "options.retry.maxDelayMs")?
            {
                policy.max_delay = millis(ms);
            }
            out.retry = Some(policy);
        }
        _ => {
            return Err(errors::type_error(
                env,
                "options.retry must be false or an object",
            ))
        }
    }
    if let Some(ms) = optional_number(env, options, c"timeoutMs", "options.timeoutMs")? {
        // 0 lifts the bound entirely.
        out.call_timeout = (ms > 0.0).then(|| millis(ms));
    }
    if let Some(prefix) =
        optional_string(env, options, c"userAgentPrefix", "options.userAgentPrefix")?
    {
        if !prefix.is_empty() {
            out.user_agent = format!("{prefix} {}", out.user_agent);
        }
    }
    if let Some(version) = optional_string(env, options, c"apiVersion", "options.apiVersion")? {
        if !version.is_empty() {
            out.api_version = version;
        }
    }
    if let Some(proxy) = optional_string(env, options, c"proxy", "options.proxy")? {
        out.proxy = Some(proxy);
    }
    Ok(out)
}

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

pub(crate) fn optional_string(
    env: napi_env,
    obj: napi_value,
    key: &CStr,
    name: &str,
) -> Result<Option<String>> {
    let v = js::get(env, obj, key)?;
    match js::kind(env, v) {
        Kind::Undefined | Kind::Null => Ok(None),
        Kind::String => Ok(Some(js::read_string(env, v)?)),
        _ => Err(errors::type_error(env, &format!("{name} must be a string"))),
    }
}

pub(crate) fn optional_number(
    env: napi_env,
    obj: napi_value,
    key: &CStr,
    name: &str,
) -> Result<Option<f64>> {
    let v = js::get(env, obj, key)?;
    match js::kind(env, v) {
        Kind::Undefined | Kind::Null => Ok(None),
        Kind::Number => {
            let n = js::double(env, v)?;
            if n.is_nan() || n < 0.0 {
                return Err(errors::type_error(
                    env,
                    &format!("{name} must be a non-negative number"),
                ));
            }
            Ok(Some(n))
        }
        _ => Err(errors::type_error(env, &format!("{name} must be a number"))),
    }
}

/// The reference's job id check: `undefined`, `null` and `''` are refused.
pub(crate) fn check_job_id(env: napi_env, job_id: napi_value) -> Result<()> {
    if js::is_missing_id(env, job_id) {
        return Err(errors::cannot_be(env, "jobId", job_id));
    }
    Ok(())
}
