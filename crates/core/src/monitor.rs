//! Waiting for a job to finish: `GET /jobs/v2/{id}` every poll interval until the job is
//! `completed`, `failed` or `cancelled`, reporting each read job to a progress callback.
//!
//! Right after creation a hub may not know the job yet (404 `JobNotFound`, or 200 with
//! `"status": "unknown"`); that is tolerated for a bounded grace period. Each read has the
//! client's usual retries. Dropping the future stops polling (nothing is cancelled on the hub).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::error::Error;
use crate::jobs::JobClient;
use crate::response::Response;

/// What a progress callback may fail with (the binding passes a JavaScript exception through).
pub type ProgressError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOptions {
    /// Pause between two reads (after a read completes).
    pub poll_interval: Duration,
    /// Bound on the whole wait; `None` waits as long as it takes.
    pub timeout: Option<Duration>,
    /// How long after the wait starts a job may still be unknown to the hub.
    pub not_found_grace: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            poll_interval: Duration::from_secs(1),
            timeout: None,
            not_found_grace: Duration::from_secs(30),
        }
    }
}

/// Why a wait ended without a finished job.
#[derive(Debug)]
pub enum WaitError {
    /// `timeout` passed; `last` is the last job read (if any).
    Timeout {
        limit: Duration,
        last: Option<Box<Response>>,
    },
    /// The hub still reported the job as `unknown` after the grace period.
    NotFound { message: String },
    /// A read failed (after its retries), or the job was still 404 after the grace period.
    Failed(Error),
    /// The progress callback failed; polling stopped.
    Progress(ProgressError),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Timeout { limit, last } => {
                write!(f, "The job did not finish within {} ms", limit.as_millis())?;
                match last.as_deref().and_then(job_status) {
                    Some(status) => write!(f, " (last status: {status})"),
                    None => Ok(()),
                }
            }
            WaitError::NotFound { message } => f.write_str(message),
            WaitError::Failed(e) => fmt::Display::fmt(e, f),
            WaitError::Progress(e) => write!(f, "The progress callback failed: {e}"),
        }
    }
}

impl std::error::Error for WaitError {}

/// The `status` of a job response body, if it has one.
pub fn job_status(response: &Response) -> Option<String> {
    match serde_json::from_slice::<Value>(&response.body).ok()? {
        Value::Object(job) => job.get("status")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `completed`, `failed` and `cancelled` (also spelled `canceled`) end a job.
pub fn is_final_status(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled" | "canceled")
}

fn is_not_found(error: &Error) -> bool {
    error.response().is_some_and(|r| r.status == 404)
}

impl JobClient {
    /// Polls `job_id` until it reaches a final status and returns that read. `on_progress` gets
    /// every read of the job (not the tolerated not-found ones) before the next one starts.
    pub async fn wait_for_job<F, Fut>(
        &self,
        job_id: &str,
        options: &WaitOptions,
        mut on_progress: F,
    ) -> Result<Response, WaitError>
    where
        F: FnMut(Response) -> Fut,
        Fut: Future<Output = Result<(), ProgressError>>,
    {
        let started = Instant::now();
        let mut last: Option<Box<Response>> = None;
        let poll = async {
            loop {
                let in_grace = started.elapsed() < options.not_found_grace;
                match self.get_job(job_id).await {
                    Ok(response) => {
                        let status = job_status(&response);
                        if status.as_deref() == Some("unknown") {
                            if !in_grace {
                                return Err(WaitError::NotFound {
                                    message: format!(
                                        "The hub still reports job '{job_id}' as unknown after {} ms",
                                        options.not_found_grace.as_millis()
                                    ),
                                });
                            }
                        } else {
                            last = Some(Box::new(response.clone()));
                            on_progress(response.clone())
                                .await
                                .map_err(WaitError::Progress)?;
                            if status.as_deref().is_some_and(is_final_status) {
                                return Ok(response);
                            }
                        }
                    }
                    Err(e) if in_grace && is_not_found(&e) => {}
                    Err(e) => return Err(WaitError::Failed(e)),
                }
                tokio::time::sleep(options.poll_interval).await;
            }
        };
        match options.timeout {
            None => poll.await,
            Some(limit) => match tokio::time::timeout(limit, poll).await {
                Ok(result) => result,
                Err(_) => Err(WaitError::Timeout {
                    limit,
                    last: last.take(),
                }),
            },
        }
    }
}
