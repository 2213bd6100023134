use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use iothub_jobs_core::error::translate_response;
use iothub_jobs_core::http::retry::{backoff_ceiling, server_delay, MAX_SERVER_DELAY};
use iothub_jobs_core::http::RetryPolicy;
use iothub_jobs_core::time::parse_http_date;
use iothub_jobs_core::{Error, Response, RetryOptions};

fn resp(status: u16, headers: &[(&str, &str)]) -> Response {
    Response {
        status,
        status_text: String::new(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Bytes::new(),
    }
}

fn err(status: u16, headers: &[(&str, &str)]) -> Error {
    translate_response(resp(status, headers))
}

fn options() -> RetryOptions {
    RetryOptions {
        max_retries: 4,
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1000),
        throttle_initial_delay: Duration::from_millis(400),
    }
}

#[test]
fn which_errors_are_retried() {
    let policy = RetryPolicy::new(Some(options()));
    let now = UNIX_EPOCH;
    for status in [408, 429, 500, 503, 504] {
        assert!(
            policy.delay(0, &err(status, &[]), now, 0.5).is_some(),
            "{status}"
        );
    }
    for status in [400, 401, 403, 404, 409, 412, 413, 501, 502] {
        assert!(
            policy.delay(0, &err(status, &[]), now, 0.5).is_none(),
            "{status}"
        );
    }
    assert!(policy
        .delay(
            0,
            &Error::Transport {
                message: "reset".into()
            },
            now,
            0.5
        )
        .is_some());
    assert!(policy
        .delay(
            0,
            &Error::Timeout {
                message: "t".into()
            },
            now,
            0.5
        )
        .is_some());
    assert!(policy
        .delay(0, &Error::TokenCreationFailed, now, 0.5)
        .is_none());
    // Exhausted.
    assert!(policy.delay(3, &err(503, &[]), now, 0.5).is_some());
    assert!(policy.delay(4, &err(503, &[]), now, 0.5).is_none());
    // Off.
    let off = RetryPolicy::new(None);
    assert_eq!(off.max_retries(), 0);
    assert!(off.delay(0, &err(503, &[]), now, 0.5).is_none());
}

#[test]
fn full_jitter_backoff_bounds() {
    let policy = RetryPolicy::new(Some(RetryOptions {
        max_retries: 10,
        ..options()
    }));
    let now = UNIX_EPOCH;
    let e = err(503, &[]);
    for retry in 0..10 {
        let ceiling = backoff_ceiling(
            Duration::from_millis(100),
            Duration::from_millis(1000),
            retry,
        );
        assert_eq!(ceiling, Duration::from_millis((100u64 << retry).min(1000)));
        assert_eq!(policy.delay(retry, &e, now, 0.0), Some(Duration::ZERO));
        let high = policy.delay(retry, &e, now, 0.999_999).unwrap();
        assert!(
            high <= ceiling && high + Duration::from_millis(1) >= ceiling,
            "{retry}: {high:?}"
        );
        let mid = policy.delay(retry, &e, now, 0.5).unwrap();
        assert_eq!(mid, ceiling / 2);
    }
    // Throttling uses the larger base.
    let t = err(429, &[]);
    assert_eq!(
        policy.delay(0, &t, now, 0.5),
        Some(Duration::from_millis(200))
    );
    assert_eq!(
        policy.delay(1, &t, now, 0.5),
        Some(Duration::from_millis(400))
    );
    assert_eq!(
        policy.delay(5, &t, now, 0.5),
        Some(Duration::from_millis(500))
    );
    // Huge retry counts do not overflow.
    assert_eq!(
        backoff_ceiling(Duration::from_secs(1), Duration::from_secs(30), 200),
        Duration::from_secs(30)
    );
}

#[test]
fn retry_after_forms() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    let policy = RetryPolicy::new(Some(options()));
    let d = |h: &[(&str, &str)]| policy.delay(0, &err(429, h), now, 0.5);
    assert_eq!(d(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
    assert_eq!(d(&[("retry-after", "0")]), Some(Duration::ZERO));
    assert_eq!(
        d(&[("retry-after", "1.5")]),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        d(&[("retry-after-ms", "250")]),
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        d(&[("x-ms-retry-after-ms", "120")]),
        Some(Duration::from_millis(120))
    );
    // retry-after-ms wins over Retry-After.
    assert_eq!(
        d(&[("retry-after", "9"), ("retry-after-ms", "10")]),
        Some(Duration::from_millis(10))
    );
    // HTTP dates, three formats.
    assert_eq!(
        d(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        d(&[("retry-after", "Sunday, 06-Nov-94 08:49:42 GMT")]),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        d(&[("retry-after", "Sun Nov  6 08:49:44 1994")]),
        Some(Duration::from_secs(7))
    );
    // A date in the past: retry now.
    assert_eq!(
        d(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]),
        Some(Duration::ZERO)
    );
    // Garbage: computed backoff (200 ms = half of the 400 ms throttle base).
    assert_eq!(
        d(&[("retry-after", "soon")]),
        Some(Duration::from_millis(200))
    );
    assert_eq!(
        d(&[("retry-after", "-1")]),
        Some(Duration::from_millis(200))
    );
    // Absurd values are capped.
    assert_eq!(d(&[("retry-after", "999999999")]), Some(MAX_SERVER_DELAY));
    // Also honoured on 503.
    assert_eq!(
        policy.delay(0, &err(503, &[("Retry-After", "2")]), now, 0.5),
        Some(Duration::from_secs(2))
    );
    // Never on a non-retryable status.
    assert_eq!(
        policy.delay(0, &err(400, &[("Retry-After", "2")]), now, 0.5),
        None
    );
}

#[test]
fn http_date_parser() {
    assert_eq!(
        parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
        Some(UNIX_EPOCH)
    );
    assert_eq!(
        parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
        Some(UNIX_EPOCH + Duration::from_secs(1_835_481_599))
    );
    // The three forms HTTP allows, all the same instant.
    for form in [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ] {
        assert_eq!(
            parse_http_date(form),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "{form}"
        );
    }
    for bad in [
        "",
        "Mon, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:00:00 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
    ] {
        assert_eq!(parse_http_date(bad), None, "{bad}");
    }
    assert_eq!(server_delay(&resp(429, &[]), UNIX_EPOCH), None);
}
