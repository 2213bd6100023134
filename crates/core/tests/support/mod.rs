//! A loopback HTTPS server for the tests: records every request byte-exactly and answers as a
//! per-test script says (respond, close without answering, or never answer).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iothub_jobs_core::{ClientOptions, Clock, RetryOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request line and headers exactly as sent (without the final blank line).
    pub head: String,
    pub method: String,
    pub target: String,
    /// Header names as sent (case preserved), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which connection (0-based accept order) carried it.
    pub connection: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_names(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect()
    }
}

/// What the server does with a request.
pub enum Action {
    /// Write these bytes (a whole HTTP response) and keep the connection.
    Respond(Vec<u8>),
    /// Close the connection without answering.
    Close,
    /// Never answer (the connection stays open).
    Hang,
}

pub type Handler = Arc<dyn Fn(&Recorded, usize) -> Action + Send + Sync>;

pub struct TestServer {
    pub port: u16,
    pub ca_pem: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub connections: Arc<AtomicUsize>,
}

impl TestServer {
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn connection_string(&self) -> String {
        format!(
            "HostName={};SharedAccessKeyName=iothubowner;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            self.host()
        )
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Options trusting this server, retries as given, short timeouts.
    pub fn options(&self, retry: Option<RetryOptions>) -> ClientOptions {
        ClientOptions {
            ca_pem: Some(self.ca_pem.clone()),
            retry,
            attempt_timeout: Some(Duration::from_secs(10)),
            call_timeout: Some(Duration::from_secs(20)),
            proxy: None,
            ..ClientOptions::default()
        }
    }
}

pub fn fast_retry(max_retries: u32) -> RetryOptions {
    RetryOptions {
        max_retries,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        throttle_initial_delay: Duration::from_millis(10),
    }
}

/// A whole HTTP/1.1 response with `Content-Length`.
pub fn response(status: u16, reason: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    out.push_str(body);
    out.into_bytes()
}

pub fn json(status: u16, reason: &str, body: &str) -> Vec<u8> {
    response(
        status,
        reason,
        &[("Content-Type", "application/json; charset=utf-8")],
        body,
    )
}

pub fn ok_json(body: &str) -> Action {
    Action::Respond(json(200, "OK", body))
}

struct Cert {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: Vec<u8>,
}

fn make_cert() -> Cert {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "iothub-jobs test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    Cert {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf.der().clone()],
        key: leaf_key.serialize_der(),
    }
}

pub async fn start(handler: Handler) -> TestServer {
    let cert = make_cert();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        cert.chain.clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::new(AtomicUsize::new(0));
    {
        let requests = requests.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let connection = connections.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                let requests = requests.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf: Vec<u8> = Vec::new();
                    loop {
                        // Read one request head.
                        let head_end = loop {
                            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                                break pos;
                            }
                            let mut chunk = [0u8; 8192];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                        buf.drain(..head_end + 4);
                        let mut lines = head.split("\r\n");
                        let request_line = lines.next().unwrap_or("").to_string();
                        let mut parts = request_line.split(' ');
                        let method = parts.next().unwrap_or("").to_string();
                        let target = parts.next().unwrap_or("").to_string();
                        let headers: Vec<(String, String)> = lines
                            .filter_map(|l| l.split_once(':'))
                            .map(|(n, v)| (n.to_string(), v.trim().to_string()))
                            .collect();
                        let length = headers
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                            .and_then(|(_, v)| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        while buf.len() < length {
                            let mut chunk = [0u8; 8192];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body: Vec<u8> = buf.drain(..length).collect();
                        let recorded = Recorded {
                            head,
                            method,
                            target,
                            headers,
                            body,
                            connection,
                        };
                        requests.lock().unwrap().push(recorded.clone());
                        let index = counter.fetch_add(1, Ordering::SeqCst);
                        match handler(&recorded, index) {
                            Action::Respond(bytes) => {
                                if tls.write_all(&bytes).await.is_err() {
                                    return;
                                }
                                let _ = tls.flush().await;
                            }
                            Action::Close => {
                                let _ = tls.shutdown().await;
                                return;
                            }
                            Action::Hang => {
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                });
            }
        });
    }
    TestServer {
        port,
        ca_pem: cert.ca_pem,
        requests,
        connections,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct FakeClock {
    millis: Mutex<u64>,
}

impl FakeClock {
    pub fn at_millis(ms: u64) -> Arc<FakeClock> {
        Arc::new(FakeClock {
            millis: Mutex::new(ms),
        })
    }

    pub fn advance(&self, d: Duration) {
        *self.millis.lock().unwrap() += d.as_millis() as u64;
    }

    pub fn millis(&self) -> u64 {
        *self.millis.lock().unwrap()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(*self.millis.lock().unwrap())
    }
}
