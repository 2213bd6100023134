use std::sync::Arc;
use std::time::{Duration, Instant};

use iothub_jobs_core::{ErrorClass, JobClient};

use crate::support::{self, fast_retry, json, ok_json, Action};

fn status(code: u16) -> Vec<u8> {
    json(
        code,
        "Status",
        r#"{"Message":"ErrorCode:Whatever;transient"}"#,
    )
}

#[tokio::test]
async fn transient_statuses_are_retried_with_the_same_request_id() {
    for code in [408u16, 429, 500, 503, 504] {
        let server = support::start(Arc::new(move |_, i| {
            if i < 2 {
                Action::Respond(status(code))
            } else {
                ok_json("{}")
            }
        }))
        .await;
        let client = JobClient::from_connection_string(
            &server.connection_string(),
            server.options(Some(fast_retry(3))),
        )
        .unwrap();
        let response = client.get_job("j").await.unwrap();
        assert_eq!(response.status, 200, "{code}");
        let requests = server.requests();
        assert_eq!(requests.len(), 3, "{code}");
        let id = requests[0].header("request-id").unwrap();
        assert!(
            requests.iter().all(|r| r.header("request-id") == Some(id)),
            "{code}"
        );
    }
}

#[tokio::test]
async fn other_statuses_are_not_retried() {
    for code in [400u16, 401, 403, 404, 409, 412, 413, 501, 502] {
        let server = support::start(Arc::new(move |_, _| Action::Respond(status(code)))).await;
        let client = JobClient::from_connection_string(
            &server.connection_string(),
            server.options(Some(fast_retry(3))),
        )
        .unwrap();
        let err = client.cancel_job("j").await.unwrap_err();
        assert_eq!(err.response().unwrap().status, code);
        assert_eq!(server.requests().len(), 1, "{code}");
    }
}

#[tokio::test]
async fn retries_give_up_after_max_retries_with_the_last_error() {
    let server = support::start(Arc::new(|_, _| Action::Respond(status(503)))).await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(2))),
    )
    .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::ServiceUnavailableError);
    assert_eq!(err.to_string(), "transient");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn retry_disabled_means_one_attempt() {
    let server = support::start(Arc::new(|_, _| Action::Respond(status(429)))).await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::ThrottlingError);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn connection_errors_are_retried() {
    // First attempt: the connection is closed without an answer (reset/drop).
    let server = support::start(Arc::new(
        |_, i| if i == 0 { Action::Close } else { ok_json("{}") },
    ))
    .await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    client.get_job("j").await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].header("request-id"),
        requests[1].header("request-id")
    );
    assert!(
        requests[1].connection > requests[0].connection,
        "a new connection after the drop"
    );
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cs = format!("HostName=127.0.0.1:{port};SharedAccessKeyName=p;SharedAccessKey=a2V5");
    let options = iothub_jobs_core::ClientOptions {
        retry: Some(fast_retry(2)),
        ..Default::default()
    };
    let client = JobClient::from_connection_string(&cs, options).unwrap();
    let started = Instant::now();
    let err = client.get_job("j").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Error);
    assert!(
        matches!(err, iothub_jobs_core::Error::Transport { .. }),
        "{err:?}"
    );
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = support::start(Arc::new(|_, i| {
        if i == 0 {
            Action::Respond(support::response(
                429,
                "Too Many Requests",
                &[("Retry-After", "1")],
                "",
            ))
        } else {
            ok_json("{}")
        }
    }))
    .await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    let started = Instant::now();
    client.get_job("j").await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

    let server = support::start(Arc::new(|_, i| {
        if i == 0 {
            Action::Respond(support::response(
                503,
                "Service Unavailable",
                &[("retry-after-ms", "300")],
                "",
            ))
        } else {
            ok_json("{}")
        }
    }))
    .await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    let started = Instant::now();
    client.get_job("j").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(290));
}

#[tokio::test]
async fn a_retry_after_beyond_the_call_budget_returns_the_error_at_once() {
    let server = support::start(Arc::new(|_, _| {
        Action::Respond(support::response(
            429,
            "Too Many Requests",
            &[("Retry-After", "60")],
            "",
        ))
    }))
    .await;
    let options = iothub_jobs_core::ClientOptions {
        call_timeout: Some(Duration::from_secs(30)),
        ..server.options(Some(fast_retry(3)))
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options).unwrap();
    let started = Instant::now();
    let err = client.get_job("j").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::ThrottlingError);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn sas_token_is_reminted_per_attempt_only_when_needed() {
    let server = support::start(Arc::new(|_, i| {
        if i == 0 {
            Action::Respond(status(500))
        } else {
            ok_json("{}")
        }
    }))
    .await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    client.get_job("j").await.unwrap();
    let requests = server.requests();
    // The cached token is reused across attempts and calls.
    assert_eq!(
        requests[0].header("authorization"),
        requests[1].header("authorization")
    );
}
