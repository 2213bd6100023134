//! Fleet operations: one method or twin job over any number of devices.
//!
//! A hub limits a job's `queryCondition` to about 8 KB and runs few jobs at once (S1: one).
//! [`JobClient::run_fleet_job`] splits an explicit device list into `deviceId IN [...]` jobs
//! that fit the limit, optionally in waves (a canary batch, then growing batches, stopping when
//! a wave fails too often), runs them within a concurrent-job budget, waits for a job slot when
//! the hub answers 429 `ThrottlingMaxActiveJobCountExceeded`, and reports one combined progress.

mod options;
mod plan;

pub use options::{FleetRequest, Target};
pub use plan::{in_condition, plan, split_by_condition_size, wave_failed, wave_sizes, PlannedJob};

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::devices::PageRequest;
use crate::error::Error;
use crate::jobs::{job_matches, JobClient};
use crate::monitor::{is_final_status, ProgressError};
use crate::request::{self, JobRequest};
use crate::time::{format_iso8601_millis, unix_millis};

/// The condition size the splitter aims for by default: below the hub's limit (about 8,200
/// characters) with room to spare.
pub const DEFAULT_MAX_CONDITION_BYTES: usize = 8000;
/// Hub job ids: 1 to 64 ASCII letters, digits and `-`.
pub const MAX_JOB_ID_LEN: usize = 64;
/// Pause between two reads of the running jobs unless `pollIntervalMs` says otherwise. Each
/// read is one job operation per running job; S1 allows 100 a minute for the whole hub.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The longest pause between two attempts to get a busy job slot.
pub const MAX_SLOT_DELAY: Duration = Duration::from_secs(30);
/// Devices per page when a query condition is resolved to a device list (the hub's maximum).
const DEVICE_PAGE_SIZE: u32 = 1000;
/// How long after its creation a job may still be unknown to the hub (404), as `waitForJob`.
const NOT_FOUND_GRACE: Duration = Duration::from_secs(30);

/// Device counts of one job, from its `deviceJobStatistics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub device_count: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub running: u64,
    pub pending: u64,
}

impl JobCounts {
    fn from_job(job: &Value) -> JobCounts {
        let stats = &job["deviceJobStatistics"];
        let n = |k: &str| stats[k].as_u64().unwrap_or(0);
        JobCounts {
            device_count: n("deviceCount"),
            succeeded: n("succeededCount"),
            failed: n("failedCount"),
            running: n("runningCount"),
            pending: n("pendingCount"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    WaitingForSlot,
    Running,
    Done,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::WaitingForSlot => "waitingForSlot",
            Phase::Running => "running",
            Phase::Done => "done",
        }
    }
}

/// The combined state of a fleet call, as `onProgress` gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetProgress {
    pub phase: Phase,
    /// 1-based.
    pub wave: usize,
    pub wave_count: usize,
    /// Hub jobs created so far.
    pub job_ids: Vec<String>,
    pub device_count: u64,
    pub succeeded_count: u64,
    pub failed_count: u64,
    pub running_count: u64,
    pub pending_count: u64,
    pub not_attempted_count: u64,
}

impl FleetProgress {
    pub fn to_json(&self) -> String {
        json!({
            "phase": self.phase.name(),
            "wave": self.wave,
            "waveCount": self.wave_count,
            "jobIds": self.job_ids,
            "deviceCount": self.device_count,
            "succeededCount": self.succeeded_count,
            "failedCount": self.failed_count,
            "runningCount": self.running_count,
            "pendingCount": self.pending_count,
            "notAttemptedCount": self.not_attempted_count,
        })
        .to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveOutcome {
    pub wave: usize,
    pub job_ids: Vec<String>,
    pub device_count: u64,
    pub succeeded: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FleetOutcome {
    /// `false`: a wave passed the failure threshold and later waves were not run.
    pub completed: bool,
    pub job_ids: Vec<String>,
    pub device_count: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub not_attempted: Vec<String>,
    pub waves: Vec<WaveOutcome>,
}

impl FleetOutcome {
    pub fn to_json(&self) -> String {
        let waves: Vec<Value> = self
            .waves
            .iter()
            .map(|w| {
                json!({
                    "wave": w.wave,
                    "jobIds": w.job_ids,
                    "deviceCount": w.device_count,
                    "succeededCount": w.succeeded,
                    "failedCount": w.failed,
                })
            })
            .collect();
        json!({
            "status": if self.completed { "completed" } else { "stopped" },
            "jobIds": self.job_ids,
            "deviceCount": self.device_count,
            "succeededCount": self.succeeded,
            "failedCount": self.failed,
            "notAttempted": self.not_attempted,
            "waves": waves,
        })
        .to_string()
    }
}

/// 429 `ThrottlingMaxActiveJobCountExceeded`: every job slot of the hub is taken.
pub fn is_slot_busy(error: &Error) -> bool {
    error.response().is_some_and(|r| r.status == 429)
        && error.code() == Some("ThrottlingMaxActiveJobCountExceeded")
}

#[derive(Debug)]
pub enum FleetError {
    Failed(Error),
    /// `timeout` passed; `progress` is the last state reported.
    Timeout {
        limit: Duration,
        progress: Option<Box<FleetProgress>>,
    },
    Progress(ProgressError),
}

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetError::Failed(e) => std::fmt::Display::fmt(e, f),
            FleetError::Timeout { limit, progress } => {
                write!(
                    f,
                    "The fleet job did not finish within {} ms",
                    limit.as_millis()
                )?;
                match progress {
                    Some(p) => write!(
                        f,
                        " ({} of {} devices done, {} not attempted)",
                        p.succeeded_count + p.failed_count,
                        p.device_count,
                        p.not_attempted_count
                    ),
                    None => Ok(()),
                }
            }
            FleetError::Progress(e) => write!(f, "The progress callback failed: {e}"),
        }
    }
}

impl std::error::Error for FleetError {}

impl From<Error> for FleetError {
    fn from(e: Error) -> Self {
        FleetError::Failed(e)
    }
}

/// A created hub job and what was last read of it.
struct Started {
    job_id: String,
    planned_devices: u64,
    counts: Option<JobCounts>,
    finished: bool,
    created: tokio::time::Instant,
}

/// Everything [`JobClient::run_fleet_job`] tracks between two progress reports.
struct Tracker {
    wave_count: usize,
    device_count: Option<u64>,
    started: Vec<Started>,
    not_attempted: u64,
}

impl Tracker {
    fn progress(&self, phase: Phase, wave: usize) -> FleetProgress {
        let mut p = FleetProgress {
            phase,
            wave,
            wave_count: self.wave_count,
            job_ids: self.started.iter().map(|s| s.job_id.clone()).collect(),
            device_count: 0,
            succeeded_count: 0,
            failed_count: 0,
            running_count: 0,
            pending_count: 0,
            not_attempted_count: self.not_attempted,
        };
        let mut counted = 0;
        for s in &self.started {
            let c = s.counts.unwrap_or(JobCounts {
                device_count: s.planned_devices,
                pending: s.planned_devices,
                ..JobCounts::default()
            });
            counted += c.device_count;
            p.succeeded_count += c.succeeded;
            p.failed_count += c.failed;
            if !s.finished {
                p.running_count += c.running;
                p.pending_count += c.pending;
            }
        }
        p.device_count = self.device_count.unwrap_or(counted);
        p
    }
}

impl JobClient {
    /// Runs `request` to its end: every wave's jobs created (within `max_concurrent_jobs`,
    /// waiting for a slot when the hub has none) and read until finished. `on_progress` gets
    /// the combined state after every round of reads.
    pub async fn run_fleet_job<F, Fut>(
        &self,
        request: &FleetRequest,
        mut on_progress: F,
    ) -> Result<FleetOutcome, FleetError>
    where
        F: FnMut(FleetProgress) -> Fut,
        Fut: Future<Output = Result<(), ProgressError>>,
    {
        let mut last: Option<Box<FleetProgress>> = None;
        let run = async {
            let target = match (&request.target, request.waves.is_empty()) {
                // Waves need the device list: resolve the condition first.
                (Target::Query(condition), false) => {
                    Target::Devices(self.resolve_devices(condition).await?)
                }
                (target, _) => target.clone(),
            };
            if matches!(&target, Target::Devices(ids) if ids.is_empty()) {
                return Ok(FleetOutcome {
                    completed: true,
                    job_ids: Vec::new(),
                    device_count: 0,
                    succeeded: 0,
                    failed: 0,
                    not_attempted: Vec::new(),
                    waves: Vec::new(),
                });
            }
            let waves = plan(
                &request.job_id,
                &target,
                &request.waves,
                request.max_condition_bytes,
            )?;
            let start_time = request
                .start_time
                .clone()
                .unwrap_or_else(|| format_iso8601_millis(unix_millis(SystemTime::now()) as i64));
            let mut tracker = Tracker {
                wave_count: waves.len(),
                device_count: match &target {
                    Target::Devices(ids) => Some(ids.len() as u64),
                    Target::Query(_) => None,
                },
                started: Vec::new(),
                not_attempted: waves.iter().flatten().map(|j| j.devices.len() as u64).sum(),
            };
            let mut outcomes = Vec::new();
            let mut stopped_after = None;
            for (w, jobs) in waves.iter().enumerate() {
                let first = tracker.started.len();
                let mut queue: VecDeque<&PlannedJob> = jobs.iter().collect();
                let mut slot_delay = request.poll_interval;
                loop {
                    let mut slot_busy = false;
                    let active = tracker.started[first..]
                        .iter()
                        .filter(|s| !s.finished)
                        .count();
                    let mut free = request.max_concurrent_jobs.saturating_sub(active);
                    while free > 0 {
                        let Some(&job) = queue.front() else { break };
                        let hub_job = JobRequest {
                            job_id: job.job_id.clone(),
                            job_id_json: options::raw("jobId", &Value::String(job.job_id.clone()))?,
                            kind: request.kind.clone(),
                            start_time: Some(start_time.clone()),
                            max_execution_time_json: Some(options::raw(
                                "maxExecutionTimeInSeconds",
                                &json!(request.max_execution_time_in_seconds),
                            )?),
                            query_condition: job.query_condition.clone(),
                        };
                        if !self
                            .create_fleet_job(&hub_job, request.wait_for_job_slot)
                            .await?
                        {
                            slot_busy = true;
                            break;
                        }
                        queue.pop_front();
                        free -= 1;
                        slot_delay = request.poll_interval;
                        tracker.not_attempted -= job.devices.len() as u64;
                        tracker.started.push(Started {
                            job_id: job.job_id.clone(),
                            planned_devices: job.devices.len() as u64,
                            counts: None,
                            finished: false,
                            created: tokio::time::Instant::now(),
                        });
                    }
                    let phase = if slot_busy {
                        Phase::WaitingForSlot
                    } else {
                        Phase::Running
                    };
                    let report = tracker.progress(phase, w + 1);
                    last = Some(Box::new(report.clone()));
                    on_progress(report).await.map_err(FleetError::Progress)?;
                    let waiting = tracker.started[first..].iter().any(|s| !s.finished);
                    if queue.is_empty() && !waiting {
                        break;
                    }
                    // Waiting for a slot held by another client's job backs off; waiting for
                    // our own jobs reads them every poll interval.
                    let pause = if slot_busy && !waiting {
                        let d = slot_delay;
                        slot_delay =
                            (slot_delay * 2).min(MAX_SLOT_DELAY.max(request.poll_interval));
                        d
                    } else {
                        request.poll_interval
                    };
                    tokio::time::sleep(pause).await;
                    self.read_unfinished(&mut tracker.started[first..]).await?;
                }
                let wave_jobs = &tracker.started[first..];
                let outcome = WaveOutcome {
                    wave: w + 1,
                    job_ids: wave_jobs.iter().map(|s| s.job_id.clone()).collect(),
                    device_count: wave_jobs
                        .iter()
                        .map(|s| match (tracker.device_count, s.counts) {
                            (Some(_), _) | (None, None) => s.planned_devices,
                            (None, Some(c)) => c.device_count,
                        })
                        .sum(),
                    succeeded: wave_jobs
                        .iter()
                        .filter_map(|s| s.counts)
                        .map(|c| c.succeeded)
                        .sum(),
                    failed: wave_jobs
                        .iter()
                        .filter_map(|s| s.counts)
                        .map(|c| c.failed)
                        .sum(),
                };
                let stop =
                    wave_failed(outcome.succeeded, outcome.failed, request.failure_threshold);
                outcomes.push(outcome);
                if stop && w + 1 < waves.len() {
                    stopped_after = Some(w + 1);
                    break;
                }
            }
            let done = tracker.progress(Phase::Done, outcomes.len());
            last = Some(Box::new(done.clone()));
            on_progress(done.clone())
                .await
                .map_err(FleetError::Progress)?;
            let not_attempted = match stopped_after {
                Some(w) => waves[w..]
                    .iter()
                    .flatten()
                    .flat_map(|j| j.devices.iter().cloned())
                    .collect(),
                None => Vec::new(),
            };
            Ok(FleetOutcome {
                completed: stopped_after.is_none(),
                job_ids: done.job_ids,
                device_count: done.device_count,
                succeeded: done.succeeded_count,
                failed: done.failed_count,
                not_attempted,
                waves: outcomes,
            })
        };
        match request.timeout {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(result) => result,
                Err(_) => Err(FleetError::Timeout {
                    limit,
                    progress: last.take(),
                }),
            },
        }
    }

    /// Reads every unfinished job of `started` once, recording its counts and whether it ended.
    async fn read_unfinished(&self, started: &mut [Started]) -> Result<(), Error> {
        for s in started.iter_mut().filter(|s| !s.finished) {
            let response = match self.get_job(&s.job_id).await {
                Ok(response) => response,
                Err(e)
                    if s.counts.is_none()
                        && e.response().is_some_and(|r| r.status == 404)
                        && s.created.elapsed() < NOT_FOUND_GRACE =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let job: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            s.counts = Some(JobCounts::from_job(&job));
            s.finished = job["status"].as_str().is_some_and(is_final_status);
        }
        Ok(())
    }

    /// Creates one hub job. `Ok(false)`: every job slot is busy (only when `wait_for_slot`).
    /// A PUT whose first attempt may have created the job (lost response) and whose retry gets
    /// 409, or 429 because that very job now holds the slot, reads the job back: the job we
    /// asked for counts as created, so nothing is duplicated or lost.
    async fn create_fleet_job(&self, job: &JobRequest, wait_for_slot: bool) -> Result<bool, Error> {
        let prepared = request::schedule_job(job, self.api_version());
        let outcome = if wait_for_slot {
            self.pipeline().execute_until(&prepared, is_slot_busy).await
        } else {
            self.pipeline().execute(&prepared).await
        };
        let error = match outcome.result {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        let conflict = error.response().is_some_and(|r| r.status == 409);
        if outcome.ambiguous && (conflict || is_slot_busy(&error)) {
            match self.get_job(&job.job_id).await {
                Ok(existing) if job_matches(job, &existing) => return Ok(true),
                Ok(_) => return Err(error),
                Err(e) if e.response().is_some_and(|r| r.status == 404) => {}
                Err(e) => return Err(e),
            }
        }
        if wait_for_slot && is_slot_busy(&error) {
            return Ok(false);
        }
        Err(error)
    }

    /// The ids of every device matching `condition` (`*`: all), one query page at a time.
    async fn resolve_devices(&self, condition: &str) -> Result<Vec<String>, Error> {
        let query = if condition.trim() == "*" {
            "SELECT * FROM devices".to_string()
        } else {
            format!("SELECT * FROM devices WHERE {condition}")
        };
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        let mut page = PageRequest {
            max_item_count: Some(DEVICE_PAGE_SIZE),
            continuation_token: None,
        };
        loop {
            let response = self.query_devices(&query, &page).await?;
            let items: Vec<Value> = serde_json::from_slice(&response.body).map_err(|_| {
                Error::format(
                    "The hub answered a device query with something other than a JSON array",
                )
            })?;
            for id in items.iter().filter_map(|d| d["deviceId"].as_str()) {
                if seen.insert(id.to_string()) {
                    ids.push(id.to_string());
                }
            }
            match response
                .header("x-ms-continuation")
                .filter(|t| !t.is_empty())
            {
                Some(token) => page.continuation_token = Some(token.to_string()),
                None => return Ok(ids),
            }
        }
    }
}
