//! The IoT Hub REST surface: jobs, queries, twins and device identities.
//! Handlers take an already-authenticated request and return a [`Reply`].

use std::borrow::Cow;

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::cli::UnknownJob;
use crate::configurations;
use crate::errors::{ApiError, ErrorCode};
use crate::hub::Hub;
use crate::jobs::{job_not_found, method_record, parse_method, validate_job_id};
use crate::paging;
use crate::query::{parse_select, Source};

/// A successful answer: status, JSON body (or none) and extra headers.
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Vec<u8>>,
    /// Names are lower case; most are fixed, some are made (`iothub-app-{property}`).
    pub headers: Vec<(Cow<'static, str>, String)>,
}

impl Reply {
    pub fn json(value: &Value) -> Self {
        Self {
            status: StatusCode::OK,
            body: Some(serde_json::to_vec(value).unwrap_or_default()),
            headers: Vec::new(),
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: None,
            headers: Vec::new(),
        }
    }
}

pub struct ApiRequest<'a> {
    pub method: &'a Method,
    /// Percent-decoded path segments, without the empty leading one.
    pub segments: &'a [String],
    pub query: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

impl ApiRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::new(
                ErrorCode::IotHubFormatError,
                "The request body is empty",
            ));
        }
        serde_json::from_slice(self.body).map_err(|e| {
            ApiError::new(
                ErrorCode::IotHubFormatError,
                format!("The request body is not valid JSON: {e}"),
            )
        })
    }
}

fn no_such_resource() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "The requested resource does not exist on this hub",
    )
}

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("The method {method} is not supported on this resource"),
    )
}

/// Routes one request. Only the path decides the resource; the method picks the operation.
pub fn route(hub: &Hub, req: &ApiRequest<'_>) -> Result<Reply, ApiError> {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match (req.method, seg.as_slice()) {
        (&Method::GET, ["jobs", "v2", "query"]) => query_jobs(hub, req),
        (_, ["jobs", "v2", "query"]) => Err(method_not_allowed(req.method)),
        (&Method::PUT, ["jobs", "v2", id]) => create_job(hub, req, id),
        (&Method::GET, ["jobs", "v2", id]) => get_job(hub, id),
        (&Method::POST, ["jobs", "v2", id, "cancel"]) => {
            hub.cancel_job(id).map(|j| Reply::json(&j))
        }
        (_, ["jobs", "v2", _]) | (_, ["jobs", "v2", _, "cancel"]) => {
            Err(method_not_allowed(req.method))
        }
        // Import/export jobs: `/jobs/create`, `/jobs`, `/jobs/{id}`.
        (&Method::POST, ["jobs", "create"]) => hub
            .create_import_export_job(&req.json_body()?)
            .map(|j| Reply::json(&j)),
        (&Method::GET, ["jobs"] | ["jobs", ""]) => {
            Ok(Reply::json(&Value::Array(hub.import_export_jobs())))
        }
        (&Method::GET, ["jobs", id]) if *id != "create" => {
            hub.import_export_job(id).map(|j| Reply::json(&j))
        }
        (&Method::DELETE, ["jobs", id]) if *id != "create" => {
            hub.cancel_import_export_job(id).map(|j| Reply::json(&j))
        }
        (_, ["jobs"] | ["jobs", _]) => Err(method_not_allowed(req.method)),
        (&Method::POST, ["devices", "query"]) => query_devices(hub, req),
        (_, ["devices", "query"]) => Err(method_not_allowed(req.method)),
        (&Method::GET, ["twins", id]) => hub.twin(id).map(|t| Reply::json(&t)),
        (&Method::PATCH, ["twins", id]) | (&Method::PUT, ["twins", id]) => {
            let body = req.json_body()?;
            let replace = req.method == Method::PUT;
            let twin = hub.update_twin(id, &body, req.header("if-match"), replace)?;
            Ok(Reply::json(&twin))
        }
        (_, ["twins", _]) => Err(method_not_allowed(req.method)),
        // `/devices` and `/devices/` (azure-iothub's `list` sends the latter).
        (&Method::GET, ["devices"] | ["devices", ""]) => {
            let top = list_top(req.query_param("top"))?;
            Ok(Reply::json(&Value::Array(hub.list_identities(top))))
        }
        (&Method::POST, ["devices"] | ["devices", ""]) => {
            let (ok, result) = hub.bulk(&req.json_body()?)?;
            let mut reply = Reply::json(&result);
            if !ok {
                reply.status = StatusCode::BAD_REQUEST;
            }
            Ok(reply)
        }
        (_, ["devices"] | ["devices", ""]) => Err(method_not_allowed(req.method)),
        (&Method::GET, ["devices", id]) => hub.identity(id).map(|d| Reply::json(&d)),
        (&Method::PUT, ["devices", id]) => {
            let body = req.json_body()?;
            let device = hub.put_identity(id, &body, req.header("if-match"))?;
            Ok(Reply::json(&device))
        }
        (&Method::DELETE, ["devices", id]) => {
            hub.delete_device(id, req.header("if-match"))?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (_, ["devices", _]) => Err(method_not_allowed(req.method)),
        // Purge the device's cloud-to-device queue.
        (&Method::DELETE, ["devices", id, "commands"]) => {
            let purged = hub.purge_cloud_to_device(id)?;
            Ok(Reply::json(
                &serde_json::json!({ "totalMessagesPurged": purged, "deviceId": id }),
            ))
        }
        (_, ["devices", _, "modules", ..] | ["twins", _, "modules", ..]) => {
            route_modules(hub, req, &seg)
        }
        (_, ["configurations", ..]) => route_configurations(hub, req, &seg),
        _ => Err(no_such_resource()),
    }
}

/// Module identities (`/devices/{id}/modules[/{mid}]`) and module twins
/// (`/twins/{id}/modules/{mid}`): the device routes, one level down.
fn route_modules(hub: &Hub, req: &ApiRequest<'_>, seg: &[&str]) -> Result<Reply, ApiError> {
    match (req.method, seg) {
        (&Method::GET, ["devices", id, "modules"]) => {
            hub.modules_of(id).map(|m| Reply::json(&Value::Array(m)))
        }
        (&Method::GET, ["devices", id, "modules", mid]) => {
            hub.module_identity(id, mid).map(|m| Reply::json(&m))
        }
        (&Method::PUT, ["devices", id, "modules", mid]) => {
            let body = req.json_body()?;
            let module = hub.put_module(id, mid, &body, req.header("if-match"))?;
            Ok(Reply::json(&module))
        }
        (&Method::DELETE, ["devices", id, "modules", mid]) => {
            hub.delete_module(id, mid, req.header("if-match"))?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (_, ["devices", _, "modules"] | ["devices", _, "modules", _]) => {
            Err(method_not_allowed(req.method))
        }
        (&Method::GET, ["twins", id, "modules", mid]) => {
            hub.module_twin(id, mid).map(|t| Reply::json(&t))
        }
        (&Method::PATCH | &Method::PUT, ["twins", id, "modules", mid]) => {
            let body = req.json_body()?;
            let replace = req.method == Method::PUT;
            let etag = req.header("if-match");
            let twin = hub.update_module_twin(id, mid, &body, etag, replace)?;
            Ok(Reply::json(&twin))
        }
        (_, ["twins", _, "modules", _] | ["twins", _, "modules", _, "methods"]) => {
            Err(method_not_allowed(req.method))
        }
        _ => Err(no_such_resource()),
    }
}

/// Automatic device management configurations (`configurations.rs`).
fn route_configurations(hub: &Hub, req: &ApiRequest<'_>, seg: &[&str]) -> Result<Reply, ApiError> {
    match (req.method, seg) {
        (&Method::GET, ["configurations"] | ["configurations", ""]) => {
            let top = list_top(req.query_param("top"))?;
            Ok(Reply::json(&Value::Array(hub.list_configurations(top))))
        }
        (&Method::POST, ["configurations", "testQueries"]) => {
            configurations::test_queries(&req.json_body()?).map(|r| Reply::json(&r))
        }
        (&Method::GET, ["configurations", id]) => hub.configuration(id).map(|c| Reply::json(&c)),
        (&Method::PUT, ["configurations", id]) => {
            let body = req.json_body()?;
            let config = hub.put_configuration(id, &body, req.header("if-match"))?;
            Ok(Reply::json(&config))
        }
        (&Method::DELETE, ["configurations", id]) => {
            hub.delete_configuration(id, req.header("if-match"))?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (_, ["configurations"] | ["configurations", _]) => Err(method_not_allowed(req.method)),
        _ => Err(no_such_resource()),
    }
}

/// `top` of `GET /devices`: "any value outside the range of 1-1000 is considered to be 1000".
fn list_top(top: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = top else { return Ok(1000) };
    let n: i64 = text.trim().parse().map_err(|_| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("top must be a number, not '{text}'"),
        )
    })?;
    Ok(if (1..=1000).contains(&n) {
        n as usize
    } else {
        1000
    })
}

fn create_job(hub: &Hub, req: &ApiRequest<'_>, id: &str) -> Result<Reply, ApiError> {
    let body = req.json_body()?;
    hub.create_job(id, &body).map(|j| Reply::json(&j))
}

fn get_job(hub: &Hub, id: &str) -> Result<Reply, ApiError> {
    if let Some(body) = hub.job(id)? {
        return Ok(Reply {
            status: StatusCode::OK,
            body: Some(body),
            headers: Vec::new(),
        });
    }
    match hub.unknown_job() {
        UnknownJob::NotFound => Err(job_not_found(id)),
        // Some hubs answer 200 with status "unknown" for a job they do not know.
        UnknownJob::StatusUnknown => Ok(Reply::json(&json!({
            "jobId": validate_job_id(id).is_ok().then_some(id),
            "type": "unknown",
            "queryCondition": null,
            "createdTime": null,
            "startTime": null,
            "endTime": null,
            "maxExecutionTimeInSeconds": null,
            "status": "unknown",
            "failureReason": null,
            "statusMessage": null,
            "deviceJobStatistics": {"deviceCount": 0, "failedCount": 0, "succeededCount": 0, "runningCount": 0, "pendingCount": 0},
        }))),
    }
}

/// The page size and resume position a query request asks for.
fn page_request(
    req: &ApiRequest<'_>,
    kind: paging::Kind,
    query_hash: u64,
) -> Result<paging::PageRequest, ApiError> {
    paging::request(
        kind,
        query_hash,
        req.header("x-ms-max-item-count"),
        req.header("x-ms-continuation"),
    )
}

/// Answers one page of items with the paging headers (`next`: the token of the next page).
fn paged(items: Vec<Value>, item_type: &str, next: Option<String>) -> Reply {
    let mut reply = Reply::json(&Value::Array(items));
    reply
        .headers
        .push(("x-ms-item-type".into(), item_type.to_string()));
    if let Some(token) = next {
        reply.headers.push(("x-ms-continuation".into(), token));
    }
    reply
}

fn query_jobs(hub: &Hub, req: &ApiRequest<'_>) -> Result<Reply, ApiError> {
    let (job_type, job_status) = (req.query_param("jobType"), req.query_param("jobStatus"));
    let hash = paging::query_hash(&[job_type.unwrap_or(""), job_status.unwrap_or("")]);
    let kind = paging::Kind::Jobs;
    let page = page_request(req, kind, hash)?;
    let after = page
        .after
        .as_deref()
        .map(paging::parse_job_position)
        .transpose()?;
    let (jobs, next) = hub.jobs_page(job_type, job_status, after, page.size)?;
    let next = next.map(|seq| paging::encode_token(kind, hash, &seq.to_string()));
    Ok(paged(jobs, "jobResponse", next))
}

fn query_devices(hub: &Hub, req: &ApiRequest<'_>) -> Result<Reply, ApiError> {
    hub.throttle_query()?;
    let body = req.json_body()?;
    let text = body.get("query").and_then(Value::as_str).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            "The body must be {\"query\": \"SELECT * FROM devices ...\"}",
        )
    })?;
    let query = parse_select(text).map_err(|e| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("Query parse error: {e}"),
        )
    })?;
    let hash = paging::query_hash(&[text]);
    match query.source {
        Source::Devices => {
            let kind = paging::Kind::Devices;
            let page = page_request(req, kind, hash)?;
            let (twins, next) = hub.twins_page(&query, page.after.as_deref(), page.size);
            let next = next.map(|id| paging::encode_token(kind, hash, &id));
            Ok(paged(twins, "twin", next))
        }
        Source::DevicesModules => {
            let kind = paging::Kind::Modules;
            let page = page_request(req, kind, hash)?;
            let (twins, next) = hub.module_twins_page(&query, page.after.as_deref(), page.size);
            let next = next.map(|key| paging::encode_token(kind, hash, &key));
            Ok(paged(twins, "twin", next))
        }
        Source::DevicesJobs => {
            let kind = paging::Kind::DeviceJobs;
            let page = page_request(req, kind, hash)?;
            let after = page
                .after
                .as_deref()
                .map(paging::parse_row_position)
                .transpose()?;
            let (rows, next) = hub.device_job_rows_page(&query, after, page.size)?;
            let next =
                next.map(|(seq, row)| paging::encode_token(kind, hash, &format!("{seq}:{row}")));
            Ok(paged(rows, "deviceJob", next))
        }
    }
}

/// `POST /twins/{id}/methods` and `POST /twins/{id}/modules/{mid}/methods`: the service's
/// direct-method call (azure-iothub's `Client.invokeDeviceMethod(deviceId[, moduleId], …)`),
/// answered with the device's or module's `{status, payload}`.
pub async fn invoke_method(
    hub: &Hub,
    id: &str,
    module: Option<&str>,
    req: &ApiRequest<'_>,
) -> Result<Reply, ApiError> {
    let body = req.json_body()?;
    let spec = body.as_object().ok_or_else(|| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            "the method call must be a JSON object",
        )
    })?;
    let spec = parse_method(spec)?;
    let record = method_record(&spec);
    let (status, payload) = hub
        .invoke_method(id, module, &spec.call(&record))
        .await
        .map_err(|(code, text)| ApiError::new(code, text))?;
    Ok(Reply::json(
        &json!({"status": status, "payload": &*payload}),
    ))
}
