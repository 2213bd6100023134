//! The job engine: the job store (create, get, cancel, list, device-job rows) and, per job,
//! a runner task (see `runner.rs`) that walks the documented lifecycle on the emulator clock.
//!
//! Locking: an `RwLock` over the index and a `Mutex` per job, both std locks held only for
//! short synchronous sections, never across an `.await`. `GET /jobs/v2/{id}` takes the read
//! lock, clones one `Arc`, and serializes under the job's own lock.

mod events;
pub mod model;
mod records;
pub mod request;
mod runner;
pub use events::{EndedDeviceJob, JobListener};
pub use records::from_stored;
pub use runner::method_record;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::devices::Registry;
use crate::errors::{ApiError, ErrorCode};
use crate::limits::DevicePacer;
use crate::paging::{stale_token, Collected, Page, RowPosition};
use crate::query::SelectQuery;
use crate::store::{Change, StoreError};
use model::{DeviceOutcome, Job, JobStatus, RowStatus};
use records::{ended, job_changes};
pub use request::{parse_job_request, parse_method, validate_job_id, NewJob};

pub struct JobEntry {
    /// Creation number: increasing, never reused (not even after a reset), so a continuation
    /// token can name a job's place in the creation order.
    seq: u64,
    job: Mutex<Job>,
    cancel: watch::Sender<bool>,
    /// Set (under the job's lock) when a reset forgets the job: its runner writes nothing more
    /// to the store, so an emptied store stays empty.
    forgotten: AtomicBool,
}

impl JobEntry {
    fn new(seq: u64, job: Job) -> Self {
        Self {
            seq,
            job: Mutex::new(job),
            cancel: watch::channel(false).0,
            forgotten: AtomicBool::new(false),
        }
    }

    /// Whether the job may still be written to the store (call with the job's lock held).
    fn stored(&self) -> bool {
        !self.forgotten.load(Ordering::Relaxed)
    }

    pub fn lock(&self) -> MutexGuard<'_, Job> {
        crate::locks::lock(&self.job)
    }

    /// Resolves once the job has been cancelled (or the store reset).
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful creates (200 answers to PUT). More than 1 would mean a duplicated job.
    pub creates: u64,
    /// Every PUT for this id, including those answered 409 or 429.
    pub attempts: u64,
}

#[derive(Default)]
struct Index {
    by_id: HashMap<String, Arc<JobEntry>>,
    /// Creation order (ascending `seq`), which is the order of query results.
    order: Vec<Arc<JobEntry>>,
    counters: BTreeMap<String, Counters>,
}

impl Index {
    /// Where in `order` the jobs created after job `after` start. A token naming a job that is
    /// gone (the store was reset) is refused: what it pointed into no longer exists.
    fn resume_after(&self, after: Option<u64>) -> Result<usize, ApiError> {
        let Some(seq) = after else { return Ok(0) };
        self.order
            .binary_search_by_key(&seq, |e| e.seq)
            .map(|i| i + 1)
            .map_err(|_| stale_token())
    }
}

/// How the engine is limited (`--tier`); the default is unlimited.
#[derive(Default)]
pub struct EngineLimits {
    pub max_active_jobs: Option<usize>,
    pub pacer: Option<DevicePacer>,
}

pub struct Engine {
    pub clock: Arc<Clock>,
    pub devices: Arc<Registry>,
    limits: EngineLimits,
    /// The hub, for its events about what jobs do (set once the hub exists).
    listener: std::sync::OnceLock<Box<dyn JobListener>>,
    index: RwLock<Index>,
    next_seq: AtomicU64,
}

pub fn job_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::JobNotFound,
        format!("Job with id '{id}' does not exist"),
    )
}

impl Engine {
    pub fn new(clock: Arc<Clock>, devices: Arc<Registry>, limits: EngineLimits) -> Arc<Self> {
        Arc::new(Self {
            clock,
            devices,
            limits,
            listener: std::sync::OnceLock::new(),
            index: RwLock::new(Index::default()),
            next_seq: AtomicU64::new(1),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        crate::locks::read(&self.index)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        crate::locks::write(&self.index)
    }

    /// Whether jobs are kept in a data dir.
    fn is_persistent(&self) -> bool {
        self.devices.store.is_persistent()
    }

    /// Queues a running job's own records (its state, its rows), without waiting for the
    /// commit: no client waits for a runner.
    fn write_behind(&self, changes: impl FnOnce() -> Vec<Change>) -> Result<(), StoreError> {
        self.devices.store.write_behind(changes)
    }

    /// Counts a PUT attempt for `id` (called before validation of the rest of the request).
    pub fn count_attempt(&self, id: &str) {
        self.write()
            .counters
            .entry(id.to_string())
            .or_default()
            .attempts += 1;
    }

    /// Creates the job and starts its runner. Must be called inside the tokio runtime.
    pub fn create(self: &Arc<Self>, spec: NewJob) -> Result<Value, ApiError> {
        let now = self.clock.now_ms();
        // Queued under the index lock (in creation order), saved before it is answered.
        let (entry, saved) = self.devices.store.stage(self.write(), |index, changes| {
            if index.by_id.contains_key(&spec.id) {
                return Err(ApiError::new(
                    ErrorCode::JobAlreadyExists,
                    format!("A job with id '{}' already exists", spec.id),
                ));
            }
            if let Some(max) = self.limits.max_active_jobs {
                let active = index
                    .order
                    .iter()
                    .filter(|e| !e.lock().status.is_terminal())
                    .count();
                if active >= max {
                    return Err(ApiError::new(
                        ErrorCode::ThrottlingMaxActiveJobCountExceeded,
                        format!(
                            "The hub already has {active} active jobs, the most this tier allows"
                        ),
                    ));
                }
            }
            let job = Job::new(spec.clone(), now);
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            changes.extend(|| job_changes(seq, &job, false, &[]));
            let entry = Arc::new(JobEntry::new(seq, job));
            index.by_id.insert(spec.id.clone(), entry.clone());
            index.order.push(entry.clone());
            index.counters.entry(spec.id.clone()).or_default().creates += 1;
            Ok(entry)
        })?;
        let body = entry.lock().to_json();
        // The job exists (in memory) whether or not its commit succeeds: it runs either way.
        tokio::spawn(runner::run(self.clone(), entry));
        saved.wait()?;
        Ok(body)
    }

    pub fn get(&self, id: &str) -> Option<Value> {
        let entry = self.read().by_id.get(id).cloned()?;
        let body = entry.lock().to_json();
        Some(body)
    }

    /// The JobResponse already serialized (what `GET /jobs/v2/{id}` sends).
    pub fn get_bytes(&self, id: &str) -> Option<Vec<u8>> {
        let entry = self.read().by_id.get(id).cloned()?;
        let body = entry.lock().to_bytes();
        Some(body)
    }

    /// Cancels a job that has not finished; a finished job is returned unchanged.
    pub fn cancel(&self, id: &str) -> Result<Value, ApiError> {
        let entry = self
            .read()
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| job_not_found(id))?;
        let now = self.clock.now_ms();
        let ((body, cancelled), saved) =
            self.devices.store.stage(entry.lock(), |job, changes| {
                let mut cancelled = Vec::new();
                if !job.status.is_terminal() {
                    job.finish(JobStatus::Cancelled, now);
                    // Devices not reached yet are never touched.
                    let pending: Vec<usize> = (0..job.rows.len())
                        .filter(|&i| job.rows[i].status == RowStatus::Pending)
                        .collect();
                    for &i in &pending {
                        job.end_row(i, DeviceOutcome::Canceled, now);
                    }
                    cancelled = self.ended_device_jobs(job, pending);
                    // Every ended row with the state: rows the runner has not written yet too.
                    changes.extend(|| {
                        let rows =
                            (0..job.rows.len()).filter(|&i| job.rows[i].status.is_terminal());
                        job_changes(entry.seq, job, false, &ended(job, rows))
                    });
                }
                Ok::<_, ApiError>((job.to_json(), cancelled))
            })?;
        entry.cancel.send_replace(true);
        saved.wait()?;
        // The runner ends the rows that were running, and tells of them.
        self.announce(cancelled);
        Ok(body)
    }

    /// Jobs in creation order, filtered like `GET /jobs/v2/query?jobType=&jobStatus=`.
    pub fn list(&self, job_type: Option<&str>, job_status: Option<&str>) -> Vec<Value> {
        self.jobs_page(job_type, job_status, None, usize::MAX)
            .map(|(jobs, _)| jobs)
            .unwrap_or_default()
    }

    /// One page of [`Engine::list`]: up to `size` jobs created after job `after`, and the
    /// creation number to resume after when more follow. O(log jobs + page + skipped).
    pub fn jobs_page(
        &self,
        job_type: Option<&str>,
        job_status: Option<&str>,
        after: Option<u64>,
        size: usize,
    ) -> Result<Page<Value, u64>, ApiError> {
        // Lock order everywhere: the index, then one job at a time.
        let index = self.read();
        let start = index.resume_after(after)?;
        let mut page = Collected::new(size);
        for e in &index.order[start..] {
            if page.is_full() {
                break;
            }
            let job = e.lock();
            let type_ok = job_type.is_none_or(|t| t == job.spec.kind.type_name());
            let status_ok = job_status.is_none_or(|s| s == job.status.as_str());
            if type_ok && status_ok {
                page.push(e.seq, job.to_json());
            }
        }
        Ok(page.finish())
    }

    /// Every device-job row (for `SELECT * FROM devices.jobs`), job by job.
    #[cfg(test)]
    pub fn device_rows(&self) -> Vec<Value> {
        let index = self.read();
        let mut out = Vec::new();
        for e in &index.order {
            let job = e.lock();
            out.extend((0..job.rows.len()).map(|i| job.row_json(i)));
        }
        out
    }

    /// One page of `SELECT * FROM devices.jobs [WHERE …]`: up to `size` matching rows after row
    /// `after = (job creation number, row index)`, in job creation order then the job's device
    /// order, and the position to resume after when more follow. Seeks straight to the position,
    /// and a condition pinning `jobId = '…'` looks at that job alone.
    pub fn device_rows_page(
        &self,
        query: &SelectQuery,
        after: Option<RowPosition>,
        size: usize,
    ) -> Result<Page<Value, RowPosition>, ApiError> {
        let index = self.read();
        let start = index.resume_after(after.map(|(seq, _)| seq))?;
        // Resume inside the job of the token (it comes again), just past its row.
        let start = start.saturating_sub(usize::from(after.is_some()));
        let pinned = query
            .condition
            .as_ref()
            .and_then(|c| c.pinned_string("jobId"));
        let candidates: Box<dyn Iterator<Item = &Arc<JobEntry>>> = match pinned {
            Some(id) => Box::new(
                index
                    .by_id
                    .get(id)
                    .filter(|e| after.is_none_or(|(seq, _)| e.seq >= seq))
                    .into_iter(),
            ),
            None => Box::new(index.order[start..].iter()),
        };
        let mut page = Collected::new(size);
        for e in candidates {
            let job = e.lock();
            let first = match after {
                Some((seq, row)) if seq == e.seq => row.saturating_add(1),
                _ => 0,
            };
            for i in first..job.rows.len() {
                if page.is_full() {
                    return Ok(page.finish());
                }
                let row = job.row_json(i);
                if query.matches(&row) {
                    page.push((e.seq, i), row);
                }
            }
        }
        Ok(page.finish())
    }

    /// The control API's view: every job (with its `creates`/`attempts` counters inline) plus
    /// the counters of every id ever PUT, including ids that never became a job.
    pub fn control_view(&self) -> Value {
        let index_counters = self.read().counters.clone();
        let counters: serde_json::Map<String, Value> = index_counters
            .iter()
            .map(|(id, c)| {
                (
                    id.clone(),
                    json!({"creates": c.creates, "attempts": c.attempts}),
                )
            })
            .collect();
        let jobs: Vec<Value> = self
            .list(None, None)
            .into_iter()
            .map(|mut job| {
                let c = job["jobId"]
                    .as_str()
                    .and_then(|id| index_counters.get(id))
                    .copied()
                    .unwrap_or_default();
                job["creates"] = json!(c.creates);
                job["attempts"] = json!(c.attempts);
                job
            })
            .collect();
        json!({"jobs": jobs, "counters": counters})
    }

    pub fn counters(&self, id: &str) -> Counters {
        self.read().counters.get(id).copied().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.read().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every runner and forgets every job and counter (in the store too).
    pub fn reset(&self) -> Result<(), StoreError> {
        self.devices.store.commit(self.write(), |index, changes| {
            for e in std::mem::take(&mut **index).order {
                // Under the job's lock: a runner writing its progress finishes first.
                let _job = e.lock();
                e.forgotten.store(true, Ordering::Relaxed);
                e.cancel.send_replace(true);
            }
            changes.push(|| Change::ClearJobs);
            Ok(())
        })
    }

    /// Takes back the jobs read from the store, in creation order: a job that was queued,
    /// scheduled or running goes on (a scheduled one at its start time, a running one with
    /// the devices it had not reached). Must be called inside the tokio runtime.
    pub fn restore(self: &Arc<Self>, jobs: Vec<(u64, Job)>) {
        let mut index = self.write();
        for (seq, job) in jobs {
            let running = !job.status.is_terminal();
            let entry = Arc::new(JobEntry::new(seq, job));
            let id = entry.lock().spec.id.clone();
            index.by_id.insert(id, entry.clone());
            index.order.push(entry.clone());
            self.next_seq.fetch_max(seq + 1, Ordering::Relaxed);
            if running {
                tokio::spawn(runner::run(self.clone(), entry));
            }
        }
    }
}

#[cfg(test)]
mod paging_tests;
#[cfg(test)]
mod tests;
