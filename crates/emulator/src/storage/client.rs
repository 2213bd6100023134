//! The few blob requests the hub makes itself (create a container, read a blob's size, read
//! and write an import/export job's blobs), over HTTP or HTTPS trusting the hub's CA (Azurite
//! serves with a certificate it issued), with an account SAS or the SAS a caller gave.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::{sas, Account};
use crate::clock::wall_secs;
use crate::errors::StartError;

const TIMEOUT: Duration = Duration::from_secs(10);
/// A whole blob read or written (an export of 100,000 devices is tens of megabytes).
const BODY_TIMEOUT: Duration = Duration::from_secs(300);

pub struct BlobClient {
    tls: TlsConnector,
}

impl BlobClient {
    pub fn new(ca_pem: &str) -> Result<Self, StartError> {
        let der = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
            .map_err(|_| "the hub's CA is not PEM".to_string())?
            .1
            .contents;
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| format!("the hub's CA cannot be trusted: {e}"))?;
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup failed: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Creates `container` (an existing one is fine).
    pub async fn create_container(&self, account: &Account, container: &str) -> Result<(), String> {
        let url = format!(
            "{}?restype=container&{}",
            account.url(container, None),
            sas::account_sas(account, wall_secs() + 600)
        );
        match self.send(Method::PUT, &url).await? {
            (StatusCode::CREATED | StatusCode::CONFLICT, _) => Ok(()),
            (status, _) => Err(format!("the storage account answered {status}")),
        }
    }

    /// The blob's size and last-modified time (ISO 8601), `None` when there is no such blob.
    pub async fn blob_properties(
        &self,
        account: &Account,
        container: &str,
        blob: &str,
    ) -> Result<Option<(u64, String)>, String> {
        let url = format!(
            "{}?{}",
            account.url(container, Some(blob)),
            sas::account_sas(account, wall_secs() + 600)
        );
        match self.send(Method::HEAD, &url).await? {
            (StatusCode::OK, head) => {
                let modified = head
                    .last_modified
                    .and_then(|t| chrono::DateTime::parse_from_rfc2822(&t).ok())
                    .map(|t| t.to_utc().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                    .unwrap_or_default();
                Ok(Some((head.length.unwrap_or(0), modified)))
            }
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (status, _) => Err(format!("the storage account answered {status}")),
        }
    }

    /// One request without a body: the status and the answer's `Content-Length`. Errors name
    /// the host, never the URL (its query holds a signature).
    async fn send(&self, method: Method, url: &str) -> Result<(StatusCode, Head), String> {
        let (status, head, _) = self
            .request(method, url, &[], Bytes::new(), TIMEOUT)
            .await?;
        Ok((status, head))
    }

    /// `GET url` (a blob URL with its SAS): the status and the whole body.
    pub async fn get(&self, url: &str) -> Result<(StatusCode, Head, Bytes), String> {
        self.request(Method::GET, url, &[], Bytes::new(), BODY_TIMEOUT)
            .await
    }

    /// `PUT url` of a block blob (a blob URL with its SAS) holding `body`, in one request.
    pub async fn put_block_blob(
        &self,
        url: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Head), String> {
        let headers = [
            ("x-ms-blob-type", "BlockBlob"),
            ("content-type", "text/plain"),
        ];
        let (status, head, _) = self
            .request(Method::PUT, url, &headers, body, BODY_TIMEOUT)
            .await?;
        Ok((status, head))
    }

    /// One request: the status, the headers the hub reads and the body. Errors name the host,
    /// never the URL (its query holds a signature).
    async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Head, Bytes), String> {
        let (https, rest) = match url.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            _ => return Err("not an http(s) URL".into()),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && p.parse::<u16>().is_ok() => {
                (h, p.parse::<u16>().unwrap_or(443))
            }
            _ => (authority, if https { 443 } else { 80 }),
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", authority)
            .header("x-ms-version", sas::VERSION)
            .header("content-length", body.len().to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("bad request: {e}"))?;
        let exchange = async {
            let tcp = TcpStream::connect((bare, port))
                .await
                .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
            if https {
                let name = ServerName::try_from(bare.to_string())
                    .map_err(|_| format!("{authority} is not a TLS server name"))?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {authority} failed: {e}"))?;
                exchange(TokioIo::new(tls), request).await
            } else {
                exchange(TokioIo::new(tcp), request).await
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("{authority} did not answer within {timeout:?}"))?
    }
}

/// The answer's headers the hub reads.
pub struct Head {
    length: Option<u64>,
    last_modified: Option<String>,
    /// Storage's `x-ms-error-code` of a refused request (`AuthenticationFailed`,
    /// `ContainerNotFound`, …): what a job's failure reason names.
    pub error_code: Option<String>,
}

async fn exchange<T>(
    io: T,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Head, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("the request failed: {e}"))?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let head = Head {
        length: header("content-length").and_then(|v| v.parse().ok()),
        last_modified: header("last-modified"),
        error_code: header("x-ms-error-code"),
    };
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("the answer's body was cut: {e}"))?
        .to_bytes();
    Ok((status, head, body))
}
