//! What the store writes, taken from the hub's structures while their locks are held: owned
//! rows of text and numbers, so the database work itself happens later, on the writer thread.

use serde_json::{json, Value};

use super::EndedRow;
use crate::devices::client_key;
use crate::devices::Device;
use crate::jobs::model::{DeviceOutcome, DeviceRow, Job};

/// One change, in the order the hub made it.
pub enum Change {
    PutDevices(Vec<DeviceDoc>),
    DeleteDevice(String),
    /// Every device removed: the start of a replacement (a seed, a reset, a control-API load
    /// with replace), which ends with `Seeded`.
    ClearDevices,
    /// A whole device set is written: the store holds a hub from now on.
    Seeded,
    PutJob(JobRecord),
    PutRows(u64, Vec<RowRecord>),
    ClearJobs,
    /// A configuration's id and document.
    PutConfiguration(String, String),
    DeleteConfiguration(String),
    ClearConfigurations,
    Meta(String, String),
    /// A device's cloud-to-device queue (its JSON document), or `None`: it is empty.
    PutQueue(String, Option<String>),
}

pub struct DeviceDoc {
    pub id: String,
    pub doc: String,
}

impl DeviceDoc {
    pub fn of(device: &Device) -> Self {
        Self {
            id: device.id.clone(),
            // A derived Serialize of maps and strings cannot fail.
            doc: serde_json::to_string(device).unwrap_or_default(),
        }
    }
}

pub fn devices<'a>(devices: impl IntoIterator<Item = &'a Device>) -> Vec<DeviceDoc> {
    devices.into_iter().map(DeviceDoc::of).collect()
}

pub struct JobRecord {
    pub seq: u64,
    pub job_id: String,
    pub status: &'static str,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub failure_reason: Option<String>,
    pub status_message: Option<String>,
    pub spec: String,
    /// The JSON array of target device ids, when it is to be written.
    pub targets: Option<String>,
}

impl JobRecord {
    pub fn of(seq: u64, job: &Job, targets: bool) -> Self {
        Self {
            seq,
            job_id: job.spec.id.clone(),
            status: job.status.as_str(),
            created_ms: job.created_ms,
            started_ms: job.started_ms,
            end_ms: job.end_ms,
            failure_reason: job.failure_reason.clone(),
            status_message: job.status_message.clone(),
            spec: serde_json::to_string(&job.spec).unwrap_or_default(),
            // A module target as its client key, `{deviceId}/{moduleId}` (ids have no `/`).
            targets: targets.then(|| {
                Value::from_iter(job.rows.iter().map(|r| Value::from(target(r)))).to_string()
            }),
        }
    }
}

fn target(row: &DeviceRow) -> String {
    client_key(&row.device_id, row.module_id.as_deref()).into_owned()
}

pub struct RowRecord {
    pub index: i64,
    pub device_id: String,
    pub status: &'static str,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub updated_ms: i64,
    pub outcome: Option<String>,
}

pub fn rows(rows: &[EndedRow<'_>]) -> Vec<RowRecord> {
    // Consecutive rows mostly end the same way (a method job's devices answer with one shared
    // payload): the outcome of the previous row is reused rather than serialized again.
    let mut last: Option<(&DeviceOutcome, Option<String>)> = None;
    rows.iter()
        .map(|EndedRow { index, row }| {
            let outcome = row.outcome.as_ref().and_then(|o| match &last {
                Some((prev, text)) if same_outcome(prev, o) => text.clone(),
                _ => {
                    let text = outcome_to_json(o);
                    last = Some((o, text.clone()));
                    text
                }
            });
            RowRecord {
                index: *index as i64,
                device_id: target(row),
                status: row.status.as_str(),
                start_ms: row.start_ms,
                end_ms: row.end_ms,
                updated_ms: row.updated_ms,
                outcome,
            }
        })
        .collect()
}

/// Equal outcomes, the payload compared by pointer first (shared payloads are one `Arc`).
fn same_outcome(a: &DeviceOutcome, b: &DeviceOutcome) -> bool {
    match (a, b) {
        (
            DeviceOutcome::Succeeded {
                status: s1,
                payload: p1,
            },
            DeviceOutcome::Succeeded {
                status: s2,
                payload: p2,
            },
        ) => {
            s1 == s2
                && match (p1, p2) {
                    (Some(p1), Some(p2)) => std::sync::Arc::ptr_eq(p1, p2) || p1 == p2,
                    (None, None) => true,
                    _ => false,
                }
        }
        _ => a == b,
    }
}

/// `{"status", "payload"?}` for an answer, `{"code", "description"}` for a failure, none for
/// a cancelled row.
fn outcome_to_json(outcome: &DeviceOutcome) -> Option<String> {
    match outcome {
        DeviceOutcome::Succeeded { status, payload } => Some(match payload {
            Some(p) => json!({"status": status, "payload": &**p}).to_string(),
            None => json!({ "status": status }).to_string(),
        }),
        DeviceOutcome::Failed { code, description } => {
            Some(json!({"code": code, "description": description}).to_string())
        }
        DeviceOutcome::Canceled => None,
    }
}
