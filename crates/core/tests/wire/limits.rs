use std::sync::Arc;

use iothub_jobs_core::error::MAX_RESPONSE_BYTES;
use iothub_jobs_core::{Error, ErrorClass, JobClient, JobQuery};

use crate::support::{self, fast_retry, ok_json, Action};

#[tokio::test]
async fn declared_oversized_body_is_refused_without_reading_it() {
    let server = support::start(Arc::new(|_, _| {
        Action::Respond(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n[",
                MAX_RESPONSE_BYTES + 1
            )
            .into_bytes(),
        )
    }))
    .await;
    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(3))),
    )
    .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { limit } if limit == 32 * 1024 * 1024),
        "{err:?}"
    );
    assert!(err.to_string().contains("33554432"));
    assert_eq!(server.requests().len(), 1, "never retried");
}

#[tokio::test]
async fn streamed_oversized_body_is_cut_off_at_the_cap() {
    // Chunked, no length: the client must stop at the cap, not buffer everything.
    let server = support::start(Arc::new(|_, _| {
        let chunk = vec![b'x'; 1024 * 1024];
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..33 {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(&chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        Action::Respond(out)
    }))
    .await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert!(matches!(err, Error::ResponseTooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn a_body_at_the_cap_is_accepted() {
    let server = support::start(Arc::new(|_, _| {
        let mut out =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {MAX_RESPONSE_BYTES}\r\n\r\n").into_bytes();
        out.resize(out.len() + MAX_RESPONSE_BYTES, b' ');
        Action::Respond(out)
    }))
    .await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    let response = client.get_job("j").await.unwrap();
    assert_eq!(response.body.len(), MAX_RESPONSE_BYTES);
    assert!(!response.is_json());
}

#[tokio::test]
async fn cr_lf_nul_in_header_bound_inputs_never_reach_the_wire() {
    let server = support::start(Arc::new(|_, _| ok_json("[]"))).await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    for bad in ["t\r\nX-Injected: 1", "t\0"] {
        let err = client
            .query_jobs(&JobQuery {
                continuation_token: Some(bad.into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::ArgumentError);
        let err = client
            .query_jobs(&JobQuery {
                page_size: Some(bad.into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::ArgumentError);
    }
    // A SAS string with NUL (CR and LF are JS whitespace: the parser already refuses them):
    // refused before sending, and the message does not echo it.
    let sas = format!(
        "SharedAccessSignature sr={}&sig=s3cret\0&skn=p&se=99999999999",
        server.host()
    );
    let client = JobClient::from_shared_access_signature(&sas, server.options(None)).unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::ArgumentError);
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let err = JobClient::from_shared_access_signature(
        "SharedAccessSignature sr=h&sig=s\r&skn=p&se=1",
        server.options(None),
    )
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::FormatError);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn empty_success_bodies_are_not_json() {
    let server = support::start(Arc::new(|_, _| {
        Action::Respond(support::response(
            200,
            "OK",
            &[("Content-Type", "Application/JSON")],
            "",
        ))
    }))
    .await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), server.options(None))
            .unwrap();
    let response = client.get_job("j").await.unwrap();
    assert!(!response.is_json());
    assert_eq!(response.text(), "");
}
