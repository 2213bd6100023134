//! A job's state and its wire shapes (JobResponse and `devices.jobs` rows).

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::request::{JobKind, NewJob};
use crate::clock::iso;

/// What the service shows as `endTime` while a job is not finished.
pub const FAR_FUTURE: &str = "9999-12-31T23:59:59.999Z";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Scheduled,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// The status named by [`JobStatus::as_str`] (how the store writes it).
    pub fn parse(text: &str) -> Option<Self> {
        [
            JobStatus::Queued,
            JobStatus::Scheduled,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowStatus {
    Pending,
    Running,
    Completed,
    Failed,
    /// Spelled with one `l` on the wire, unlike the job status.
    Canceled,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Pending => "pending",
            RowStatus::Running => "running",
            RowStatus::Completed => "completed",
            RowStatus::Failed => "failed",
            RowStatus::Canceled => "canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RowStatus::Completed | RowStatus::Failed | RowStatus::Canceled
        )
    }

    /// The status named by [`RowStatus::as_str`] (how the store writes it).
    pub fn parse(text: &str) -> Option<Self> {
        [
            RowStatus::Pending,
            RowStatus::Running,
            RowStatus::Completed,
            RowStatus::Failed,
            RowStatus::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// How one device's operation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceOutcome {
    /// A method job: the device's answer, its payload shared with the device's behaviour.
    /// A twin job: no payload.
    Succeeded {
        status: i64,
        payload: Option<Arc<Value>>,
    },
    Failed {
        code: String,
        description: String,
    },
    Canceled,
}

#[derive(Clone, Debug)]
pub struct DeviceRow {
    pub device_id: String,
    /// Set when the job runs over modules (`FROM devices.modules WHERE …`).
    pub module_id: Option<String>,
    pub status: RowStatus,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub updated_ms: i64,
    pub outcome: Option<DeviceOutcome>,
}

impl DeviceRow {
    /// A row not reached yet.
    pub fn pending(device_id: String, module_id: Option<String>, now_ms: i64) -> Self {
        Self {
            device_id,
            module_id,
            status: RowStatus::Pending,
            start_ms: None,
            end_ms: None,
            updated_ms: now_ms,
            outcome: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub device_count: u64,
    pub failed: u64,
    pub succeeded: u64,
    pub running: u64,
    pub pending: u64,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub spec: NewJob,
    pub created_ms: i64,
    /// Formatted once: these never change and every GET prints them.
    created_iso: String,
    start_iso: String,
    pub status: JobStatus,
    /// When the job began running (its `maxExecutionTimeInSeconds` counts from here).
    pub started_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub failure_reason: Option<String>,
    pub status_message: Option<String>,
    pub rows: Vec<DeviceRow>,
    pub stats: Stats,
}

impl Job {
    pub fn new(spec: NewJob, created_ms: i64) -> Self {
        Self {
            created_iso: iso(created_ms),
            start_iso: iso(spec.start_ms),
            spec,
            created_ms,
            status: JobStatus::Queued,
            started_ms: None,
            end_ms: None,
            failure_reason: None,
            status_message: None,
            rows: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The statistics counted again from the rows (a job read back from the store).
    pub fn recount(&mut self) {
        let mut stats = Stats {
            device_count: self.rows.len() as u64,
            ..Stats::default()
        };
        for row in &self.rows {
            match row.status {
                RowStatus::Pending => stats.pending += 1,
                RowStatus::Running => stats.running += 1,
                RowStatus::Completed => stats.succeeded += 1,
                RowStatus::Failed => stats.failed += 1,
                RowStatus::Canceled => {}
            }
        }
        self.stats = stats;
    }

    pub fn finish(&mut self, status: JobStatus, now_ms: i64) {
        self.status = status;
        self.end_ms = Some(now_ms);
    }

    /// Moves row `i` to running (from pending).
    pub fn start_row(&mut self, i: usize, now_ms: i64) {
        let row = &mut self.rows[i];
        if row.status == RowStatus::Pending {
            row.status = RowStatus::Running;
            row.start_ms = Some(now_ms);
            row.updated_ms = now_ms;
            self.stats.pending -= 1;
            self.stats.running += 1;
        }
    }

    /// Records how row `i` ended; a row that already ended (cancel, timeout) keeps its outcome
    /// (then `false`).
    pub fn end_row(&mut self, i: usize, outcome: DeviceOutcome, now_ms: i64) -> bool {
        let row = &mut self.rows[i];
        if row.status.is_terminal() {
            return false;
        }
        match row.status {
            RowStatus::Pending => self.stats.pending -= 1,
            RowStatus::Running => self.stats.running -= 1,
            _ => {}
        }
        row.status = match &outcome {
            DeviceOutcome::Succeeded { .. } => {
                self.stats.succeeded += 1;
                RowStatus::Completed
            }
            DeviceOutcome::Failed { .. } => {
                self.stats.failed += 1;
                RowStatus::Failed
            }
            DeviceOutcome::Canceled => RowStatus::Canceled,
        };
        row.end_ms = Some(now_ms);
        row.updated_ms = now_ms;
        row.outcome = Some(outcome);
        true
    }

    /// JobResponse as a JSON value (for lists and the control API).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or(Value::Null)
    }

    /// JobResponse serialized straight to bytes: the hot path of `GET /jobs/v2/{id}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.view()).unwrap_or_default()
    }

    /// JobResponse, with every field the service documents, in the service's order.
    fn view(&self) -> JobResponse<'_> {
        let s = &self.spec;
        let (method, twin) = match &s.kind {
            JobKind::Method(m) => (
                Some(MethodView {
                    method_name: &m.method_name,
                    payload: &m.payload,
                    response_timeout_in_seconds: m.response_timeout_s,
                    connect_timeout_in_seconds: m.connect_timeout_s,
                }),
                None,
            ),
            JobKind::Twin(patch) => (None, Some(patch)),
        };
        JobResponse {
            job_id: &s.id,
            job_type: s.kind.type_name(),
            query_condition: &s.query_condition,
            created_time: &self.created_iso,
            start_time: &self.start_iso,
            end_time: self
                .end_ms
                .map(iso)
                .map(Cow::Owned)
                .unwrap_or(Cow::Borrowed(FAR_FUTURE)),
            max_execution_time_in_seconds: s.max_execution_s,
            cloud_to_device_method: method,
            update_twin: twin,
            status: self.status.as_str(),
            failure_reason: self.failure_reason.as_deref(),
            status_message: self.status_message.as_deref(),
            device_job_statistics: StatsView {
                device_count: self.stats.device_count,
                failed_count: self.stats.failed,
                succeeded_count: self.stats.succeeded,
                running_count: self.stats.running,
                pending_count: self.stats.pending,
            },
        }
    }

    /// The `devices.jobs` row for device `i`.
    pub fn row_json(&self, i: usize) -> Value {
        let row = &self.rows[i];
        let mut out = json!({
            "deviceId": row.device_id,
            "jobId": self.spec.id,
            "jobType": self.spec.kind.type_name(),
            "status": row.status.as_str(),
            "startTimeUtc": row.start_ms.map(iso),
            "endTimeUtc": row.end_ms.map(iso),
            "createdDateTimeUtc": iso(self.created_ms),
            "lastUpdatedDateTimeUtc": iso(row.updated_ms),
        });
        let obj = out.as_object_mut().expect("object literal");
        if let Some(module) = &row.module_id {
            obj.insert("moduleId".into(), json!(module));
        }
        match &row.outcome {
            Some(DeviceOutcome::Succeeded {
                status,
                payload: Some(payload),
            }) => {
                obj.insert(
                    "outcome".into(),
                    json!({"deviceMethodResponse": {"status": status, "payload": &**payload}}),
                );
            }
            Some(DeviceOutcome::Failed { code, description }) => {
                obj.insert(
                    "error".into(),
                    json!({"code": code, "description": description}),
                );
            }
            _ => {}
        }
        out
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobResponse<'a> {
    job_id: &'a str,
    #[serde(rename = "type")]
    job_type: &'static str,
    query_condition: &'a str,
    created_time: &'a str,
    start_time: &'a str,
    end_time: Cow<'a, str>,
    max_execution_time_in_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_to_device_method: Option<MethodView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    update_twin: Option<&'a Value>,
    status: &'static str,
    failure_reason: Option<&'a str>,
    status_message: Option<&'a str>,
    device_job_statistics: StatsView,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MethodView<'a> {
    method_name: &'a str,
    payload: &'a Value,
    response_timeout_in_seconds: u64,
    connect_timeout_in_seconds: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsView {
    device_count: u64,
    failed_count: u64,
    succeeded_count: u64,
    running_count: u64,
    pending_count: u64,
}
