//! Building requests: method, path, query string, per-call headers and the PUT body.
//!
//! The PUT body is assembled from JSON values the caller already serialised (the binding uses
//! JS `JSON.stringify`), held as [`RawValue`]s: checked to be JSON when they are made
//! ([`json_value`]), then copied byte for byte, so the body is byte-identical to azure-iothub's.
//! Only the strings we own (`startTime`, `queryCondition`) are escaped here, with
//! `JSON.stringify`'s rules. One gap:
//! `JSON.stringify` writes a lone UTF-16 surrogate as `\udXXX`, but a Rust string cannot hold
//! one (the binding's UTF-8 conversion has already replaced it with U+FFFD).

use bytes::Bytes;
use http::Method;
pub use serde_json::value::RawValue;

use crate::encoding::{encode_uri_component, json_string};
use crate::error::Error;

/// A scheduled job to create (`PUT /jobs/v2/{id}`).
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// `String(jobId)`, percent-encoded into the path.
    pub job_id: String,
    /// `jobId` as JSON (a number stays a number).
    pub job_id_json: Box<RawValue>,
    pub kind: JobKind,
    /// ISO-8601; `None` sends `null`.
    pub start_time: Option<String>,
    /// `None` omits the key.
    pub max_execution_time_json: Option<Box<RawValue>>,
    pub query_condition: String,
}

#[derive(Debug, Clone)]
pub enum JobKind {
    DeviceMethod(CloudToDeviceMethod),
    TwinUpdate { patch_json: Box<RawValue> },
}

/// `text` as a JSON value for a [`JobRequest`] field, kept byte for byte (surrounding whitespace
/// aside); `what` names the value in the error when `text` is not exactly one JSON value.
pub fn json_value(what: &str, text: String) -> Result<Box<RawValue>, Error> {
    RawValue::from_string(text)
        .map_err(|e| Error::argument(format!("{what} is not a JSON value: {e}")))
}

impl JobKind {
    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            JobKind::DeviceMethod(_) => "scheduleDeviceMethod",
            JobKind::TwinUpdate { .. } => "scheduleUpdateTwin",
        }
    }
}

/// `cloudToDeviceMethod` as azure-iothub rebuilds it.
#[derive(Debug, Clone)]
pub struct CloudToDeviceMethod {
    pub method_name_json: Box<RawValue>,
    /// `None` sends `null` (the reference turns every falsy payload into `null`).
    pub payload_json: Option<Box<RawValue>>,
    /// `None` sends `30`.
    pub response_timeout_json: Option<Box<RawValue>>,
    /// `None` omits the key (the reference always drops it; we pass it through when given).
    pub connect_timeout_json: Option<Box<RawValue>>,
}

/// One page of `GET /jobs/v2/query`. Each value is sent only when `Some` and non-empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    pub job_type: Option<String>,
    pub job_status: Option<String>,
    /// Sent as header `x-ms-max-item-count`.
    pub page_size: Option<String>,
    /// Sent as header `x-ms-continuation`.
    pub continuation_token: Option<String>,
}

/// A request ready to send, minus `Authorization` and `Request-Id` (added per attempt / call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    pub method: Method,
    /// Path and query, e.g. `/jobs/v2/abc?api-version=2021-04-12`.
    pub path_and_query: String,
    /// Headers specific to this operation, in wire order. `Content-Type` (PUT) comes first,
    /// `Content-Length` (PUT, POST) last; the pipeline inserts the common ones between.
    pub content_type: Option<&'static str>,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// Whether `Content-Length` is sent (PUT and POST, as Node does).
    pub send_content_length: bool,
}

pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

fn job_path(job_id: &str, suffix: &str, api_version: &str) -> String {
    format!(
        "/jobs/v2/{}{}?api-version={}",
        encode_uri_component(job_id),
        suffix,
        encode_uri_component(api_version)
    )
}

/// Rejects values that would split or truncate a header.
pub fn check_header_value(what: &str, value: &str) -> Result<(), Error> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(Error::argument(format!(
            "{what} must not contain CR, LF or NUL characters"
        )));
    }
    Ok(())
}

pub fn get_job(job_id: &str, api_version: &str) -> PreparedRequest {
    PreparedRequest {
        method: Method::GET,
        path_and_query: job_path(job_id, "", api_version),
        content_type: None,
        extra_headers: Vec::new(),
        body: Bytes::new(),
        send_content_length: false,
    }
}

pub fn cancel_job(job_id: &str, api_version: &str) -> PreparedRequest {
    PreparedRequest {
        method: Method::POST,
        path_and_query: job_path(job_id, "/cancel", api_version),
        content_type: None,
        extra_headers: Vec::new(),
        body: Bytes::new(),
        send_content_length: true,
    }
}

/// The PUT body, keys in azure-iothub's order.
pub fn job_body(request: &JobRequest) -> String {
    let mut body = String::with_capacity(256);
    body.push_str("{\"jobId\":");
    body.push_str(request.job_id_json.get());
    body.push_str(",\"type\":\"");
    body.push_str(request.kind.type_name());
    body.push('"');
    match &request.kind {
        JobKind::DeviceMethod(m) => {
            body.push_str(",\"cloudToDeviceMethod\":{\"methodName\":");
            body.push_str(m.method_name_json.get());
            body.push_str(",\"payload\":");
            body.push_str(m.payload_json.as_deref().map_or("null", RawValue::get));
            body.push_str(",\"responseTimeoutInSeconds\":");
            body.push_str(
                m.response_timeout_json
                    .as_deref()
                    .map_or("30", RawValue::get),
            );
            if let Some(connect) = &m.connect_timeout_json {
                body.push_str(",\"connectTimeoutInSeconds\":");
                body.push_str(connect.get());
            }
            body.push('}');
        }
        JobKind::TwinUpdate { patch_json } => {
            body.push_str(",\"updateTwin\":");
            body.push_str(patch_json.get());
        }
    }
    body.push_str(",\"startTime\":");
    match &request.start_time {
        Some(t) => body.push_str(&json_string(t)),
        None => body.push_str("null"),
    }
    if let Some(max) = &request.max_execution_time_json {
        body.push_str(",\"maxExecutionTimeInSeconds\":");
        body.push_str(max.get());
    }
    body.push_str(",\"queryCondition\":");
    body.push_str(&json_string(&request.query_condition));
    body.push('}');
    body
}

pub fn schedule_job(request: &JobRequest, api_version: &str) -> PreparedRequest {
    PreparedRequest {
        method: Method::PUT,
        path_and_query: job_path(&request.job_id, "", api_version),
        content_type: Some(JSON_CONTENT_TYPE),
        extra_headers: Vec::new(),
        body: Bytes::from(job_body(request)),
        send_content_length: true,
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

pub fn query_jobs(query: &JobQuery, api_version: &str) -> Result<PreparedRequest, Error> {
    let mut path = format!(
        "/jobs/v2/query?api-version={}",
        encode_uri_component(api_version)
    );
    if let Some(status) = non_empty(&query.job_status) {
        path.push_str("&jobStatus=");
        path.push_str(&encode_uri_component(status));
    }
    if let Some(job_type) = non_empty(&query.job_type) {
        path.push_str("&jobType=");
        path.push_str(&encode_uri_component(job_type));
    }
    let mut extra_headers = Vec::new();
    if let Some(size) = non_empty(&query.page_size) {
        check_header_value("The page size", size)?;
        extra_headers.push(("x-ms-max-item-count", size.to_string()));
    }
    if let Some(token) = non_empty(&query.continuation_token) {
        check_header_value("The continuation token", token)?;
        extra_headers.push(("x-ms-continuation", token.to_string()));
    }
    Ok(PreparedRequest {
        method: Method::GET,
        path_and_query: path,
        content_type: None,
        extra_headers,
        body: Bytes::new(),
        send_content_length: false,
    })
}
