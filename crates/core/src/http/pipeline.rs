//! Sending a prepared request: headers, per-attempt and per-call timeouts, the response body
//! cap, and the retry loop.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;

use crate::credential::Auth;
use crate::error::{error_chain_message, translate_response, Error, MAX_RESPONSE_BYTES};
use crate::http::connector::{extra_roots, tls_config, HttpsConnector, ProxySetting};
use crate::http::retry::RetryPolicy;
use crate::log::{LogLevel, Logger};
use crate::options::{ClientOptions, Clock};
use crate::request::{check_header_value, PreparedRequest};
use crate::response::Response;

type HttpClient = Client<HttpsConnector, Full<Bytes>>;

/// The result of one call (all its attempts).
#[derive(Debug)]
pub struct RequestOutcome {
    pub result: Result<Response, Error>,
    /// Attempts made (≥ 1 unless the call failed before sending).
    pub attempts: u32,
    /// Whether an earlier failed attempt may have reached the service (lost response, timeout,
    /// 5xx/408): a later 409 on a PUT may then be our own job.
    pub ambiguous: bool,
}

/// One client's connection pool, identity and policies.
pub struct Pipeline {
    /// Built by the first call: a client that is created and never used (and a cold start)
    /// pays for no TLS configuration, root store or connection pool. What it is built from is
    /// read when the client is created, as documented:
    client: OnceLock<HttpClient>,
    /// `NODE_EXTRA_CA_CERTS` and the `ca` option.
    extra_roots: Vec<CertificateDer<'static>>,
    proxy: ProxySetting,
    /// `Err(message)`: the host name cannot be used; every call fails with it.
    authority: Result<Authority, String>,
    auth: Auth,
    user_agent: HeaderValue,
    pub(crate) api_version: String,
    retry: RetryPolicy,
    attempt_timeout: Option<Duration>,
    call_timeout: Option<Duration>,
    clock: Arc<dyn Clock>,
    random: ring::rand::SystemRandom,
    /// `AZURE_LOG_LEVEL` / `DEBUG`, read when the client is built.
    log: Logger,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("authority", &self.authority)
            .field("auth", &self.auth)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Why an attempt failed, and what that means for retrying.
struct AttemptError {
    error: Error,
    /// A retry may help (connection errors yes, certificate or configuration errors no).
    retryable: bool,
    /// The request may have reached the service.
    maybe_sent: bool,
}

impl Pipeline {
    pub(crate) fn new(host: &str, auth: Auth, options: &ClientOptions) -> Result<Pipeline, Error> {
        let user_agent = HeaderValue::from_str(&options.user_agent)
            .map_err(|_| Error::argument("The user agent is not a valid header value"))?;
        let authority = host
            .parse::<Authority>()
            .ok()
            .filter(|a| !a.host().is_empty() && !host.contains('@'))
            .ok_or_else(|| format!("Invalid host name: {:?}", without_userinfo(host)));
        Ok(Pipeline {
            client: OnceLock::new(),
            extra_roots: extra_roots(options.ca_pem.as_deref())?,
            proxy: ProxySetting::new(options.proxy.as_deref()),
            authority,
            auth,
            user_agent,
            api_version: options.api_version.clone(),
            retry: RetryPolicy::new(options.retry.clone()),
            attempt_timeout: options.attempt_timeout,
            call_timeout: options.call_timeout,
            clock: options.clock.clone(),
            random: ring::rand::SystemRandom::new(),
            log: Logger::from_env(),
        })
    }

    /// The connection pool, built on first use.
    fn client(&self, authority: &Authority) -> Result<&HttpClient, Error> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let destination: http::Uri = format!("https://{authority}/")
            .parse()
            .map_err(|e| Error::argument(format!("Invalid host name: {e}")))?;
        let proxy = self.proxy.for_destination(&destination);
        let connector = HttpsConnector::new(tls_config(&self.extra_roots)?, proxy, &destination);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .http1_title_case_headers(true)
            .set_host(false)
            .build(connector);
        // Two first calls may race here; both clients are equivalent and one is kept.
        Ok(self.client.get_or_init(|| client))
    }

    fn random_unit(&self) -> f64 {
        let bytes: [u8; 8] = ring::rand::generate(&self.random)
            .map(|r| r.expose())
            .unwrap_or([0x80; 8]);
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Sends `prepared`, retrying per policy, bounded by the call timeout. Every attempt carries
    /// the same `Request-Id`.
    pub async fn execute(&self, prepared: &PreparedRequest) -> RequestOutcome {
        self.execute_until(prepared, |_| false).await
    }

    /// [`execute`](Self::execute), except that an error for which `is_final` holds is returned
    /// at once instead of being retried (the fleet calls wait for a job slot themselves).
    pub async fn execute_until(
        &self,
        prepared: &PreparedRequest,
        is_final: impl Fn(&Error) -> bool,
    ) -> RequestOutcome {
        let request_id = new_request_id();
        let deadline = self.call_timeout.map(|t| Instant::now() + t);
        let mut attempts = 0u32;
        let mut ambiguous = false;
        let mut last_error: Option<Error> = None;
        let work = async {
            loop {
                let method = prepared.method.as_str();
                let path = prepared.path_and_query.as_str();
                self.log
                    .attempt_started(method, path, attempts + 1, &request_id);
                let started = Instant::now();
                let outcome = self.attempt(prepared, &request_id).await;
                attempts += 1;
                self.log_attempt(prepared, &outcome, started, attempts, &request_id);
                let failure = match outcome {
                    Ok(response) if response.status < 300 => return Ok(response),
                    Ok(response) => {
                        let status = response.status;
                        let error = translate_response(response);
                        AttemptError {
                            retryable: error.is_transient(),
                            maybe_sent: status != 429,
                            error,
                        }
                    }
                    Err(e) => e,
                };
                let retry = attempts - 1;
                let delay = if failure.retryable && !is_final(&failure.error) {
                    self.retry
                        .delay(retry, &failure.error, self.clock.now(), self.random_unit())
                } else {
                    None
                };
                let Some(delay) = delay else {
                    self.log_give_up(prepared, &failure, retry);
                    return Err(failure.error);
                };
                // A wait that would outlive the call budget cannot lead to success: report the
                // real error now rather than a timeout later.
                let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if remaining.is_some_and(|r| delay >= r.saturating_sub(Duration::from_millis(1))) {
                    self.log.retry_decision(
                        method,
                        path,
                        None,
                        retry,
                        self.retry.max_retries(),
                        &format!(
                            "the {} ms wait would outlive the call timeout: {}",
                            delay.as_millis(),
                            failure.error
                        ),
                    );
                    return Err(failure.error);
                }
                self.log.retry_decision(
                    method,
                    path,
                    Some(delay),
                    retry,
                    self.retry.max_retries(),
                    &failure.error.to_string(),
                );
                ambiguous |= failure.maybe_sent;
                last_error = Some(failure.error);
                tokio::time::sleep(delay).await;
            }
        };
        let result = match self.call_timeout {
            None => work.await,
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    message: format!(
                        "The operation did not complete within the call timeout of {} ms{}",
                        limit.as_millis(),
                        match &last_error {
                            Some(e) => format!(" (last error: {e})"),
                            None => String::new(),
                        }
                    ),
                }),
            },
        };
        RequestOutcome {
            result,
            attempts,
            ambiguous,
        }
    }

    fn log_attempt(
        &self,
        prepared: &PreparedRequest,
        outcome: &Result<Response, AttemptError>,
        started: Instant,
        attempt: u32,
        request_id: &str,
    ) {
        if !self.log.enabled(LogLevel::Info) {
            return;
        }
        let outcome: String = match outcome {
            Ok(r) => format!("{} {}", r.status, r.status_text),
            Err(e) => format!("failed: {}", e.error),
        };
        self.log.attempt_finished(
            prepared.method.as_str(),
            &prepared.path_and_query,
            &outcome,
            started.elapsed(),
            attempt,
            request_id,
        );
    }

    fn log_give_up(&self, prepared: &PreparedRequest, failure: &AttemptError, retry: u32) {
        if !self.log.enabled(LogLevel::Warning) {
            return;
        }
        let reason = if !failure.retryable {
            format!("not retryable: {}", failure.error)
        } else if self.retry.max_retries() == 0 {
            format!("retries are off: {}", failure.error)
        } else if retry >= self.retry.max_retries() {
            format!("retries exhausted: {}", failure.error)
        } else {
            format!("not retryable: {}", failure.error)
        };
        self.log.retry_decision(
            prepared.method.as_str(),
            &prepared.path_and_query,
            None,
            retry,
            self.retry.max_retries(),
            &reason,
        );
    }

    async fn attempt(
        &self,
        prepared: &PreparedRequest,
        request_id: &str,
    ) -> Result<Response, AttemptError> {
        let not_sent = |error: Error| AttemptError {
            error,
            retryable: false,
            maybe_sent: false,
        };
        let authority = self
            .authority
            .as_ref()
            .map_err(|m| not_sent(Error::Transport { message: m.clone() }))?;
        let authorization = self.auth.authorization().await.map_err(not_sent)?;
        if let Some(value) = &authorization {
            check_header_value("The Authorization header (token)", value).map_err(not_sent)?;
        }
        let request = self
            .build_request(authority, prepared, request_id, authorization.as_deref())
            .map_err(not_sent)?;
        let client = self.client(authority).map_err(not_sent)?;
        let send = async {
            let response = client.request(request).await.map_err(|e| {
                let connect = e.is_connect();
                // Skip hyper-util's own "client error (Connect)" layer: the causes say more.
                let detail = match std::error::Error::source(&e) {
                    Some(cause) => error_chain_message(cause),
                    None => e.to_string(),
                };
                let message = if connect {
                    format!("Cannot connect to {authority}: {detail}")
                } else {
                    format!("Request to {authority} failed: {detail}")
                };
                AttemptError {
                    retryable: is_retryable_transport(&e),
                    maybe_sent: !connect,
                    error: Error::Transport { message },
                }
            })?;
            read_response(response).await
        };
        match self.attempt_timeout {
            None => send.await,
            Some(limit) => match tokio::time::timeout(limit, send).await {
                Ok(r) => r,
                Err(_) => Err(AttemptError {
                    error: Error::Timeout {
                        message: format!(
                            "No complete response within the attempt timeout of {} ms",
                            limit.as_millis()
                        ),
                    },
                    retryable: true,
                    maybe_sent: true,
                }),
            },
        }
    }

    fn build_request(
        &self,
        authority: &Authority,
        prepared: &PreparedRequest,
        request_id: &str,
        authorization: Option<&str>,
    ) -> Result<http::Request<Full<Bytes>>, Error> {
        let uri: http::Uri = format!("https://{authority}{}", prepared.path_and_query)
            .parse()
            .map_err(|e| Error::argument(format!("Invalid request path: {e}")))?;
        let mut request = http::Request::new(Full::new(prepared.body.clone()));
        *request.method_mut() = prepared.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        // Node's order: the operation's headers, Authorization, Request-Id, User-Agent,
        // Content-Length (PUT), then Host and Connection.
        for (name, value) in &prepared.extra_headers {
            headers.append(*name, header_value(name, value)?);
        }
        if let Some(ct) = prepared.content_type {
            headers.append(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if let Some(authorization) = authorization {
            let mut auth = header_value("Authorization", authorization)?;
            auth.set_sensitive(true);
            headers.append(http::header::AUTHORIZATION, auth);
        }
        headers.append(
            HeaderName::from_static("request-id"),
            header_value("Request-Id", request_id)?,
        );
        headers.append(http::header::USER_AGENT, self.user_agent.clone());
        let length = HeaderValue::from(prepared.body.len());
        if prepared.send_content_length && !prepared.body.is_empty() {
            headers.append(http::header::CONTENT_LENGTH, length.clone());
        }
        headers.append(
            http::header::HOST,
            header_value("Host", authority.as_str())?,
        );
        headers.append(
            http::header::CONNECTION,
            HeaderValue::from_static("keep-alive"),
        );
        if prepared.send_content_length && prepared.body.is_empty() {
            headers.append(http::header::CONTENT_LENGTH, length);
        }
        Ok(request)
    }
}

fn header_value(what: &str, value: &str) -> Result<HeaderValue, Error> {
    check_header_value(what, value)?;
    HeaderValue::from_bytes(value.as_bytes())
        .map_err(|_| Error::argument(format!("{what} is not a valid header value")))
}

/// A random (v4) UUID, lower-case and hyphenated, as `uuid.v4()` writes it.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Connection-level failures worth retrying: anything but a certificate or TLS configuration
/// problem (those fail the same way every time).
fn is_retryable_transport(err: &hyper_util::client::legacy::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        // `io::Error::source` skips the wrapped error itself, so look inside explicitly.
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            // An interrupted handshake may succeed next time; a rejected certificate or a
            // protocol mismatch will not.
            return matches!(tls, rustls::Error::HandshakeNotComplete)
                || matches!(tls, rustls::Error::AlertReceived(alert)
                    if !matches!(alert, rustls::AlertDescription::BadCertificate
                        | rustls::AlertDescription::UnknownCA
                        | rustls::AlertDescription::CertificateUnknown
                        | rustls::AlertDescription::ProtocolVersion
                        | rustls::AlertDescription::HandshakeFailure));
        }
        cur = e.source();
    }
    true
}

async fn read_response(
    response: http::Response<hyper::body::Incoming>,
) -> Result<Response, AttemptError> {
    let (parts, mut body) = response.into_parts();
    let too_large = || AttemptError {
        error: Error::ResponseTooLarge {
            limit: MAX_RESPONSE_BYTES,
        },
        retryable: false,
        maybe_sent: true,
    };
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(64 * 1024) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| AttemptError {
            error: Error::Transport {
                message: error_chain_message(&e),
            },
            retryable: true,
            maybe_sent: true,
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    let status_text = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .or_else(|| parts.status.canonical_reason().map(str::to_string))
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                value.as_bytes().iter().map(|&b| b as char).collect(),
            )
        })
        .collect();
    Ok(Response {
        status: parts.status.as_u16(),
        status_text,
        headers,
        body: buf.freeze(),
    })
}

/// `host` with anything before an `@` (userinfo, which may hold a password) replaced, so an
/// error message can show the rest.
fn without_userinfo(host: &str) -> String {
    match host.rfind('@') {
        Some(at) => format!("<redacted>@{}", &host[at + 1..]),
        None => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_pool_is_built_by_the_first_call_only() {
        let options = ClientOptions::default();
        let pipeline = Pipeline::new("hub.example:443", Auth::Anonymous, &options).unwrap();
        assert!(pipeline.client.get().is_none(), "built with the client");
        let authority = pipeline.authority.clone().unwrap();
        let first: *const HttpClient = pipeline.client(&authority).unwrap();
        assert!(std::ptr::eq(first, pipeline.client(&authority).unwrap()));
    }

    #[test]
    fn a_ca_option_without_certificates_fails_when_the_client_is_built() {
        let options = ClientOptions {
            ca_pem: Some("not a certificate".into()),
            ..ClientOptions::default()
        };
        let error = Pipeline::new("hub.example", Auth::Anonymous, &options).unwrap_err();
        assert!(error
            .to_string()
            .contains("does not contain any PEM certificate"));
    }
}
