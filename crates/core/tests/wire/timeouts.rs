use std::sync::Arc;
use std::time::{Duration, Instant};

use iothub_jobs_core::{ClientOptions, Error, ErrorClass, JobClient};

use crate::support::{self, fast_retry, ok_json, Action};

#[tokio::test]
async fn attempt_timeout_against_a_silent_server() {
    let server = support::start(Arc::new(|_, _| Action::Hang)).await;
    let options = ClientOptions {
        attempt_timeout: Some(Duration::from_millis(300)),
        call_timeout: None,
        ..server.options(None)
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options).unwrap();
    let started = Instant::now();
    let err = client.get_job("j").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::TimeoutError);
    assert_eq!(
        err.to_string(),
        "No complete response within the attempt timeout of 300 ms"
    );
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn attempt_timeouts_are_retried() {
    let server = support::start(Arc::new(
        |_, i| if i == 0 { Action::Hang } else { ok_json("{}") },
    ))
    .await;
    let options = ClientOptions {
        attempt_timeout: Some(Duration::from_millis(200)),
        ..server.options(Some(fast_retry(2)))
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options).unwrap();
    client.get_job("j").await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].header("request-id"),
        requests[1].header("request-id")
    );
}

#[tokio::test]
async fn call_timeout_bounds_the_whole_call() {
    let server = support::start(Arc::new(|_, _| Action::Hang)).await;
    let options = ClientOptions {
        attempt_timeout: Some(Duration::from_millis(200)),
        call_timeout: Some(Duration::from_millis(700)),
        ..server.options(Some(fast_retry(100)))
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options).unwrap();
    let started = Instant::now();
    let err = client.get_job("j").await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.class(), ErrorClass::TimeoutError);
    assert!(
        err.to_string()
            .starts_with("The operation did not complete within the call timeout of 700 ms"),
        "{err}"
    );
    assert!(err.to_string().contains("attempt timeout"), "{err}");
    assert!(
        elapsed >= Duration::from_millis(690) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    assert!(server.requests().len() >= 2);
}

#[tokio::test]
async fn call_timeout_alone_against_a_silent_server() {
    let server = support::start(Arc::new(|_, _| Action::Hang)).await;
    let options = ClientOptions {
        attempt_timeout: None,
        call_timeout: Some(Duration::from_millis(300)),
        ..server.options(Some(fast_retry(3)))
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options).unwrap();
    let err = client.cancel_job("j").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "The operation did not complete within the call timeout of 300 ms"
    );
}
