//! [`JobClient`]: the four job operations, including idempotent scheduling.

use std::sync::Arc;

use serde_json::Value;

use crate::connection_string;
use crate::credential::{
    Auth, SasKeyProvider, StaticSas, TokenCredential, TokenCredentialProvider,
};
use crate::error::Error;
use crate::http::Pipeline;
use crate::options::ClientOptions;
use crate::request::{self, JobKind, JobQuery, JobRequest, RawValue};
use crate::response::Response;
use crate::shared_access_signature;
use crate::time::parse_iso8601_millis;

/// An IoT Hub jobs client. Cheap to clone (one shared connection pool and credential cache).
#[derive(Clone, Debug)]
pub struct JobClient {
    pipeline: Arc<Pipeline>,
}

impl JobClient {
    /// From `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`. Tokens are minted locally.
    pub fn from_connection_string(cs: &str, options: ClientOptions) -> Result<Self, Error> {
        let cs = connection_string::parse(cs)?;
        let auth = Auth::Sas(SasKeyProvider::new(
            &cs.host_name,
            &cs.shared_access_key_name,
            &cs.shared_access_key,
            options.clock.clone(),
        ));
        Self::build(&cs.host_name, auth, &options)
    }

    /// From a ready-made SAS string, sent verbatim (never renewed). The host is its `sr`.
    pub fn from_shared_access_signature(sas: &str, options: ClientOptions) -> Result<Self, Error> {
        let parsed = shared_access_signature::parse(sas)?;
        let host = parsed.sr.clone();
        let auth = Auth::Static(StaticSas::new(parsed, options.clock.clone()));
        Self::build(&host, auth, &options)
    }

    /// From a bearer-token credential (scope `https://iothubs.azure.net/.default`).
    pub fn from_token_credential(
        host_name: &str,
        credential: Arc<dyn TokenCredential>,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        if host_name.is_empty() {
            return Err(Error::argument("config.host cannot be ''"));
        }
        let auth = Auth::Token(TokenCredentialProvider::new(
            credential,
            options.clock.clone(),
        ));
        Self::build(host_name, auth, &options)
    }

    /// A client that sends no `Authorization` header, as azure-iothub does when
    /// `fromTokenCredential` gets a null or undefined credential. The hub answers 401.
    pub fn without_authentication(host_name: &str, options: ClientOptions) -> Result<Self, Error> {
        if host_name.is_empty() {
            return Err(Error::argument("config.host cannot be ''"));
        }
        Self::build(host_name, Auth::Anonymous, &options)
    }

    fn build(host: &str, auth: Auth, options: &ClientOptions) -> Result<Self, Error> {
        Ok(JobClient {
            pipeline: Arc::new(Pipeline::new(host, auth, options)?),
        })
    }

    pub(crate) fn api_version(&self) -> &str {
        &self.pipeline.api_version
    }

    pub(crate) fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// `GET /jobs/v2/{id}`.
    pub async fn get_job(&self, job_id: &str) -> Result<Response, Error> {
        let prepared = request::get_job(job_id, self.api_version());
        self.pipeline.execute(&prepared).await.result
    }

    /// `POST /jobs/v2/{id}/cancel` (retried freely: cancelling twice is harmless).
    pub async fn cancel_job(&self, job_id: &str) -> Result<Response, Error> {
        let prepared = request::cancel_job(job_id, self.api_version());
        self.pipeline.execute(&prepared).await.result
    }

    /// `PUT /jobs/v2/{id}`. When an earlier attempt may have created the job and a retry gets
    /// `409`, the job is read back: if it is the job we asked for, that read is the result;
    /// otherwise the `409` error is.
    pub async fn schedule_job(&self, job: &JobRequest) -> Result<Response, Error> {
        let prepared = request::schedule_job(job, self.api_version());
        let outcome = self.pipeline.execute(&prepared).await;
        match outcome.result {
            Err(conflict @ Error::Service { .. })
                if outcome.ambiguous && conflict.response().is_some_and(|r| r.status == 409) =>
            {
                match self.get_job(&job.job_id).await {
                    Ok(existing) if job_matches(job, &existing) => Ok(existing),
                    _ => Err(conflict),
                }
            }
            other => other,
        }
    }

    /// `GET /jobs/v2/query` (one page).
    pub async fn query_jobs(&self, query: &JobQuery) -> Result<Response, Error> {
        let prepared = request::query_jobs(query, self.api_version())?;
        self.pipeline.execute(&prepared).await.result
    }
}

/// Whether a job read back from the service is the one `job` describes: same type, query
/// condition, method name and payload (or twin patch, as a subset), and start time.
pub fn job_matches(job: &JobRequest, existing: &Response) -> bool {
    if !existing.is_success() {
        return false;
    }
    let Ok(Value::Object(found)) = serde_json::from_slice::<Value>(&existing.body) else {
        return false;
    };
    let field = |a: &str, b: &str| found.get(a).or_else(|| found.get(b));
    let type_ok = field("type", "jobType").and_then(Value::as_str) == Some(job.kind.type_name());
    let condition_ok =
        found.get("queryCondition").and_then(Value::as_str) == Some(job.query_condition.as_str());
    let kind_ok = match &job.kind {
        JobKind::DeviceMethod(m) => {
            let Some(method) = found.get("cloudToDeviceMethod") else {
                return false;
            };
            let name_ok = parse(&m.method_name_json)
                .is_some_and(|n| method.get("methodName").is_some_and(|f| json_equal(&n, f)));
            let payload = match &m.payload_json {
                Some(p) => parse(p),
                None => Some(Value::Null),
            };
            let payload_ok = payload
                .is_some_and(|p| json_equal(&p, method.get("payload").unwrap_or(&Value::Null)));
            name_ok && payload_ok
        }
        JobKind::TwinUpdate { patch_json } => parse(patch_json).is_some_and(|patch| {
            found
                .get("updateTwin")
                .is_some_and(|twin| json_subset(&patch, twin))
        }),
    };
    let start_ok = match &job.start_time {
        None => true,
        Some(asked) => match field("startTime", "startTimeUtc").and_then(Value::as_str) {
            Some(got) => match (parse_iso8601_millis(asked), parse_iso8601_millis(got)) {
                (Some(a), Some(b)) => a == b,
                _ => asked == got,
            },
            None => false,
        },
    };
    type_ok && condition_ok && kind_ok && start_ok
}

fn parse(json: &RawValue) -> Option<Value> {
    serde_json::from_str(json.get()).ok()
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Every member of `expected` (recursively, for objects) is present and equal in `actual`; the
/// service may add fields such as `etag`.
pub fn json_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| json_subset(v, w))),
        _ => json_equal(expected, actual),
    }
}
