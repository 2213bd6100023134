//! TCP (optionally through an HTTP CONNECT proxy) then TLS, with certificates always verified
//! against the trust Node.js itself uses — Mozilla's root store (Node bundles it; so does the
//! `webpki-roots` crate) plus `NODE_EXTRA_CA_CERTS` — plus the `ca` option.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tower_service::Service;

use crate::error::Error;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Parses every certificate in a PEM text.
pub fn parse_pem_certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// The extra roots: the file named by `NODE_EXTRA_CA_CERTS` (ignored when unreadable, as Node
/// only warns) and the explicit PEM (an error when it holds no certificate).
pub fn extra_roots(ca_pem: Option<&str>) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut roots = Vec::new();
    if let Some(path) = std::env::var_os("NODE_EXTRA_CA_CERTS").filter(|p| !p.is_empty()) {
        if let Ok(text) = std::fs::read_to_string(&path) {
            roots.extend(parse_pem_certificates(&text));
        }
    }
    if let Some(pem) = ca_pem {
        let certs = parse_pem_certificates(pem);
        if certs.is_empty() {
            return Err(Error::argument(
                "The ca option does not contain any PEM certificate",
            ));
        }
        roots.extend(certs);
    }
    Ok(roots)
}

/// rustls configuration: ring provider, webpki verification against Mozilla's roots (static
/// data: nothing is read or parsed for them) plus `extra_roots`, no ALPN (HTTP/1.1 only, as
/// Node's `https` module).
pub fn tls_config(extra_roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in extra_roots {
        // Node skips an unusable extra certificate too (it only warns).
        let _ = roots.add(certificate.clone());
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::argument(format!("Cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The proxy decision's inputs, fixed when a client is created: the `proxy` option, else the
/// environment. (No `Debug`: the URL may hold credentials.)
#[derive(Clone)]
pub enum ProxySetting {
    /// The `proxy` option (`""`: none).
    Explicit(String),
    /// `HTTPS_PROXY`/`https_proxy`, else `ALL_PROXY`/`all_proxy`, and `NO_PROXY`/`no_proxy`.
    Env {
        proxy: Option<String>,
        no_proxy: Option<String>,
    },
}

impl ProxySetting {
    /// The `proxy` option if given, else the environment as it is now.
    pub fn new(option: Option<&str>) -> ProxySetting {
        if let Some(proxy) = option {
            return ProxySetting::Explicit(proxy.to_string());
        }
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        ProxySetting::Env {
            proxy: first(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]),
            no_proxy: first(&["NO_PROXY", "no_proxy"]),
        }
    }

    /// The proxy for one `https://host:port/` destination (`""`: direct). An explicit proxy
    /// ignores `NO_PROXY`; `*` in `NO_PROXY` bypasses every host (curl's rule, which hyper-util
    /// applies to host names only).
    pub fn for_destination(&self, destination: &Uri) -> &str {
        match self {
            ProxySetting::Explicit(p) => p,
            ProxySetting::Env { proxy: None, .. } => "",
            ProxySetting::Env {
                proxy: Some(proxy),
                no_proxy,
            } => {
                let no_proxy = no_proxy.as_deref().unwrap_or("");
                // Whether NO_PROXY matches, asked with a placeholder proxy: an unusable
                // HTTPS_PROXY must fail the call (in the connector), not read as a bypass.
                let bypass = no_proxy.split(',').any(|p| p.trim() == "*")
                    || Matcher::builder()
                        .all("http://proxy.invalid:1".to_string())
                        .no(no_proxy.to_string())
                        .build()
                        .intercept(destination)
                        .is_none();
                if bypass {
                    ""
                } else {
                    proxy
                }
            }
        }
    }
}

#[derive(Clone)]
enum Route {
    Direct(HttpConnector),
    Tunnel(Tunnel<HttpConnector>),
    /// A proxy we cannot use; every connection attempt fails with this message.
    Unsupported(Arc<str>),
}

/// Connector for hyper-util's pooled client.
#[derive(Clone)]
pub struct HttpsConnector {
    route: Route,
    tls: tokio_rustls::TlsConnector,
}

impl HttpsConnector {
    /// `proxy` is the one for `destination` (`https://host[:port]/`), `""` for none; see
    /// [`ProxySetting::for_destination`].
    pub fn new(tls: rustls::ClientConfig, proxy: &str, destination: &Uri) -> HttpsConnector {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let intercept = match proxy {
            "" => None,
            proxy => Matcher::builder()
                .all(proxy.to_string())
                .build()
                .intercept(destination),
        };
        let route = match intercept {
            // A proxy the matcher cannot parse must never mean "connect directly".
            // (The URL is not echoed: it may hold credentials.)
            None if !proxy.is_empty() => Route::Unsupported(Arc::from(
                "The proxy (the proxy option or HTTPS_PROXY/ALL_PROXY) is not a valid proxy URL: expected http://[user:password@]host:port",
            )),
            None => Route::Direct(http),
            Some(intercept) => {
                let uri = intercept.uri().clone();
                if uri.scheme_str() != Some("http") {
                    Route::Unsupported(Arc::from(format!(
                        "Unsupported proxy scheme {:?}: only http:// proxies (HTTP CONNECT) are supported",
                        uri.scheme_str().unwrap_or("")
                    )))
                } else {
                    let mut tunnel = Tunnel::new(uri, http);
                    if let Some(auth) = intercept.basic_auth() {
                        tunnel = tunnel.with_auth(auth.clone());
                    }
                    Route::Tunnel(tunnel)
                }
            }
        };
        HttpsConnector {
            route,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        }
    }
}

async fn ready_and_call<S>(svc: &mut S, uri: Uri) -> Result<S::Response, BoxError>
where
    S: Service<Uri>,
    S::Error: Into<BoxError>,
{
    std::future::poll_fn(|cx| svc.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    svc.call(uri).await.map_err(Into::into)
}

impl Service<Uri> for HttpsConnector {
    type Response = TokioIo<TlsConnection>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let route = self.route.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = match route {
                Route::Direct(mut c) => ready_and_call(&mut c, dst.clone()).await?,
                Route::Tunnel(mut t) => ready_and_call(&mut t, dst.clone()).await?,
                Route::Unsupported(message) => {
                    return Err(io::Error::other(message.to_string()).into())
                }
            };
            let host = dst
                .host()
                .ok_or_else(|| io::Error::other("missing host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let server_name = ServerName::try_from(host)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tls.connect(server_name, tcp.into_inner()).await?;
            Ok(TokioIo::new(TlsConnection(stream)))
        })
    }
}

/// A TLS connection (hyper-util needs `Connection` on it).
pub struct TlsConnection(TlsStream<TcpStream>);

impl Connection for TlsConnection {
    fn connected(&self) -> Connected {
        self.0.get_ref().0.connected()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
