use std::sync::{Arc, Mutex};
use std::time::Duration;

use iothub_jobs_core::monitor::{job_status, ProgressError};
use iothub_jobs_core::{ErrorClass, JobClient, WaitError, WaitOptions};

use crate::support::{self, response, Action};

fn job(status: &str) -> Action {
    support::ok_json(&format!(
        r#"{{"jobId":"j1","status":"{status}","deviceJobStatistics":{{"deviceCount":2}}}}"#
    ))
}

fn not_found() -> Action {
    Action::Respond(response(
        404,
        "Not Found",
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("iothub-errorcode", "JobNotFound"),
        ],
        r#"{"Message":"ErrorCode:JobNotFound;Job j1 not found"}"#,
    ))
}

fn options(timeout: Option<u64>, grace: u64) -> WaitOptions {
    WaitOptions {
        poll_interval: Duration::from_millis(5),
        timeout: timeout.map(Duration::from_millis),
        not_found_grace: Duration::from_millis(grace),
    }
}

async fn start(handler: support::Handler) -> (support::TestServer, JobClient) {
    let server = support::start(handler).await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    (server, client)
}

type Seen = Arc<Mutex<Vec<String>>>;

fn recorder(
    seen: &Seen,
) -> impl FnMut(iothub_jobs_core::Response) -> std::future::Ready<Result<(), ProgressError>> {
    let seen = seen.clone();
    move |r| {
        seen.lock()
            .unwrap()
            .push(job_status(&r).unwrap_or_default());
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn polls_through_not_found_and_unknown_until_final() {
    let (server, client) = start(Arc::new(|_, n| match n {
        0 => not_found(),
        1 => job("unknown"),
        2 => job("queued"),
        3 | 4 => job("running"),
        _ => job("completed"),
    }))
    .await;
    let seen: Seen = Arc::default();
    let done = client
        .wait_for_job("j1", &options(Some(10_000), 10_000), recorder(&seen))
        .await
        .unwrap();
    assert_eq!(job_status(&done).as_deref(), Some("completed"));
    // Not-found and unknown reads are not progress.
    assert_eq!(
        *seen.lock().unwrap(),
        ["queued", "running", "running", "completed"]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 6);
    assert!(requests
        .iter()
        .all(|r| r.method == "GET" && r.target == "/jobs/v2/j1?api-version=2021-04-12"));
}

#[tokio::test]
async fn failed_and_cancelled_are_final_too() {
    for status in ["failed", "cancelled"] {
        let (_server, client) = start(Arc::new(move |_, _| job(status))).await;
        let done = client
            .wait_for_job("j1", &options(None, 0), recorder(&Arc::default()))
            .await
            .unwrap();
        assert_eq!(job_status(&done).as_deref(), Some(status));
    }
}

#[tokio::test]
async fn not_found_after_the_grace_period_fails() {
    let (server, client) = start(Arc::new(|_, _| not_found())).await;
    let err = client
        .wait_for_job("j1", &options(Some(10_000), 30), recorder(&Arc::default()))
        .await
        .unwrap_err();
    match err {
        WaitError::Failed(e) => assert_eq!(e.class(), ErrorClass::JobNotFoundError),
        other => panic!("{other:?}"),
    }
    assert!(
        server.requests().len() >= 2,
        "polled during the grace period"
    );

    let (_server, client) = start(Arc::new(|_, _| job("unknown"))).await;
    let err = client
        .wait_for_job("j1", &options(Some(10_000), 0), recorder(&Arc::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, WaitError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn timeout_carries_the_last_job() {
    let (_server, client) = start(Arc::new(|_, _| job("running"))).await;
    let seen: Seen = Arc::default();
    let started = std::time::Instant::now();
    let err = client
        .wait_for_job("j1", &options(Some(150), 0), recorder(&seen))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &err {
        WaitError::Timeout { limit, last } => {
            assert_eq!(*limit, Duration::from_millis(150));
            let last = last.as_deref().expect("a job was read");
            assert_eq!(job_status(last).as_deref(), Some("running"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "The job did not finish within 150 ms (last status: running)"
    );
    assert!(!seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_progress_callback_stops_polling() {
    let (server, client) = start(Arc::new(|_, _| job("running"))).await;
    let err = client
        .wait_for_job("j1", &options(None, 0), |_| async {
            Err::<(), ProgressError>("callback threw".into())
        })
        .await
        .unwrap_err();
    assert!(matches!(&err, WaitError::Progress(e) if e.to_string() == "callback threw"));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn other_errors_end_the_wait_at_once() {
    let (server, client) = start(Arc::new(|_, _| {
        Action::Respond(support::json(401, "Unauthorized", "{}"))
    }))
    .await;
    let err = client
        .wait_for_job("j1", &options(None, 10_000), recorder(&Arc::default()))
        .await
        .unwrap_err();
    assert!(matches!(&err, WaitError::Failed(e) if e.class() == ErrorClass::UnauthorizedError));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn dropping_the_wait_stops_polling() {
    let (server, client) = start(Arc::new(|_, _| job("running"))).await;
    let options = options(None, 0);
    let wait = client.wait_for_job("j1", &options, recorder(&Arc::default()));
    assert!(tokio::time::timeout(Duration::from_millis(100), wait)
        .await
        .is_err());
    let count = server.requests().len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.requests().len(), count);
}
