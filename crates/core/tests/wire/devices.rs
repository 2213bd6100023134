use std::sync::Arc;

use iothub_jobs_core::{JobClient, PageRequest};

use crate::support::{self, response, Action};

#[tokio::test]
async fn query_device_jobs_wire_format_and_paging() {
    let server = support::start(Arc::new(|_, n| {
        let (body, next) = match n {
            0 => (
                r#"[{"deviceId":"d1","jobId":"job-1","status":"completed"}]"#,
                Some("page-2"),
            ),
            _ => (
                r#"[{"deviceId":"d2","jobId":"job-1","status":"failed"}]"#,
                None,
            ),
        };
        let mut headers = vec![
            ("Content-Type", "application/json; charset=utf-8"),
            ("x-ms-item-type", "deviceJob"),
        ];
        if let Some(token) = next {
            headers.push(("x-ms-continuation", token));
        }
        Action::Respond(response(200, "OK", &headers, body))
    }))
    .await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    let first = client
        .query_device_jobs(
            "job-1",
            &PageRequest {
                max_item_count: Some(1),
                continuation_token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.header("x-ms-continuation"), Some("page-2"));
    let second = client
        .query_device_jobs(
            "job-1",
            &PageRequest {
                max_item_count: Some(1),
                continuation_token: Some("page-2".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.header("x-ms-continuation"), None);
    assert!(second.text().contains("\"d2\""));

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/devices/query?api-version=2021-04-12");
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(r.header("x-ms-max-item-count"), Some("1"));
        assert_eq!(
            r.body,
            br#"{"query":"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'job-1'"}"#
        );
        assert_eq!(
            r.header("content-length").map(str::to_owned),
            Some(r.body.len().to_string())
        );
        assert!(r
            .header("authorization")
            .is_some_and(|a| a.starts_with("SharedAccessSignature ")));
    }
    assert_eq!(requests[0].header("x-ms-continuation"), None);
    assert_eq!(requests[1].header("x-ms-continuation"), Some("page-2"));
}

#[tokio::test]
async fn device_queries_are_retried_on_503() {
    let server = support::start(Arc::new(|_, n| {
        if n == 0 {
            Action::Respond(support::json(503, "Service Unavailable", "{}"))
        } else {
            support::ok_json("[]")
        }
    }))
    .await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(support::fast_retry(2))),
    )
    .unwrap();
    let r = client
        .query_devices("SELECT * FROM devices", &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(server.requests().len(), 2);
}
