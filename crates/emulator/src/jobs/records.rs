//! A job as the store keeps it: [`JobRecord`] and [`RowRecord`] made from a [`Job`], and a
//! [`StoredJob`] turned back into one at start.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::model::{DeviceOutcome, DeviceRow, Job, JobStatus, RowStatus};
use super::NewJob;
use crate::devices::{client_key, split_client};
use crate::store::{Change, JobRecord, RowRecord, StoreError, StoredJob};

/// A job's row that reached its end, to be written (rows are stored once they end: a row not
/// in the store is pending, and runs again when a job resumes).
pub struct EndedRow<'a> {
    pub index: usize,
    pub row: &'a DeviceRow,
}

/// The rows of `job` at `indices`.
pub fn ended<'a>(job: &'a Job, indices: impl IntoIterator<Item = usize>) -> Vec<EndedRow<'a>> {
    indices
        .into_iter()
        .map(|index| EndedRow {
            index,
            row: &job.rows[index],
        })
        .collect()
}

/// A job's state (with `targets`, the devices it runs on) and the rows that ended, as the
/// changes that write them in one transaction.
pub fn job_changes(seq: u64, job: &Job, targets: bool, rows: &[EndedRow<'_>]) -> Vec<Change> {
    vec![
        Change::PutJob(job_record(seq, job, targets)),
        Change::PutRows(seq, row_records(rows)),
    ]
}

pub fn job_record(seq: u64, job: &Job, targets: bool) -> JobRecord {
    JobRecord {
        seq,
        job_id: job.spec.id.clone(),
        status: job.status.as_str().to_string(),
        created_ms: job.created_ms,
        started_ms: job.started_ms,
        end_ms: job.end_ms,
        failure_reason: job.failure_reason.clone(),
        status_message: job.status_message.clone(),
        spec: serde_json::to_string(&job.spec).unwrap_or_default(),
        // A module target as its client key, `{deviceId}/{moduleId}` (ids have no `/`).
        targets: targets
            .then(|| Value::from_iter(job.rows.iter().map(|r| Value::from(target(r)))).to_string()),
    }
}

fn target(row: &DeviceRow) -> String {
    client_key(&row.device_id, row.module_id.as_deref()).into_owned()
}

pub fn row_records(rows: &[EndedRow<'_>]) -> Vec<RowRecord> {
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
                status: row.status.as_str().to_string(),
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
                    (Some(p1), Some(p2)) => Arc::ptr_eq(p1, p2) || p1 == p2,
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

/// A job read back from the store, with its creation number: its rows pending but for those
/// that ended. Payloads are shared between rows with the same answer, as they are in memory
/// (a million-device method job answers with one payload).
pub fn from_stored(stored: StoredJob) -> Result<(u64, Job), StoreError> {
    let StoredJob { job: record, rows } = stored;
    let bad = |what: &str| {
        StoreError::new(format!(
            "job {} in the store cannot be read: {what}",
            record.job_id
        ))
    };
    let status = JobStatus::parse(&record.status).ok_or_else(|| bad("unknown status"))?;
    let spec: NewJob = serde_json::from_str(&record.spec).map_err(|e| bad(&e.to_string()))?;
    let targets: Vec<String> = match &record.targets {
        Some(t) => serde_json::from_str(t).map_err(|e| bad(&e.to_string()))?,
        None => Vec::new(),
    };
    let mut job = Job::new(spec, record.created_ms);
    job.status = status;
    job.started_ms = record.started_ms;
    job.end_ms = record.end_ms;
    job.failure_reason = record.failure_reason.clone();
    job.status_message = record.status_message.clone();
    let started = job.started_ms.unwrap_or(record.created_ms);
    job.rows = targets
        .into_iter()
        .map(|client| {
            let (device, module) = split_client(&client);
            DeviceRow::pending(device.into(), module.map(str::to_string), started)
        })
        .collect();
    let mut payloads: HashMap<String, Arc<Value>> = HashMap::new();
    for r in rows {
        let Some(row) = usize::try_from(r.index)
            .ok()
            .and_then(|i| job.rows.get_mut(i))
        else {
            return Err(bad(&format!(
                "row {} is not one of the job's targets",
                r.index
            )));
        };
        row.status =
            RowStatus::parse(&r.status).ok_or_else(|| bad("a row has an unknown status"))?;
        row.start_ms = r.start_ms;
        row.end_ms = r.end_ms;
        row.updated_ms = r.updated_ms;
        row.outcome = Some(match r.outcome {
            None => DeviceOutcome::Canceled,
            Some(text) => outcome_from_json(&text, &mut payloads).map_err(|e| bad(&e))?,
        });
    }
    job.recount();
    Ok((record.seq, job))
}

fn outcome_from_json(
    text: &str,
    payloads: &mut HashMap<String, Arc<Value>>,
) -> Result<DeviceOutcome, String> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(code) = v.get("code").and_then(Value::as_str) {
        return Ok(DeviceOutcome::Failed {
            code: code.to_string(),
            description: v["description"].as_str().unwrap_or_default().to_string(),
        });
    }
    let status = v["status"].as_i64().ok_or("an outcome has no status")?;
    let payload = v.get_mut("payload").map(|p| {
        let p = p.take();
        payloads
            .entry(p.to_string())
            .or_insert_with(|| Arc::new(p))
            .clone()
    });
    Ok(DeviceOutcome::Succeeded { status, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::jobs::parse_job_request;

    fn job() -> Job {
        let body = json!({"jobId": "j", "type": "scheduleDeviceMethod", "queryCondition": "*",
            "cloudToDeviceMethod": {"methodName": "m", "payload": {"x": 1}}});
        let spec = parse_job_request("j", &body, Clock::new().now_ms()).unwrap();
        let mut job = Job::new(spec, 10);
        job.status = JobStatus::Running;
        job.started_ms = Some(20);
        job.rows = vec![
            DeviceRow::pending("d1".into(), None, 20),
            DeviceRow::pending("d2".into(), Some("m1".into()), 20),
            DeviceRow::pending("d3".into(), None, 20),
        ];
        job.recount();
        job
    }

    /// A job written as records and read back is the same job, its ended rows sharing one
    /// payload, a row not written still pending.
    #[test]
    fn a_job_round_trips_through_its_records() {
        let mut job = job();
        let payload = Arc::new(json!({"ok": true}));
        let answer = DeviceOutcome::Succeeded {
            status: 200,
            payload: Some(payload.clone()),
        };
        job.start_row(0, 21);
        job.end_row(0, answer.clone(), 22);
        job.start_row(1, 21);
        job.end_row(1, answer, 23);
        let rows = row_records(&ended(&job, [0, 1]));
        assert_eq!(rows[1].device_id, "d2/m1");
        let stored = StoredJob {
            job: job_record(7, &job, true),
            rows,
        };
        let (seq, back) = from_stored(stored).unwrap();
        assert_eq!(seq, 7);
        assert_eq!(back.to_json(), job.to_json());
        assert_eq!(back.rows[1].module_id.as_deref(), Some("m1"));
        assert_eq!(back.rows[2].status, RowStatus::Pending);
        let (
            Some(DeviceOutcome::Succeeded {
                payload: Some(a), ..
            }),
            Some(DeviceOutcome::Succeeded {
                payload: Some(b), ..
            }),
        ) = (&back.rows[0].outcome, &back.rows[1].outcome)
        else {
            panic!("the rows did not come back succeeded");
        };
        assert!(Arc::ptr_eq(a, b), "one payload shared");
    }

    #[test]
    fn a_damaged_record_says_which_job() {
        let mut record = job_record(1, &job(), true);
        record.status = "bogus".into();
        let e = from_stored(StoredJob {
            job: record.clone(),
            rows: vec![],
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "job j in the store cannot be read: unknown status"
        );
        record.status = "running".into();
        let row = RowRecord {
            index: 9,
            device_id: "d9".into(),
            status: "completed".into(),
            start_ms: None,
            end_ms: None,
            updated_ms: 0,
            outcome: None,
        };
        let e = from_stored(StoredJob {
            job: record,
            rows: vec![row],
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("row 9 is not one of the job's targets"),
            "{e}"
        );
    }
}
