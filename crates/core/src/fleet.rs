//! Fleet operations: one method or twin job over any number of devices.
//!
//! A hub limits a job's `queryCondition` to about 8 KB and runs few jobs at once (S1: one).
//! [`JobClient::run_fleet_job`] splits an explicit device list into `deviceId IN [...]` jobs
//! that fit the limit, optionally in waves (a canary batch, then growing batches, stopping when
//! a wave fails too often), runs them within a concurrent-job budget, waits for a job slot when
//! the hub answers 429 `ThrottlingMaxActiveJobCountExceeded`, and reports one combined progress.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use crate::devices::PageRequest;
use crate::error::Error;
use crate::jobs::{job_matches, JobClient};
use crate::monitor::{is_final_status, ProgressError};
use crate::request::{self, CloudToDeviceMethod, JobKind, JobRequest};
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
const DEFAULT_MAX_EXECUTION_SECONDS: u64 = 3600;

/// Which devices a fleet job targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Devices(Vec<String>),
    /// A WHERE clause (`*` for every device).
    Query(String),
}

/// A validated fleet call.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRequest {
    /// The job to run on every device.
    pub kind: JobKind,
    pub target: Target,
    /// Base id; hub jobs are `<base>-<wave>-<part>` unless there is just one.
    pub job_id: String,
    /// ISO-8601; `None` means now.
    pub start_time: Option<String>,
    pub max_execution_time_in_seconds: u64,
    /// Devices per wave; the last size repeats. Empty: one wave with every device.
    pub waves: Vec<usize>,
    /// Stop after a wave whose failed / attempted ratio exceeds this.
    pub failure_threshold: Option<f64>,
    pub max_concurrent_jobs: usize,
    pub wait_for_job_slot: bool,
    pub poll_interval: Duration,
    pub timeout: Option<Duration>,
    pub max_condition_bytes: usize,
}

fn invalid(method: &str, message: impl std::fmt::Display) -> Error {
    Error::argument(format!("{method}: {message}"))
}

impl FleetRequest {
    /// Parses `{"method": {...}} | {"patch": {...}}` plus `"options": {...}` as the binding
    /// serializes them (`method` names the calling function in messages). A twin patch without
    /// `etag` gets `"etag": "*"`: the service takes only a forced update in a job.
    pub fn from_json(method: &str, text: &str) -> Result<FleetRequest, Error> {
        let spec: Value = serde_json::from_str(text).map_err(|e| invalid(method, e))?;
        let kind = match (spec.get("method"), spec.get("patch")) {
            (Some(m), None) => JobKind::DeviceMethod(method_params(method, m)?),
            (None, Some(Value::Object(patch))) => {
                let mut patch = patch.clone();
                if !patch.contains_key("etag") {
                    patch.insert("etag".into(), json!("*"));
                }
                JobKind::TwinUpdate {
                    patch_json: Value::Object(patch).to_string(),
                }
            }
            (None, Some(_)) => return Err(invalid(method, "patch must be an object")),
            _ => return Err(invalid(method, "the job description is missing")),
        };
        let empty = Map::new();
        let o = match spec.get("options") {
            Some(Value::Object(o)) => o,
            None | Some(Value::Null) => &empty,
            Some(_) => return Err(invalid(method, "options must be an object")),
        };
        let opt = |key: &str| o.get(key).filter(|v| !v.is_null());
        let target = match (opt("deviceIds"), opt("queryCondition")) {
            (Some(Value::Array(ids)), None) => {
                let mut seen = HashSet::new();
                let mut list = Vec::with_capacity(ids.len());
                for id in ids {
                    match id.as_str() {
                        Some(s) if !s.is_empty() => {
                            if seen.insert(s) {
                                list.push(s.to_string());
                            }
                        }
                        _ => {
                            return Err(invalid(
                                method,
                                "options.deviceIds must hold non-empty strings only",
                            ))
                        }
                    }
                }
                if list.is_empty() {
                    return Err(invalid(method, "options.deviceIds is empty"));
                }
                Target::Devices(list)
            }
            (Some(_), None) => {
                return Err(invalid(method, "options.deviceIds must be an array"));
            }
            (None, Some(Value::String(q))) if !q.trim().is_empty() => Target::Query(q.clone()),
            (None, Some(_)) => {
                return Err(invalid(
                    method,
                    "options.queryCondition must be a non-empty string",
                ))
            }
            _ => {
                return Err(invalid(
                    method,
                    "exactly one of options.deviceIds and options.queryCondition is required",
                ))
            }
        };
        let job_id = match opt("jobId") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(invalid(method, "options.jobId must be a string")),
        };
        check_job_id(method, &job_id)?;
        let start_time = match opt("startTime") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(invalid(
                    method,
                    "options.startTime must be a Date or an ISO 8601 string",
                ))
            }
        };
        let number = |key: &str| -> Result<Option<f64>, Error> {
            match opt(key) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .map(Some)
                    .ok_or_else(|| {
                        invalid(
                            method,
                            format!("options.{key} must be a non-negative number"),
                        )
                    }),
            }
        };
        let positive_integer = |key: &str| -> Result<Option<u64>, Error> {
            match number(key)? {
                None => Ok(None),
                Some(n) if n >= 1.0 && n.fract() == 0.0 => Ok(Some(n as u64)),
                Some(_) => Err(invalid(
                    method,
                    format!("options.{key} must be a positive integer"),
                )),
            }
        };
        let waves = match opt("waves") {
            None => Vec::new(),
            Some(Value::Array(sizes)) if !sizes.is_empty() => sizes
                .iter()
                .map(|s| {
                    s.as_u64()
                        .filter(|n| *n >= 1)
                        .map(|n| n as usize)
                        .ok_or_else(|| invalid(method, "options.waves must hold positive integers"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(
                    method,
                    "options.waves must be a non-empty array of positive integers",
                ))
            }
        };
        let failure_threshold = number("failureThreshold")?;
        if failure_threshold.is_some_and(|t| t > 1.0) {
            return Err(invalid(
                method,
                "options.failureThreshold must be between 0 and 1",
            ));
        }
        let wait_for_job_slot = match opt("waitForJobSlot") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid(method, "options.waitForJobSlot must be a boolean")),
        };
        let millis = |key: &str| -> Result<Option<Duration>, Error> {
            Ok(number(key)?.map(|ms| Duration::from_secs_f64(ms / 1000.0)))
        };
        let max_condition_bytes = positive_integer("maxConditionLength")?
            .map_or(DEFAULT_MAX_CONDITION_BYTES, |n| n as usize);
        Ok(FleetRequest {
            kind,
            target,
            job_id,
            start_time,
            max_execution_time_in_seconds: positive_integer("maxExecutionTimeInSeconds")?
                .unwrap_or(DEFAULT_MAX_EXECUTION_SECONDS),
            waves,
            failure_threshold,
            max_concurrent_jobs: positive_integer("maxConcurrentJobs")?.unwrap_or(1) as usize,
            wait_for_job_slot,
            poll_interval: millis("pollIntervalMs")?
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_POLL_INTERVAL),
            // 0 (or absent): as long as it takes.
            timeout: millis("timeoutMs")?.filter(|d| !d.is_zero()),
            max_condition_bytes,
        })
    }
}

fn method_params(method: &str, m: &Value) -> Result<CloudToDeviceMethod, Error> {
    let Value::Object(m) = m else {
        return Err(invalid(method, "methodParams must be an object"));
    };
    let method_name_json = match m.get("methodName") {
        Some(name @ Value::String(s)) if !s.is_empty() => name.to_string(),
        _ => {
            return Err(invalid(
                method,
                "methodParams.methodName must be a non-empty string",
            ))
        }
    };
    let present = |key: &str| m.get(key).filter(|v| !v.is_null()).map(Value::to_string);
    Ok(CloudToDeviceMethod {
        method_name_json,
        payload_json: present("payload"),
        response_timeout_json: present("responseTimeoutInSeconds"),
        connect_timeout_json: present("connectTimeoutInSeconds"),
    })
}

fn check_job_id(method: &str, id: &str) -> Result<(), Error> {
    if id.is_empty()
        || id.len() > MAX_JOB_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(invalid(
            method,
            format!(
                "options.jobId {id:?} must be 1 to {MAX_JOB_ID_LEN} ASCII letters, digits or '-'"
            ),
        ));
    }
    Ok(())
}

/// One hub job of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedJob {
    pub job_id: String,
    pub query_condition: String,
    /// The devices it targets (empty when the target is a bare query condition).
    pub devices: Vec<String>,
}

/// Device counts per wave: `waves` with its last size repeated until `total` is covered.
pub fn wave_sizes(total: usize, waves: &[usize]) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = total;
    let mut i = 0;
    while left > 0 {
        let size = waves
            .get(i)
            .or(waves.last())
            .copied()
            .unwrap_or(left)
            .max(1);
        sizes.push(size.min(left));
        left -= size.min(left);
        i += 1;
    }
    sizes
}

const IN_PREFIX: &str = "deviceId IN [";

/// `deviceId IN ['a','b']`, each id a query-language string literal.
pub fn in_condition(ids: &[String]) -> String {
    let literals: Vec<String> = ids
        .iter()
        .map(|id| crate::devices::query_string_literal(id))
        .collect();
    format!("{IN_PREFIX}{}]", literals.join(","))
}

/// Splits `ids` into consecutive groups whose `deviceId IN [...]` condition has at most
/// `limit` bytes.
pub fn split_by_condition_size(ids: &[String], limit: usize) -> Result<Vec<Vec<String>>, Error> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = IN_PREFIX.len() + 1;
    for id in ids {
        let literal = crate::devices::query_string_literal(id).len();
        if IN_PREFIX.len() + 1 + literal > limit {
            return Err(Error::argument(format!(
                "The device id {id:?} alone makes a condition longer than {limit} bytes"
            )));
        }
        let added = literal + usize::from(!current.is_empty());
        if size + added > limit {
            groups.push(std::mem::take(&mut current));
            size = IN_PREFIX.len() + 1;
        }
        size += literal + usize::from(!current.is_empty());
        current.push(id.clone());
    }
    if !current.is_empty() {
        groups.push(current);
    }
    Ok(groups)
}

/// The hub jobs, wave by wave. Ids are `<base>-<wave>-<part>` (1-based) unless the whole plan
/// is one job, which gets the base id itself.
pub fn plan(
    base: &str,
    target: &Target,
    waves: &[usize],
    limit: usize,
) -> Result<Vec<Vec<PlannedJob>>, Error> {
    let ids = match target {
        Target::Query(condition) => {
            return Ok(vec![vec![PlannedJob {
                job_id: base.to_string(),
                query_condition: condition.clone(),
                devices: Vec::new(),
            }]])
        }
        Target::Devices(ids) => ids,
    };
    let mut groups_per_wave = Vec::new();
    let mut start = 0;
    for size in wave_sizes(ids.len(), waves) {
        groups_per_wave.push(split_by_condition_size(&ids[start..start + size], limit)?);
        start += size;
    }
    let single = groups_per_wave.len() == 1 && groups_per_wave[0].len() == 1;
    let mut planned = Vec::new();
    for (w, groups) in groups_per_wave.into_iter().enumerate() {
        let mut jobs = Vec::new();
        for (p, devices) in groups.into_iter().enumerate() {
            let job_id = if single {
                base.to_string()
            } else {
                format!("{base}-{}-{}", w + 1, p + 1)
            };
            if job_id.len() > MAX_JOB_ID_LEN {
                return Err(Error::argument(format!(
                    "The job id {job_id:?} derived from options.jobId is longer than {MAX_JOB_ID_LEN} characters: use a shorter jobId"
                )));
            }
            jobs.push(PlannedJob {
                job_id,
                query_condition: in_condition(&devices),
                devices,
            });
        }
        planned.push(jobs);
    }
    Ok(planned)
}

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

/// Whether a wave's failed / attempted ratio passes `threshold`.
pub fn wave_failed(succeeded: u64, failed: u64, threshold: Option<f64>) -> bool {
    let attempted = succeeded + failed;
    match threshold {
        Some(t) if attempted > 0 => failed as f64 / attempted as f64 > t,
        _ => false,
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
                            job_id_json: Value::String(job.job_id.clone()).to_string(),
                            kind: request.kind.clone(),
                            start_time: Some(start_time.clone()),
                            max_execution_time_json: Some(
                                request.max_execution_time_in_seconds.to_string(),
                            ),
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
                    for s in tracker.started[first..].iter_mut().filter(|s| !s.finished) {
                        let job: Value =
                            serde_json::from_slice(&self.get_job(&s.job_id).await?.body)
                                .unwrap_or(Value::Null);
                        s.counts = Some(JobCounts::from_job(&job));
                        s.finished = job["status"].as_str().is_some_and(is_final_status);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("device-{i:05}")).collect()
    }

    #[test]
    fn wave_sizes_repeat_the_last() {
        assert_eq!(wave_sizes(25, &[1, 4, 10]), vec![1, 4, 10, 10]);
        assert_eq!(wave_sizes(3, &[1, 4, 10]), vec![1, 2]);
        assert_eq!(wave_sizes(7, &[]), vec![7]);
        assert_eq!(wave_sizes(0, &[5]), Vec::<usize>::new());
    }

    #[test]
    fn conditions_quote_and_escape_ids() {
        let c = in_condition(&["a".into(), "o'brien".into(), "back\\slash".into()]);
        assert_eq!(c, r"deviceId IN ['a','o\'brien','back\\slash']");
    }

    #[test]
    fn splitting_fits_the_limit_and_keeps_every_id_once() {
        let all = ids(4000);
        let groups = split_by_condition_size(&all, 8000).unwrap();
        assert!(groups.len() >= 7, "{}", groups.len());
        for g in &groups {
            let len = in_condition(g).len();
            assert!(len <= 8000, "{len}");
        }
        // Greedy: no group could take the next id.
        for pair in groups.windows(2) {
            let mut more = pair[0].clone();
            more.push(pair[1][0].clone());
            assert!(in_condition(&more).len() > 8000);
        }
        let flat: Vec<String> = groups.concat();
        assert_eq!(flat, all);
        // An id that cannot fit at all is an error, not a silent drop.
        assert!(split_by_condition_size(&["x".repeat(100)], 50).is_err());
        // Exactly at the limit.
        let one = vec!["abc".to_string()];
        assert_eq!(
            split_by_condition_size(&one, in_condition(&one).len())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn plan_names_jobs_from_the_base_id() {
        let target = Target::Devices(ids(30));
        let single = plan("base", &target, &[], 8000).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0][0].job_id, "base");
        let waves = plan("base", &target, &[1, 9, 10], 100).unwrap();
        assert_eq!(waves.len(), 4);
        assert_eq!(waves[0].len(), 1);
        assert_eq!(waves[0][0].job_id, "base-1-1");
        assert!(waves[1].len() > 1, "100 bytes hold fewer than 9 ids");
        assert_eq!(waves[1][1].job_id, "base-2-2");
        let every: Vec<&String> = waves.iter().flatten().flat_map(|j| &j.devices).collect();
        assert_eq!(every.len(), 30);
        assert!(plan(&"b".repeat(62), &target, &[1], 8000).is_err());
        let q = plan("q", &Target::Query("tags.a = 1".into()), &[], 8000).unwrap();
        assert_eq!(q[0][0].query_condition, "tags.a = 1");
    }

    #[test]
    fn threshold() {
        assert!(!wave_failed(9, 1, Some(0.1)));
        assert!(wave_failed(8, 2, Some(0.1)));
        assert!(!wave_failed(0, 0, Some(0.0)));
        assert!(!wave_failed(0, 5, None));
    }

    #[test]
    fn parsing_defaults_the_etag_and_validates() {
        let r = FleetRequest::from_json(
            "runTwinUpdateJob",
            r#"{"patch":{"tags":{"a":1}},"options":{"deviceIds":["a","b","a"],"jobId":"j"}}"#,
        )
        .unwrap();
        assert_eq!(
            r.kind,
            JobKind::TwinUpdate {
                patch_json: r#"{"tags":{"a":1},"etag":"*"}"#.into()
            }
        );
        assert_eq!(r.target, Target::Devices(vec!["a".into(), "b".into()]));
        assert_eq!(
            (r.max_concurrent_jobs, r.wait_for_job_slot, r.poll_interval),
            (1, true, DEFAULT_POLL_INTERVAL)
        );
        let kept = FleetRequest::from_json(
            "runTwinUpdateJob",
            r#"{"patch":{"etag":"AAAA","tags":{}},"options":{"queryCondition":"*","jobId":"j"}}"#,
        )
        .unwrap();
        assert!(
            matches!(kept.kind, JobKind::TwinUpdate { patch_json } if patch_json.contains("AAAA"))
        );
        for bad in [
            r#"{"method":{"methodName":""},"options":{"deviceIds":["a"],"jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":[],"jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":[1],"jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"queryCondition":"*","jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"jobId":"j"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"jobId":"a b"}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"jobId":"j","waves":[0]}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"jobId":"j","failureThreshold":2}}"#,
            r#"{"method":{"methodName":"m"},"options":{"deviceIds":["a"],"jobId":"j","maxConcurrentJobs":0}}"#,
            r#"{"patch":[],"options":{"deviceIds":["a"],"jobId":"j"}}"#,
        ] {
            let err = FleetRequest::from_json("runDeviceMethodJob", bad).unwrap_err();
            assert_eq!(err.class(), crate::ErrorClass::ArgumentError, "{bad}");
            assert!(err.to_string().starts_with("runDeviceMethodJob: "), "{err}");
        }
    }
}
