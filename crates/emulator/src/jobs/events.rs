//! What the job engine tells the hub, which turns it into its routing's events: the twins a
//! twin job wrote (twin-change events) and each device job that ended (device-job lifecycle
//! events). A device job ends in one place, [`Engine::end_rows`]; the listener hears of it
//! after the job's lock is released (routing may read the registry).

use serde_json::Value;

use super::model::{DeviceOutcome, Job, RowStatus};
use super::{Engine, JobEntry};

/// The hub, as the engine sees it (set once the hub exists).
pub trait JobListener: Send + Sync {
    /// A twin job merged `patch` into the twin of `client` (`{deviceId}[/{moduleId}]`).
    fn twin_patched(&self, client: &str, patch: &Value);
    /// Whether [`JobListener::device_job_ended`] is wanted: rows are rendered only then (a
    /// fleet's job ends 100,000 of them).
    fn wants_device_jobs(&self) -> bool;
    /// A device job ended (completed, failed or canceled).
    fn device_job_ended(&self, ended: &EndedDeviceJob);
}

/// One device job that ended, as the listener hears of it.
pub struct EndedDeviceJob {
    /// `{deviceId}[/{moduleId}]`.
    pub client: String,
    /// Completed, failed or canceled.
    pub status: RowStatus,
    /// The row as `SELECT * FROM devices.jobs` shows it.
    pub row: Value,
}

impl Engine {
    /// Who hears of what jobs do (the hub, for its events).
    pub fn set_listener(&self, listener: Box<dyn JobListener>) {
        let _ = self.listener.set(listener);
    }

    /// Tells the listener that a twin job wrote the twins of `clients`.
    pub(super) fn twins_patched<'a>(
        &self,
        clients: impl IntoIterator<Item = &'a String>,
        patch: &Value,
    ) {
        if let Some(listener) = self.listener.get() {
            for client in clients {
                listener.twin_patched(client, patch);
            }
        }
    }

    /// Ends rows of `entry`'s job (a row and its outcome each; a row that already ended keeps
    /// its outcome), then tells the listener of those that ended now.
    pub(super) fn end_rows(
        &self,
        entry: &JobEntry,
        rows: impl IntoIterator<Item = (usize, DeviceOutcome)>,
        now_ms: i64,
    ) {
        let ended = {
            let mut job = entry.lock();
            let ended: Vec<usize> = rows
                .into_iter()
                .filter_map(|(i, outcome)| job.end_row(i, outcome, now_ms).then_some(i))
                .collect();
            // A job a reset forgot tells of nothing more.
            if entry.stored() {
                self.ended_device_jobs(&job, ended)
            } else {
                Vec::new()
            }
        };
        self.announce(ended);
    }

    /// The rows `rows` of `job` (which ended) as the listener hears of them; none when it does
    /// not listen.
    pub(super) fn ended_device_jobs(
        &self,
        job: &Job,
        rows: impl IntoIterator<Item = usize>,
    ) -> Vec<EndedDeviceJob> {
        if !self.listener.get().is_some_and(|l| l.wants_device_jobs()) {
            return Vec::new();
        }
        rows.into_iter()
            .map(|i| {
                let row = &job.rows[i];
                EndedDeviceJob {
                    client: match &row.module_id {
                        Some(module) => format!("{}/{module}", row.device_id),
                        None => row.device_id.clone(),
                    },
                    status: row.status,
                    row: job.row_json(i),
                }
            })
            .collect()
    }

    /// Tells the listener of device jobs that ended (called without the job's lock).
    pub(super) fn announce(&self, ended: Vec<EndedDeviceJob>) {
        if let Some(listener) = self.listener.get() {
            for device_job in &ended {
                listener.device_job_ended(device_job);
            }
        }
    }
}
