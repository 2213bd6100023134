//! The options of a fleet call, validated: [`FleetRequest`] from the JSON the binding sends.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{DEFAULT_MAX_CONDITION_BYTES, DEFAULT_POLL_INTERVAL, MAX_JOB_ID_LEN};
use crate::error::Error;
use crate::request::{json_value, CloudToDeviceMethod, JobKind, RawValue};

const DEFAULT_MAX_EXECUTION_SECONDS: u64 = 3600;

/// Which devices a fleet job targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Devices(Vec<String>),
    /// A WHERE clause (`*` for every device).
    Query(String),
}

/// A validated fleet call.
#[derive(Debug, Clone)]
pub struct FleetRequest {
    /// The job to run on every device.
    pub kind: JobKind,
    pub target: Target,
    /// Base id; hub jobs are `<base>-<wave>-<part>` unless there is just one.
    pub job_id: String,
    /// ISO-8601; `None` means now.
    pub start_time: Option<String>,
    pub max_execution_time_in_seconds: u64,
    /// Devices per wave; the last size repeats. Empty: one wave with every device.
    pub waves: Vec<usize>,
    /// Stop after a wave whose failed / attempted ratio exceeds this.
    pub failure_threshold: Option<f64>,
    pub max_concurrent_jobs: usize,
    pub wait_for_job_slot: bool,
    pub poll_interval: Duration,
    pub timeout: Option<Duration>,
    pub max_condition_bytes: usize,
}

fn invalid(method: &str, message: impl std::fmt::Display) -> Error {
    Error::argument(format!("{method}: {message}"))
}

impl FleetRequest {
    /// Parses `{"method": {...}} | {"patch": {...}}` plus `"options": {...}` as the binding
    /// serializes them (`method` names the calling function in messages). A twin patch without
    /// `etag` gets `"etag": "*"`: the service takes only a forced update in a job.
    pub fn from_json(method: &str, text: &str) -> Result<FleetRequest, Error> {
        let spec: Value = serde_json::from_str(text).map_err(|e| invalid(method, e))?;
        let kind = match (spec.get("method"), spec.get("patch")) {
            (Some(m), None) => JobKind::DeviceMethod(method_params(method, m)?),
            (None, Some(Value::Object(patch))) => {
                let mut patch = patch.clone();
                if !patch.contains_key("etag") {
                    patch.insert("etag".into(), json!("*"));
                }
                JobKind::TwinUpdate {
                    patch_json: raw("patch", &Value::Object(patch))?,
                }
            }
            (None, Some(_)) => return Err(invalid(method, "patch must be an object")),
            _ => return Err(invalid(method, "the job description is missing")),
        };
        let empty = Map::new();
        let o = match spec.get("options") {
            Some(Value::Object(o)) => o,
            None | Some(Value::Null) => &empty,
            Some(_) => return Err(invalid(method, "options must be an object")),
        };
        let opt = |key: &str| o.get(key).filter(|v| !v.is_null());
        let target = match (opt("deviceIds"), opt("queryCondition")) {
            (Some(Value::Array(ids)), None) => {
                let mut seen = HashSet::new();
                let mut list = Vec::with_capacity(ids.len());
                for id in ids {
                    match id.as_str() {
                        Some(s) if !s.is_empty() => {
                            if seen.insert(s) {
                                list.push(s.to_string());
                            }
                        }
                        _ => {
                            return Err(invalid(
                                method,
                                "options.deviceIds must hold non-empty strings only",
                            ))
                        }
                    }
                }
                if list.is_empty() {
                    return Err(invalid(method, "options.deviceIds is empty"));
                }
                Target::Devices(list)
            }
            (Some(_), None) => {
                return Err(invalid(method, "options.deviceIds must be an array"));
            }
            (None, Some(Value::String(q))) if !q.trim().is_empty() => Target::Query(q.clone()),
            (None, Some(_)) => {
                return Err(invalid(
                    method,
                    "options.queryCondition must be a non-empty string",
                ))
            }
            _ => {
                return Err(invalid(
                    method,
                    "exactly one of options.deviceIds and options.queryCondition is required",
                ))
            }
        };
        let job_id = match opt("jobId") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(invalid(method, "options.jobId must be a string")),
        };
        check_job_id(method, &job_id)?;
        let start_time = match opt("startTime") {
            None => None,
            Some(Value::String(s)) if crate::time::parse_iso8601_millis(s).is_some() => {
                Some(s.clone())
            }
            Some(_) => {
                return Err(invalid(
                    method,
                    "options.startTime must be a Date or an ISO 8601 string",
                ))
            }
        };
        let number = |key: &str| -> Result<Option<f64>, Error> {
            match opt(key) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .map(Some)
                    .ok_or_else(|| {
                        invalid(
                            method,
                            format!("options.{key} must be a non-negative number"),
                        )
                    }),
            }
        };
        let positive_integer = |key: &str| -> Result<Option<u64>, Error> {
            match number(key)? {
                None => Ok(None),
                Some(n) if n >= 1.0 && n.fract() == 0.0 => Ok(Some(n as u64)),
                Some(_) => Err(invalid(
                    method,
                    format!("options.{key} must be a positive integer"),
                )),
            }
        };
        let waves = match opt("waves") {
            None => Vec::new(),
            Some(Value::Array(sizes)) if !sizes.is_empty() => sizes
                .iter()
                .map(|s| {
                    s.as_u64()
                        .filter(|n| *n >= 1)
                        .map(|n| n as usize)
                        .ok_or_else(|| invalid(method, "options.waves must hold positive integers"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(
                    method,
                    "options.waves must be a non-empty array of positive integers",
                ))
            }
        };
        let failure_threshold = number("failureThreshold")?;
        if failure_threshold.is_some_and(|t| t > 1.0) {
            return Err(invalid(
                method,
                "options.failureThreshold must be between 0 and 1",
            ));
        }
        let wait_for_job_slot = match opt("waitForJobSlot") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid(method, "options.waitForJobSlot must be a boolean")),
        };
        let millis = |key: &str| -> Result<Option<Duration>, Error> {
            Ok(number(key)?.map(|ms| Duration::from_secs_f64(ms / 1000.0)))
        };
        let max_condition_bytes = positive_integer("maxConditionLength")?
            .map_or(DEFAULT_MAX_CONDITION_BYTES, |n| n as usize);
        Ok(FleetRequest {
            kind,
            target,
            job_id,
            start_time,
            max_execution_time_in_seconds: positive_integer("maxExecutionTimeInSeconds")?
                .unwrap_or(DEFAULT_MAX_EXECUTION_SECONDS),
            waves,
            failure_threshold,
            max_concurrent_jobs: positive_integer("maxConcurrentJobs")?.unwrap_or(1) as usize,
            wait_for_job_slot,
            poll_interval: millis("pollIntervalMs")?
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_POLL_INTERVAL),
            // 0 (or absent): as long as it takes.
            timeout: millis("timeoutMs")?.filter(|d| !d.is_zero()),
            max_condition_bytes,
        })
    }
}

fn method_params(method: &str, m: &Value) -> Result<CloudToDeviceMethod, Error> {
    let Value::Object(m) = m else {
        return Err(invalid(method, "methodParams must be an object"));
    };
    let method_name_json = match m.get("methodName") {
        Some(name @ Value::String(s)) if !s.is_empty() => raw("methodParams.methodName", name)?,
        _ => {
            return Err(invalid(
                method,
                "methodParams.methodName must be a non-empty string",
            ))
        }
    };
    let present = |key: &str| match m.get(key).filter(|v| !v.is_null()) {
        Some(v) => raw(key, v).map(Some),
        None => Ok(None),
    };
    Ok(CloudToDeviceMethod {
        method_name_json,
        payload_json: present("payload")?,
        response_timeout_json: present("responseTimeoutInSeconds")?,
        connect_timeout_json: present("connectTimeoutInSeconds")?,
    })
}

/// `value` as a [`JobRequest`](crate::request::JobRequest) field.
pub(super) fn raw(what: &str, value: &Value) -> Result<Box<RawValue>, Error> {
    json_value(what, value.to_string())
}

fn check_job_id(method: &str, id: &str) -> Result<(), Error> {
    if id.is_empty()
        || id.len() > MAX_JOB_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(invalid(
            method,
            format!(
                "options.jobId {id:?} must be 1 to {MAX_JOB_ID_LEN} ASCII letters, digits or '-'"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_defaults_the_etag_and_validates() {
        let r = FleetRequest::from_json(
            "runTwinUpdateJob",
            r#"{"patch":{"tags":{"a":1}},"options":{"deviceIds":["a","b","a"],"jobId":"j"}}"#,
        )
        .unwrap();
        let JobKind::TwinUpdate { patch_json } = &r.kind else {
            panic!("a twin job: {:?}", r.kind)
        };
        assert_eq!(patch_json.get(), r#"{"tags":{"a":1},"etag":"*"}"#);
        assert_eq!(r.target, Target::Devices(vec!["a".into(), "b".into()]));
        assert_eq!(
            (r.max_concurrent_jobs, r.wait_for_job_slot, r.poll_interval),
            (1, true, DEFAULT_POLL_INTERVAL)
        );
        let kept = FleetRequest::from_json(
            "runTwinUpdateJob",
            r#"{"patch":{"etag":"AAAA","tags":{}},"options":{"queryCondition":"*","jobId":"j"}}"#,
        )
        .unwrap();
        assert!(
            matches!(kept.kind, JobKind::TwinUpdate { patch_json } if patch_json.get().contains("AAAA"))
        );
        for bad in [
            r#"{"method":{"methodName":""},"options":{"deviceIds":["a"],"jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":[],"jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":[1],"jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"queryCondition":"*","jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"jobId":"a b"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"jobId":"j","waves":[0]}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"jobId":"j","failureThreshold":2}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"jobId":"j","maxConcurrentJobs":0}}"#,
            r#"{"patch":[],"options":{"deviceIds":["a"],"jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"jobId":"j","startTime":"tomorrow"}}"#,
        ] {
            let err = FleetRequest::from_json("runDeviceMethodJob", bad).unwrap_err();
            assert_eq!(err.class(), crate::ErrorClass::ArgumentError, "{bad}");
            assert!(err.to_string().starts_with("runDeviceMethodJob: "), "{err}");
        }
    }
}
