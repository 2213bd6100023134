use http::Method;
use iothub_jobs_core::devices::{device_jobs_query, query_devices_request, query_string_literal};
use iothub_jobs_core::monitor::{is_final_status, job_status};
use iothub_jobs_core::request::JSON_CONTENT_TYPE;
use iothub_jobs_core::{ErrorClass, PageRequest, Response};

#[test]
fn string_literals_cannot_be_escaped_from() {
    assert_eq!(query_string_literal("job-1"), "'job-1'");
    assert_eq!(query_string_literal("O'Brien"), r"'O\'Brien'");
    assert_eq!(query_string_literal(r"a\' OR 1=1"), r"'a\\\' OR 1=1'");
    assert_eq!(query_string_literal("a\nb\u{7f}"), r"'a\u000ab\u007f'");
    assert_eq!(query_string_literal("café"), "'café'");
    assert_eq!(
        device_jobs_query("j'1"),
        r"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j\'1'"
    );
}

#[test]
fn device_query_request_shape() {
    let page = PageRequest {
        max_item_count: Some(3),
        continuation_token: Some("tok/1".into()),
    };
    let r = query_devices_request(&device_jobs_query("job-1"), &page, "2021-04-12").unwrap();
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path_and_query, "/devices/query?api-version=2021-04-12");
    assert_eq!(r.content_type, Some(JSON_CONTENT_TYPE));
    assert!(r.send_content_length);
    assert_eq!(
        &r.body[..],
        br#"{"query":"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'job-1'"}"#
    );
    assert_eq!(
        r.extra_headers,
        vec![
            ("x-ms-max-item-count", "3".to_string()),
            ("x-ms-continuation", "tok/1".to_string())
        ]
    );
    // The literal's escapes survive the JSON encoding of the body.
    let r =
        query_devices_request(&device_jobs_query("a'\"b"), &PageRequest::default(), "v").unwrap();
    assert!(r.extra_headers.is_empty());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body["query"],
        r#"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'a\'"b'"#
    );
    // An empty token is not sent; one that would split the header is refused before sending.
    let empty = PageRequest {
        max_item_count: None,
        continuation_token: Some(String::new()),
    };
    assert!(query_devices_request("q", &empty, "v")
        .unwrap()
        .extra_headers
        .is_empty());
    let bad = PageRequest {
        max_item_count: None,
        continuation_token: Some("a\r\nx: y".into()),
    };
    let err = query_devices_request("q", &bad, "v").unwrap_err();
    assert_eq!(err.class(), ErrorClass::ArgumentError);
}

#[test]
fn job_status_and_final_statuses() {
    let response = |body: &str| Response {
        status: 200,
        status_text: "OK".into(),
        headers: vec![],
        body: body.as_bytes().to_vec().into(),
    };
    assert_eq!(
        job_status(&response(r#"{"jobId":"j","status":"running"}"#)).as_deref(),
        Some("running")
    );
    assert_eq!(job_status(&response("[]")), None);
    assert_eq!(job_status(&response("not json")), None);
    assert_eq!(job_status(&response(r#"{"status":3}"#)), None);
    for s in ["completed", "failed", "cancelled", "canceled"] {
        assert!(is_final_status(s), "{s}");
    }
    for s in ["queued", "scheduled", "running", "unknown", "enqueued", ""] {
        assert!(!is_final_status(s), "{s}");
    }
}
