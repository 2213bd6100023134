use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use iothub_jobs_core::{ClientOptions, Error, ErrorClass, JobClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, fast_retry, ok_json};

#[tokio::test]
async fn certificates_are_verified() {
    let server = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    // Not trusting the test CA: the handshake fails, nothing is sent, and it is not retried.
    let options = ClientOptions {
        ca_pem: None,
        ..server.options(Some(fast_retry(3)))
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options).unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(server.requests().is_empty());
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "certificate errors are not retried"
    );
}

#[tokio::test]
async fn an_invalid_ca_option_is_an_argument_error() {
    let err = JobClient::from_connection_string(
        "HostName=h;SharedAccessKeyName=p;SharedAccessKey=k",
        ClientOptions {
            ca_pem: Some("not a certificate".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::ArgumentError);
}

#[tokio::test]
async fn an_unusable_host_name_fails_the_call_not_the_factory() {
    let client = JobClient::from_connection_string(
        "HostName=bad host/x;SharedAccessKeyName=p;SharedAccessKey=k",
        ClientOptions::default(),
    )
    .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("Invalid host name"), "{err}");
}

/// A minimal HTTP CONNECT proxy; returns its port and the CONNECT heads it saw.
async fn connect_proxy() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if inbound.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split(' ').nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(head);
                let Ok(mut outbound) = TcpStream::connect(&target).await else {
                    return;
                };
                inbound
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn explicit_proxy_tunnels_with_connect() {
    let server = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    let (proxy_port, seen) = connect_proxy().await;
    let options = ClientOptions {
        proxy: Some(format!("http://user:pass@127.0.0.1:{proxy_port}")),
        ..server.options(None)
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options).unwrap();
    client.get_job("j").await.unwrap();
    client.get_job("j").await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one tunnel, reused");
    assert!(
        seen[0].starts_with(&format!("CONNECT {} HTTP/1.1\r\n", server.host())),
        "{}",
        seen[0]
    );
    // Basic credentials from the proxy URL.
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic dxnlcjpwyxnz"),
        "{}",
        seen[0]
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn unsupported_proxy_scheme_is_reported() {
    let options = ClientOptions {
        proxy: Some("socks5://127.0.0.1:1".into()),
        retry: Some(fast_retry(2)),
        attempt_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let client = JobClient::from_connection_string(
        "HostName=127.0.0.1:9;SharedAccessKeyName=p;SharedAccessKey=k",
        options,
    )
    .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert!(err.to_string().contains("proxy"), "{err}");
}
