//! Import/export jobs (`POST /jobs/create`, `GET /jobs`, `GET`/`DELETE /jobs/{id}`): the
//! registry written to a container's `devices.txt`, or a `devices.txt` applied to the registry
//! line by line with its errors in `importErrors.log` (`runner.rs`). This module keeps the jobs
//! (their rules: what a request may ask, one active job per hub, statuses, cancel) and is their
//! one way to the store; a different API from the device jobs of `jobs/`.

mod runner;

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clock::iso;
use crate::errors::{ApiError, ErrorCode};
use crate::storage::ContainerUri;
use crate::store::{Change, Document, Store, StoreError};

pub use runner::{run, Runner};

/// The blob an export writes and an import reads unless the request names another.
pub const DEVICES_BLOB: &str = "devices.txt";
/// The blob an import lists its failed lines in (empty when none failed).
pub const IMPORT_ERRORS_BLOB: &str = "importErrors.log";

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    Export,
    Import,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Enqueued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    fn is_active(self) -> bool {
        matches!(self, Self::Enqueued | Self::Running)
    }
}

/// One job as it is kept (in the data dir too). It holds the container URIs as the caller
/// gave them, SAS included, as the service does; it has no `Debug` for that reason.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_id: String,
    pub kind: Kind,
    pub status: Status,
    pub progress: u32,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub input_uri: Option<String>,
    pub output_uri: String,
    pub input_blob_name: String,
    pub output_blob_name: String,
    pub exclude_keys: bool,
    pub identity_based: bool,
    pub failure_reason: Option<String>,
}

impl Job {
    /// `JobProperties` as the service answers it.
    pub fn to_json(&self) -> Value {
        json!({
            "jobId": self.job_id,
            "startTimeUtc": iso(self.start_ms),
            "endTimeUtc": self.end_ms.map(iso),
            "type": self.kind,
            "status": self.status,
            "progress": self.progress,
            "inputBlobContainerUri": self.input_uri,
            "inputBlobName": (self.kind == Kind::Import).then_some(&self.input_blob_name),
            "outputBlobContainerUri": self.output_uri,
            "outputBlobName": (self.kind == Kind::Export).then_some(&self.output_blob_name),
            "excludeKeysInExport": self.exclude_keys,
            "storageAuthenticationType": if self.identity_based { "identityBased" } else { "keyBased" },
            "includeConfigurations": false,
            "failureReason": self.failure_reason,
        })
    }

    /// The containers, read again (they were checked when the job was created).
    fn containers(&self) -> Result<(Option<ContainerUri>, ContainerUri), String> {
        let input = self
            .input_uri
            .as_deref()
            .map(ContainerUri::parse)
            .transpose()?;
        Ok((input, ContainerUri::parse(&self.output_uri)?))
    }
}

fn invalid(text: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ArgumentInvalid, text)
}

/// A job request (`JobProperties`) read and checked: every mistake is a one-line 400 that
/// never repeats a URI (its SAS is a secret).
pub fn parse_request(body: &Value, job_id: String, now_ms: i64) -> Result<Job, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("the job must be a JSON object"))?;
    let text = |name: &str| {
        obj.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let kind = match text("type") {
        Some("export") => Kind::Export,
        Some("import") => Kind::Import,
        Some(other) => {
            return Err(invalid(format!(
                "type must be export or import, not '{other}'"
            )))
        }
        None => return Err(invalid("the job needs a type (export or import)")),
    };
    if obj.get("includeConfigurations").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(
            "includeConfigurations is not supported by the emulator: it imports and exports devices and modules",
        ));
    }
    let uri = |name: &str| -> Result<Option<String>, ApiError> {
        let Some(uri) = text(name) else {
            return Ok(None);
        };
        ContainerUri::parse(uri).map_err(|e| invalid(format!("{name}: {e}")))?;
        Ok(Some(uri.to_string()))
    };
    let output_uri = uri("outputBlobContainerUri")?
        .ok_or_else(|| invalid("outputBlobContainerUri is required"))?;
    let input_uri = uri("inputBlobContainerUri")?;
    if kind == Kind::Import && input_uri.is_none() {
        return Err(invalid(
            "inputBlobContainerUri is required for an import job",
        ));
    }
    let identity_based = match text("storageAuthenticationType") {
        None | Some("keyBased") => false,
        Some("identityBased") => true,
        Some(other) => {
            return Err(invalid(format!(
                "storageAuthenticationType must be keyBased or identityBased, not '{other}'"
            )))
        }
    };
    Ok(Job {
        job_id,
        kind,
        status: Status::Enqueued,
        progress: 0,
        start_ms: now_ms,
        end_ms: None,
        input_uri: if kind == Kind::Import {
            input_uri
        } else {
            None
        },
        output_uri,
        input_blob_name: text("inputBlobName").unwrap_or(DEVICES_BLOB).to_string(),
        output_blob_name: text("outputBlobName").unwrap_or(DEVICES_BLOB).to_string(),
        exclude_keys: obj.get("excludeKeysInExport").and_then(Value::as_bool) == Some(true),
        identity_based,
        failure_reason: None,
    })
}

fn record(job: &Job) -> Change {
    Change::PutImportExportJob(Document::of(&job.job_id, job))
}

/// The hub's import/export jobs, in creation order.
#[derive(Default)]
pub struct ImportExportJobs {
    jobs: Mutex<Vec<Job>>,
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::JobNotFound,
        format!("The import/export job '{id}' does not exist on this hub"),
    )
}

impl ImportExportJobs {
    /// The jobs a previous run left; the ones that were enqueued or running are enqueued
    /// again (an interrupted job runs again from its start: see `run`).
    pub fn restore(&self, jobs: Vec<Job>) {
        let mut kept = crate::locks::lock(&self.jobs);
        *kept = jobs;
        for job in kept.iter_mut().filter(|j| j.status.is_active()) {
            job.status = Status::Enqueued;
            job.progress = 0;
        }
    }

    /// The ids of the jobs waiting to run (after `restore`).
    pub fn enqueued(&self) -> Vec<String> {
        crate::locks::lock(&self.jobs)
            .iter()
            .filter(|j| j.status == Status::Enqueued)
            .map(|j| j.job_id.clone())
            .collect()
    }

    /// Adds a job, stored before the caller is answered. One import or export job runs at a
    /// time on every tier: another one while one is enqueued or running is refused.
    pub fn create(&self, store: &Store, job: Job) -> Result<Value, ApiError> {
        store.commit(crate::locks::lock(&self.jobs), |jobs, changes| {
            if let Some(active) = jobs.iter().find(|j| j.status.is_active()) {
                return Err(ApiError::new(
                    ErrorCode::JobQuotaExceeded,
                    format!(
                        "Only one import/export job can run at a time; job {} is {}",
                        active.job_id,
                        json!(active.status).as_str().unwrap_or_default()
                    ),
                ));
            }
            changes.push(|| record(&job));
            let answer = job.to_json();
            jobs.push(job);
            Ok(answer)
        })
    }

    pub fn get(&self, id: &str) -> Result<Value, ApiError> {
        crate::locks::lock(&self.jobs)
            .iter()
            .find(|j| j.job_id == id)
            .map(Job::to_json)
            .ok_or_else(|| job_not_found(id))
    }

    pub fn list(&self) -> Vec<Value> {
        crate::locks::lock(&self.jobs)
            .iter()
            .map(Job::to_json)
            .collect()
    }

    /// `DELETE /jobs/{id}`: an enqueued or running job is cancelled (a running one stops
    /// before its next line); an ended job is left as it is.
    pub fn cancel(&self, store: &Store, id: &str, now_ms: i64) -> Result<Value, ApiError> {
        store.commit(crate::locks::lock(&self.jobs), |jobs, changes| {
            let job = jobs
                .iter_mut()
                .find(|j| j.job_id == id)
                .ok_or_else(|| job_not_found(id))?;
            if job.status.is_active() {
                job.status = Status::Cancelled;
                job.end_ms = Some(now_ms);
                changes.push(|| record(job));
            }
            Ok::<_, ApiError>(job.to_json())
        })
    }

    /// Every job gone (a reset); a running one stops at its next line.
    pub fn clear(&self, store: &Store) -> Result<(), StoreError> {
        store.commit(crate::locks::lock(&self.jobs), |jobs, changes| {
            jobs.clear();
            changes.push(|| Change::ClearImportExportJobs);
            Ok::<_, StoreError>(())
        })
    }

    /// A copy of one job (the runner's view), `None` once it is gone.
    fn snapshot(&self, id: &str) -> Option<Job> {
        crate::locks::lock(&self.jobs)
            .iter()
            .find(|j| j.job_id == id)
            .cloned()
    }

    /// Changes a job that is still active (a cancelled or removed one is left alone) and
    /// queues its record without waiting: `false` when the job is no longer active.
    fn update(&self, store: &Store, id: &str, change: impl FnOnce(&mut Job)) -> bool {
        let mut jobs = crate::locks::lock(&self.jobs);
        let Some(job) = jobs
            .iter_mut()
            .find(|j| j.job_id == id && j.status.is_active())
        else {
            return false;
        };
        change(job);
        let change = record(job);
        // A progress record that is lost only makes a resumed job start over.
        let _ = store.write_behind(|| vec![change]);
        true
    }
}

#[cfg(test)]
mod tests;
