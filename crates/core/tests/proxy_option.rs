//! The explicit `proxy` option: an unusable value never degrades to a direct connection, and an
//! empty one means "no proxy" whatever the environment says (its own process: it sets env vars).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use iothub_jobs_core::{ClientOptions, Error, JobClient};

use support::ok_json;

fn options(server: &support::TestServer, proxy: &str) -> ClientOptions {
    ClientOptions {
        proxy: Some(proxy.to_string()),
        ..server.options(None)
    }
}

#[tokio::test]
async fn unusable_proxy_fails_without_connecting() {
    let server = support::start(Arc::new(|_, _| ok_json(r#"{"jobId":"j"}"#))).await;
    for proxy in [
        "not a url",
        "http://user:secretpw@bad host:3128",
        "ftp://proxy.invalid:21",
    ] {
        let client =
            JobClient::from_connection_string(&server.connection_string(), options(&server, proxy))
                .unwrap();
        let err = client.get_job("j").await.unwrap_err();
        assert!(matches!(err, Error::Transport { .. }), "{proxy}: {err:?}");
        let message = err.to_string();
        assert!(
            message.to_lowercase().contains("proxy"),
            "{proxy}: {message}"
        );
        assert!(!message.contains("secretpw"), "{message}");
    }
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn empty_proxy_ignores_the_environment() {
    // Nothing listens on port 9: were the variable used, the call would fail.
    std::env::set_var("HTTPS_PROXY", "http://127.0.0.1:9");
    let server = support::start(Arc::new(|_, _| ok_json(r#"{"jobId":"j"}"#))).await;
    let client =
        JobClient::from_connection_string(&server.connection_string(), options(&server, ""))
            .unwrap();
    client.get_job("j").await.unwrap();
    assert_eq!(server.requests().len(), 1);
    std::env::remove_var("HTTPS_PROXY");
}
