use std::sync::Arc;

use iothub_jobs_core::{CloudToDeviceMethod, ErrorClass, JobClient, JobKind, JobRequest};

use crate::raw;

use crate::support::{self, fast_retry, json, ok_json, Action, Recorded};

fn job() -> JobRequest {
    JobRequest {
        job_id: "job 1".into(),
        job_id_json: raw("\"job 1\""),
        kind: JobKind::DeviceMethod(CloudToDeviceMethod {
            method_name_json: raw("\"reboot\""),
            payload_json: Some(raw("{\"x\":1}")),
            response_timeout_json: None,
            connect_timeout_json: None,
        }),
        start_time: Some("2026-11-26T06:00:00.000Z".into()),
        max_execution_time_json: Some(raw("3600")),
        query_condition: "deviceId = 'a'".into(),
    }
}

const STORED: &str = r#"{"jobId":"job 1","type":"scheduleDeviceMethod","queryCondition":"deviceId = 'a'","cloudToDeviceMethod":{"methodName":"reboot","payload":{"x":1},"responseTimeoutInSeconds":30},"startTime":"2026-11-26T06:00:00Z","status":"queued"}"#;

fn conflict() -> Vec<u8> {
    json(
        409,
        "Conflict",
        r#"{"Message":"ErrorCode:JobAlreadyExists;A job with id 'job 1' already exists","ExceptionMessage":""}"#,
    )
}

/// PUT #1: commit, then drop the connection; PUT #2: 409; GET: `stored`.
fn lost_response_server(stored: &'static str) -> support::Handler {
    Arc::new(move |r: &Recorded, i| match (r.method.as_str(), i) {
        ("PUT", 0) => Action::Close,
        ("PUT", _) => Action::Respond(conflict()),
        ("GET", _) => ok_json(stored),
        _ => Action::Respond(json(500, "x", "")),
    })
}

#[tokio::test]
async fn lost_put_response_then_409_resolves_with_our_job() {
    let server = support::start(lost_response_server(STORED)).await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    let response = client.schedule_job(&job()).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), STORED);
    let requests = server.requests();
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("PUT", "/jobs/v2/job%201?api-version=2021-04-12"),
            ("PUT", "/jobs/v2/job%201?api-version=2021-04-12"),
            ("GET", "/jobs/v2/job%201?api-version=2021-04-12"),
        ]
    );
    assert_eq!(requests[0].body, requests[1].body);
    assert_eq!(
        requests[0].header("request-id"),
        requests[1].header("request-id")
    );
}

#[tokio::test]
async fn lost_put_response_then_409_for_a_different_job_is_the_409_error() {
    const OTHER: &str = r#"{"jobId":"job 1","type":"scheduleDeviceMethod","queryCondition":"deviceId = 'zzz'","cloudToDeviceMethod":{"methodName":"reboot","payload":{"x":1}},"startTime":"2026-11-26T06:00:00Z"}"#;
    let server = support::start(lost_response_server(OTHER)).await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    let err = client.schedule_job(&job()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::DeviceAlreadyExistsError);
    assert_eq!(err.to_string(), "A job with id 'job 1' already exists");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_first_attempt_409_is_the_error_without_a_get() {
    let server = support::start(Arc::new(|_, _| Action::Respond(conflict()))).await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    let err = client.schedule_job(&job()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::DeviceAlreadyExistsError);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_409_after_a_throttled_attempt_is_not_confirmed() {
    // 429 means the service did not take the PUT: a 409 afterwards is someone else's job.
    let server = support::start(Arc::new(|r: &Recorded, i| match (r.method.as_str(), i) {
        ("PUT", 0) => Action::Respond(json(429, "Too Many Requests", "")),
        ("PUT", _) => Action::Respond(conflict()),
        _ => ok_json(STORED),
    }))
    .await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    let err = client.schedule_job(&job()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::DeviceAlreadyExistsError);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_500_after_commit_then_409_is_confirmed() {
    let server = support::start(Arc::new(|r: &Recorded, i| match (r.method.as_str(), i) {
        ("PUT", 0) => Action::Respond(json(500, "Internal Server Error", "")),
        ("PUT", _) => Action::Respond(conflict()),
        _ => ok_json(STORED),
    }))
    .await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    assert_eq!(client.schedule_job(&job()).await.unwrap().text(), STORED);
}

#[tokio::test]
async fn cancel_is_retried_after_a_lost_response() {
    let server = support::start(Arc::new(|_, i| {
        if i == 0 {
            Action::Close
        } else {
            ok_json(r#"{"status":"cancelled"}"#)
        }
    }))
    .await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    assert_eq!(client.cancel_job("j").await.unwrap().status, 200);
    assert_eq!(server.requests().len(), 2);
}
