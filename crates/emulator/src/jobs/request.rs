//! Validation of `PUT /jobs/v2/{id}` bodies (JobRequest) into a [`NewJob`].

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::devices::{MethodCall, MethodCallRecord};
use crate::errors::{ApiError, ErrorCode};

/// The longest `queryCondition` accepted. The service refuses queries above about 8,200
/// characters with 412 `PreconditionFailed`; this is the emulator's rounding of that.
pub const MAX_QUERY_CONDITION_BYTES: usize = 8192;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodSpec {
    pub method_name: String,
    pub payload: Value,
    pub response_timeout_s: u64,
    pub connect_timeout_s: u64,
    /// Serialized payload size, computed once per job.
    pub payload_bytes: usize,
}

impl MethodSpec {
    /// The call of this method, with what the device remembers of it.
    pub fn call<'a>(&'a self, record: &'a MethodCallRecord) -> MethodCall<'a> {
        MethodCall {
            name: &self.method_name,
            payload: &self.payload,
            payload_bytes: self.payload_bytes,
            connect_timeout_s: self.connect_timeout_s,
            response_timeout_s: self.response_timeout_s,
            record,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobKind {
    Method(MethodSpec),
    /// The `updateTwin` patch as given.
    Twin(Value),
}

impl JobKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            JobKind::Method(_) => "scheduleDeviceMethod",
            JobKind::Twin(_) => "scheduleUpdateTwin",
        }
    }
}

/// Serialized as is into the store's `jobs.spec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    pub id: String,
    pub kind: JobKind,
    pub query_condition: String,
    pub start_ms: i64,
    pub max_execution_s: Option<u64>,
}

fn invalid(text: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ArgumentInvalid, text)
}

/// Job ids: 1 to 64 ASCII letters, digits and `-`.
pub fn validate_job_id(id: &str) -> Result<(), ApiError> {
    if !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(())
    } else {
        Err(invalid(format!(
            "JobId '{id}' is invalid: a job id has 1 to 64 characters, ASCII letters, digits or '-'"
        )))
    }
}

/// A direct-method call (`cloudToDeviceMethod` of a job, or the body of
/// `POST /twins/{id}/methods`): name, payload and both timeouts, validated.
pub fn parse_method(m: &serde_json::Map<String, Value>) -> Result<MethodSpec, ApiError> {
    let method_name = match m.get("methodName") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(invalid("cloudToDeviceMethod.methodName is required")),
    };
    let response_timeout_s = optional_u64(m, "responseTimeoutInSeconds")?.unwrap_or(30);
    if !(5..=300).contains(&response_timeout_s) {
        return Err(invalid(
            "responseTimeoutInSeconds must be between 5 and 300",
        ));
    }
    let connect_timeout_s = optional_u64(m, "connectTimeoutInSeconds")?.unwrap_or(0);
    if connect_timeout_s > 300 {
        return Err(invalid("connectTimeoutInSeconds must be between 0 and 300"));
    }
    let payload = m.get("payload").cloned().unwrap_or(Value::Null);
    let payload_bytes = payload.to_string().len();
    Ok(MethodSpec {
        method_name,
        payload,
        response_timeout_s,
        connect_timeout_s,
        payload_bytes,
    })
}

fn optional_u64(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| invalid(format!("{key} must be a non-negative integer"))),
    }
}

/// Turns a JobRequest body into a job, or the 400 the service would answer.
pub fn parse_job_request(path_id: &str, body: &Value, now_ms: i64) -> Result<NewJob, ApiError> {
    validate_job_id(path_id)?;
    let obj = body.as_object().ok_or_else(|| {
        ApiError::new(
            ErrorCode::IotHubFormatError,
            "The job request must be a JSON object",
        )
    })?;
    match obj.get("jobId") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == path_id => {}
        Some(Value::Number(n)) if n.to_string() == path_id => {}
        Some(other) => {
            return Err(invalid(format!(
                "jobId {other} in the body does not match '{path_id}' in the path"
            )))
        }
    }
    let query_condition = match obj.get("queryCondition") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(invalid(
                "queryCondition is required: a WHERE clause, or * for every device",
            ))
        }
    };
    if query_condition.len() > MAX_QUERY_CONDITION_BYTES {
        return Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            format!(
                "The query condition has {} characters, more than the limit of {MAX_QUERY_CONDITION_BYTES}",
                query_condition.len()
            ),
        ));
    }
    let start_ms = match obj.get("startTime") {
        None | Some(Value::Null) => now_ms,
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|_| invalid(format!("startTime '{s}' is not an ISO 8601 date-time")))?
            .timestamp_millis(),
        Some(_) => return Err(invalid("startTime must be an ISO 8601 string")),
    };
    let max_execution_s = optional_u64(obj, "maxExecutionTimeInSeconds")?;
    if max_execution_s == Some(0) {
        return Err(invalid("maxExecutionTimeInSeconds must be positive"));
    }
    let kind =
        match obj.get("type").and_then(Value::as_str) {
            Some("scheduleDeviceMethod") => {
                let m = obj
                    .get("cloudToDeviceMethod")
                    .and_then(Value::as_object)
                    .ok_or_else(|| {
                        invalid("cloudToDeviceMethod is required for a scheduleDeviceMethod job")
                    })?;
                JobKind::Method(parse_method(m)?)
            }
            Some("scheduleUpdateTwin") => match obj.get("updateTwin") {
                Some(t @ Value::Object(_)) => JobKind::Twin(t.clone()),
                _ => return Err(invalid(
                    "updateTwin is required for a scheduleUpdateTwin job and must be a twin object",
                )),
            },
            Some(other) => {
                return Err(invalid(format!(
            "Job type '{other}' is not supported: use scheduleDeviceMethod or scheduleUpdateTwin"
        )))
            }
            None => {
                return Err(invalid(
                    "type is required (scheduleDeviceMethod or scheduleUpdateTwin)",
                ))
            }
        };
    // A twin-update job is a forced update: the service refuses the job, when it is created,
    // unless the patch carries `"etag": "*"`.
    if let JobKind::Twin(patch) = &kind {
        if patch.get("etag").and_then(Value::as_str) != Some("*") {
            return Err(ApiError::new(
                ErrorCode::PreconditionFailed,
                "The etag in the request does not match the etag of the existing resource, as per RFC7232: a scheduleUpdateTwin job takes only etag '*'",
            ));
        }
    }
    Ok(NewJob {
        id: path_id.to_string(),
        kind,
        query_condition,
        start_ms,
        max_execution_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn method_body() -> Value {
        json!({
            "jobId": "j1", "type": "scheduleDeviceMethod",
            "cloudToDeviceMethod": {"methodName": "reboot", "payload": null, "responseTimeoutInSeconds": 30},
            "startTime": "2030-01-01T00:00:00.000Z", "maxExecutionTimeInSeconds": 3600,
            "queryCondition": "tags.group = 'even'"
        })
    }

    #[test]
    fn accepts_what_azure_iothub_sends() {
        let j = parse_job_request("j1", &method_body(), 5).unwrap();
        assert_eq!(j.start_ms, 1_893_456_000_000);
        assert_eq!(j.max_execution_s, Some(3600));
        let JobKind::Method(m) = &j.kind else {
            panic!()
        };
        assert_eq!(
            (
                m.method_name.as_str(),
                m.response_timeout_s,
                m.connect_timeout_s
            ),
            ("reboot", 30, 0)
        );
        // Promise form of the reference: startTime null, no maxExecutionTimeInSeconds.
        let mut b = method_body();
        b["startTime"] = Value::Null;
        b.as_object_mut()
            .unwrap()
            .remove("maxExecutionTimeInSeconds");
        let j = parse_job_request("j1", &b, 77).unwrap();
        assert_eq!((j.start_ms, j.max_execution_s), (77, None));
        // Numeric job ids (the reference sends the argument as given).
        let mut b = method_body();
        b["jobId"] = json!(42);
        assert!(parse_job_request("42", &b, 0).is_ok());
        let twin = json!({"jobId": "t", "type": "scheduleUpdateTwin", "updateTwin": {"tags": {"a": 1}, "etag": "*"}, "queryCondition": "*"});
        assert!(matches!(
            parse_job_request("t", &twin, 0).unwrap().kind,
            JobKind::Twin(_)
        ));
    }

    #[test]
    fn rejects_invalid_requests() {
        let cases: Vec<(&str, Value)> = vec![
            ("j1", json!([])),
            ("other", method_body()),
            (
                "j1",
                json!({"type": "scheduleDeviceMethod", "queryCondition": "*"}),
            ),
            ("j1", json!({"type": "export", "queryCondition": "*"})),
            (
                "j1",
                json!({"type": "scheduleUpdateTwin", "queryCondition": "*"}),
            ),
            (
                "j1",
                json!({"type": "scheduleUpdateTwin", "updateTwin": {"tags": {}}}),
            ),
            (
                "j1",
                json!({"type": "scheduleUpdateTwin", "updateTwin": {}, "queryCondition": "*", "startTime": "tomorrow"}),
            ),
            (
                "j1",
                json!({"type": "scheduleDeviceMethod", "queryCondition": "*", "cloudToDeviceMethod": {"methodName": "m", "responseTimeoutInSeconds": 1}}),
            ),
            (
                "j1",
                json!({"type": "scheduleDeviceMethod", "queryCondition": "*", "cloudToDeviceMethod": {"payload": 1}}),
            ),
            (
                "j1",
                json!({"type": "scheduleUpdateTwin", "updateTwin": {}, "queryCondition": "*", "maxExecutionTimeInSeconds": -1}),
            ),
        ];
        for (id, body) in cases {
            let err = parse_job_request(id, &body, 0).unwrap_err();
            assert_eq!(err.status(), hyper::StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn twin_jobs_need_etag_star_and_conditions_have_a_limit() {
        let twin = |patch: Value, condition: String| json!({"type": "scheduleUpdateTwin", "updateTwin": patch, "queryCondition": condition});
        for patch in [
            json!({"tags": {"a": 1}}),
            json!({"tags": {}, "etag": "AAAA"}),
        ] {
            let err = parse_job_request("t", &twin(patch, "*".into()), 0).unwrap_err();
            assert_eq!(err.code, ErrorCode::PreconditionFailed);
            assert_eq!(err.status(), hyper::StatusCode::PRECONDITION_FAILED);
        }
        let at_limit = format!(
            "deviceId = '{}'",
            "x".repeat(MAX_QUERY_CONDITION_BYTES - 13)
        );
        assert_eq!(at_limit.len(), MAX_QUERY_CONDITION_BYTES);
        assert!(parse_job_request("t", &twin(json!({"etag": "*"}), at_limit.clone()), 0).is_ok());
        let over = format!("{at_limit} ");
        let err = parse_job_request("t", &twin(json!({"etag": "*"}), over), 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::PreconditionFailed);
    }

    #[test]
    fn job_id_rules() {
        assert!(validate_job_id("abc-DEF-123").is_ok());
        assert!(validate_job_id(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "a_b", "a.b", "é", &"a".repeat(65)] {
            assert_eq!(
                validate_job_id(bad).unwrap_err().code,
                ErrorCode::ArgumentInvalid,
                "{bad}"
            );
        }
    }
}
