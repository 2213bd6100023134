use std::sync::Arc;

use iothub_jobs_core::{CloudToDeviceMethod, JobClient, JobKind, JobQuery, JobRequest};

use crate::raw;
use crate::support::{self, ok_json, Action};

fn ok_server() -> support::Handler {
    Arc::new(|_, _| ok_json(r#"{"jobId":"j","status":"queued"}"#))
}

fn names(r: &support::Recorded) -> Vec<String> {
    r.header_names()
}

#[tokio::test]
async fn get_job_wire_format() {
    let server = support::start(ok_server()).await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    let response = client.get_job("a b").await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.status_text, "OK");
    assert!(response.is_json());
    assert_eq!(
        response.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    let r = &server.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.target, "/jobs/v2/a%20b?api-version=2021-04-12");
    assert_eq!(
        names(r),
        [
            "authorization",
            "request-id",
            "user-agent",
            "host",
            "connection"
        ]
    );
    assert_eq!(r.header("host").unwrap(), server.host());
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(
        r.header("user-agent").unwrap(),
        concat!("iothub-jobs/", env!("CARGO_PKG_VERSION"))
    );
    let auth = r.header("authorization").unwrap();
    assert!(
        auth.starts_with(&format!("SharedAccessSignature sr={}&sig=", server.host())),
        "{auth}"
    );
    assert!(auth.contains("&skn=iothubowner&se="));
    let id = r.header("request-id").unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn cancel_job_wire_format() {
    let server = support::start(ok_server()).await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    client.cancel_job("../devices/x").await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        (
            "POST",
            "/jobs/v2/..%2Fdevices%2Fx/cancel?api-version=2021-04-12"
        )
    );
    assert_eq!(
        names(r),
        [
            "authorization",
            "request-id",
            "user-agent",
            "host",
            "connection",
            "content-length"
        ]
    );
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn schedule_job_wire_format() {
    let server = support::start(ok_server()).await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    let job = JobRequest {
        job_id: "j-1".into(),
        job_id_json: raw("\"j-1\""),
        kind: JobKind::DeviceMethod(CloudToDeviceMethod {
            method_name_json: raw("\"reboot\""),
            payload_json: Some(raw("\"é\"")),
            response_timeout_json: None,
            connect_timeout_json: None,
        }),
        start_time: Some("2026-11-26T06:00:00.000Z".into()),
        max_execution_time_json: Some(raw("3600")),
        query_condition: "deviceId = 'd'".into(),
    };
    client.schedule_job(&job).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("PUT", "/jobs/v2/j-1?api-version=2021-04-12")
    );
    assert_eq!(
        names(r),
        [
            "content-type",
            "authorization",
            "request-id",
            "user-agent",
            "content-length",
            "host",
            "connection"
        ]
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r#"{"jobId":"j-1","type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"reboot","payload":"é","responseTimeoutInSeconds":30},"startTime":"2026-11-26T06:00:00.000Z","maxExecutionTimeInSeconds":3600,"queryCondition":"deviceId = 'd'"}"#;
    assert_eq!(String::from_utf8(r.body.clone()).unwrap(), body);
    assert_eq!(r.header("content-length").unwrap(), body.len().to_string());
}

#[tokio::test]
async fn query_jobs_wire_format() {
    let server = support::start(Arc::new(|_, _| {
        Action::Respond(support::response(
            200,
            "OK",
            &[
                ("Content-Type", "application/json"),
                ("x-ms-continuation", "next-token"),
                ("X-Ms-Item-Type", "jobResponse"),
            ],
            "[]",
        ))
    }))
    .await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    let response = client
        .query_jobs(&JobQuery {
            job_type: Some("scheduleUpdateTwin".into()),
            job_status: Some("completed".into()),
            page_size: Some("10".into()),
            continuation_token: Some("abc+/=".into()),
        })
        .await
        .unwrap();
    assert_eq!(response.header("x-ms-continuation"), Some("next-token"));
    // Header names are lower-cased, in wire order.
    let names: Vec<&str> = response.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "content-type",
            "x-ms-continuation",
            "x-ms-item-type",
            "content-length"
        ]
    );
    assert_eq!(response.text(), "[]");
    let r = &server.requests()[0];
    assert_eq!(
        r.target,
        "/jobs/v2/query?api-version=2021-04-12&jobStatus=completed&jobType=scheduleUpdateTwin"
    );
    assert_eq!(
        names_of(r),
        [
            "x-ms-max-item-count",
            "x-ms-continuation",
            "authorization",
            "request-id",
            "user-agent",
            "host",
            "connection"
        ]
    );
    assert_eq!(r.header("x-ms-max-item-count"), Some("10"));
    assert_eq!(r.header("x-ms-continuation"), Some("abc+/="));
    // Nothing optional: bare path, no paging headers.
    client.query_jobs(&JobQuery::default()).await.unwrap();
    let r = &server.requests()[1];
    assert_eq!(r.target, "/jobs/v2/query?api-version=2021-04-12");
    assert_eq!(
        names_of(r),
        [
            "authorization",
            "request-id",
            "user-agent",
            "host",
            "connection"
        ]
    );
}

fn names_of(r: &support::Recorded) -> Vec<String> {
    r.header_names()
}

#[tokio::test]
async fn one_connection_is_reused_and_request_ids_differ_per_call() {
    let server = support::start(ok_server()).await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    for _ in 0..5 {
        client.get_job("j").await.unwrap();
    }
    let clone = client.clone();
    clone.get_job("j").await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 6);
    assert!(
        requests.iter().all(|r| r.connection == 0),
        "keep-alive pool reused"
    );
    let mut ids: Vec<&str> = requests
        .iter()
        .map(|r| r.header("request-id").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6);
}

#[tokio::test]
async fn options_user_agent_and_api_version() {
    let server = support::start(ok_server()).await;
    let options = iothub_jobs_core::ClientOptions {
        user_agent: "custom/1".into(),
        api_version: "2024-03-31".into(),
        ..server.options(None)
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options).unwrap();
    client.get_job("j").await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.target, "/jobs/v2/j?api-version=2024-03-31");
    assert_eq!(r.header("user-agent"), Some("custom/1"));
}

#[tokio::test]
async fn service_errors_carry_the_response() {
    let server = support::start(Arc::new(|_, _| {
        Action::Respond(support::response(
            404,
            "Not Found",
            &[
                ("iothub-errorcode", "JobNotFound"),
                ("Content-Type", "application/json"),
            ],
            r#"{"Message":"ErrorCode:JobNotFound;Job not found: j","ExceptionMessage":"x"}"#,
        ))
    }))
    .await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert_eq!(err.class().name(), "JobNotFoundError");
    assert_eq!(err.to_string(), "Job not found: j");
    assert_eq!(err.code(), Some("JobNotFound"));
    let response = err.response().unwrap();
    assert_eq!(
        (response.status, response.status_text.as_str()),
        (404, "Not Found")
    );
    assert!(response.text().contains("ErrorCode:JobNotFound"));
}
