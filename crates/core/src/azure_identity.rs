//! Native Azure AD credentials through the `azure_identity` crate (cargo feature
//! `azure-identity`): managed identity, workload identity, client secret and Azure CLI.
//!
//! - [`AzureTokenCredential`] adapts an `azure_core` `TokenCredential` to ours, so caching,
//!   proactive refresh and single flight stay in
//!   [`TokenCredentialProvider`](crate::credential::TokenCredentialProvider).
//! - [`IdentityHttpClient`] is `azure_core`'s `HttpClient` on this crate's own hyper + rustls
//!   stack: the same trust (Mozilla's roots, as Node + `NODE_EXTRA_CA_CERTS` + the `ca` option), the same
//!   proxy rules (`proxy` option or `HTTPS_PROXY`/`NO_PROXY` read when the credential is
//!   created, CONNECT) and the attempt timeout apply to the token requests as to the hub.
//!   `azure_core` is built without reqwest, so no second TLS stack and no OpenSSL are linked.
//!   Plain `http://` endpoints (App Service / IMDS managed identity, always local) are reached
//!   directly, never through a proxy.
//! - Errors are reduced to their (redacted) message: `azure_core` errors can carry the raw
//!   response, and nothing secret may reach `Debug` output.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::Secret;
use azure_core::error::ErrorKind;
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{
    AsyncRawResponse, Body, ExponentialRetryOptions, HttpClient, Method, Request, StatusCode,
    Transport,
};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::credential::{AccessToken, TokenCredential, TokenFuture};
use crate::error::{error_chain_message, CredentialError, Error};
use crate::http::connector::{extra_roots, tls_config, HttpsConnector, ProxySetting};
use crate::jobs::JobClient;
use crate::log::{redact, LogLevel, Logger};
use crate::options::ClientOptions;

/// Largest token-endpoint response we read.
const MAX_IDENTITY_RESPONSE_BYTES: usize = 1024 * 1024;

/// A credential failure from `azure_identity`, reduced to its redacted message.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityError {
    message: String,
}

impl IdentityError {
    fn new(message: impl AsRef<str>) -> Self {
        IdentityError {
            message: redact(message.as_ref().trim()),
        }
    }

    fn from_azure(err: &azure_core::Error) -> Self {
        IdentityError::new(err.to_string())
    }
}

impl fmt::Debug for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdentityError").field(&self.message).finish()
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IdentityError {}

fn credential_error(err: &azure_core::Error) -> Error {
    Error::Credential(CredentialError::new(IdentityError::from_azure(err)))
}

/// Any `azure_core` credential used as ours.
pub struct AzureTokenCredential {
    inner: Arc<dyn azure_core::credentials::TokenCredential>,
}

impl fmt::Debug for AzureTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureTokenCredential")
            .finish_non_exhaustive()
    }
}

impl AzureTokenCredential {
    pub fn new(inner: Arc<dyn azure_core::credentials::TokenCredential>) -> Self {
        AzureTokenCredential { inner }
    }
}

impl TokenCredential for AzureTokenCredential {
    fn get_token<'a>(&'a self, scopes: &'a [&'a str]) -> TokenFuture<'a> {
        Box::pin(async move {
            let token = self
                .inner
                .get_token(scopes, None)
                .await
                .map_err(|e| CredentialError::new(IdentityError::from_azure(&e)))?;
            Ok(Some(AccessToken {
                token: token.token.secret().to_string(),
                expires_on: Some(SystemTime::from(token.expires_on)),
            }))
        })
    }
}

#[derive(Clone)]
enum Route {
    Tls(Client<HttpsConnector, Full<Bytes>>),
    Plain(Client<HttpConnector, Full<Bytes>>),
}

/// `azure_core`'s `HttpClient` on our hyper + rustls stack (one pooled client per origin).
pub struct IdentityHttpClient {
    tls: rustls::ClientConfig,
    proxy: ProxySetting,
    attempt_timeout: Option<Duration>,
    log: Logger,
    routes: Mutex<HashMap<String, Route>>,
}

impl fmt::Debug for IdentityHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityHttpClient")
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl IdentityHttpClient {
    /// Trust, proxy and attempt timeout from the client's options; the log level from the
    /// environment (read now).
    pub fn new(options: &ClientOptions) -> Result<Self, Error> {
        Ok(IdentityHttpClient {
            tls: tls_config(&extra_roots(options.ca_pem.as_deref())?)?,
            proxy: ProxySetting::new(options.proxy.as_deref()),
            attempt_timeout: options.attempt_timeout,
            log: Logger::from_env(),
            routes: Mutex::new(HashMap::new()),
        })
    }

    fn route(&self, uri: &http::Uri) -> azure_core::Result<Route> {
        let scheme = uri.scheme_str().unwrap_or("");
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
        let key = format!("{scheme}://{authority}");
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = routes.get(&key) {
            return Ok(route.clone());
        }
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(30));
            b
        };
        let route = match scheme {
            "https" => {
                let destination: http::Uri = format!("https://{authority}/").parse().map_err(
                    |e: http::uri::InvalidUri| {
                        azure_core::Error::with_message(ErrorKind::Other, e.to_string())
                    },
                )?;
                let proxy = self.proxy.for_destination(&destination);
                let connector = HttpsConnector::new(self.tls.clone(), proxy, &destination);
                Route::Tls(builder().build(connector))
            }
            "http" => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                Route::Plain(builder().build(connector))
            }
            other => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    format!("Unsupported URL scheme {other:?} for a token request"),
                ))
            }
        };
        routes.insert(key, route.clone());
        Ok(route)
    }

    async fn send(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let uri: http::Uri =
            request
                .url()
                .as_str()
                .parse()
                .map_err(|e: http::uri::InvalidUri| {
                    azure_core::Error::with_message(ErrorKind::Other, format!("Invalid URL: {e}"))
                })?;
        let body = match request.body() {
            Body::Bytes(bytes) => bytes.clone(),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    "Streaming request bodies are not supported for token requests",
                ))
            }
        };
        let mut builder = http::Request::builder()
            .method(http_method(request.method()))
            .uri(uri.clone());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let http_request = builder.body(Full::new(body)).map_err(|e| {
            azure_core::Error::with_message(ErrorKind::Other, format!("Invalid request: {e}"))
        })?;
        let response = match self.route(&uri)? {
            Route::Tls(client) => client.request(http_request).await,
            Route::Plain(client) => client.request(http_request).await,
        }
        .map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            let detail = match std::error::Error::source(&e) {
                Some(cause) => error_chain_message(cause),
                None => e.to_string(),
            };
            let host = uri.authority().map(|a| a.as_str()).unwrap_or("");
            azure_core::Error::with_message(
                kind,
                format!("Token request to {host} failed: {detail}"),
            )
        })?;
        let (parts, mut incoming) = response.into_parts();
        let mut buf = BytesMut::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| {
                azure_core::Error::with_message(ErrorKind::Io, error_chain_message(&e))
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > MAX_IDENTITY_RESPONSE_BYTES {
                    return Err(azure_core::Error::with_message(
                        ErrorKind::Io,
                        "The token endpoint's response is too large",
                    ));
                }
                buf.extend_from_slice(&data);
            }
        }
        let headers: HashMap<HeaderName, HeaderValue> = parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let value = value.to_str().ok()?;
                Some((
                    HeaderName::from(name.as_str().to_owned()),
                    HeaderValue::from(value.to_owned()),
                ))
            })
            .collect();
        Ok(AsyncRawResponse::from_bytes(
            StatusCode::from(parts.status.as_u16()),
            Headers::from(headers),
            buf.freeze(),
        ))
    }
}

fn http_method(method: Method) -> http::Method {
    match method {
        Method::Delete => http::Method::DELETE,
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Patch => http::Method::PATCH,
        Method::Put => http::Method::PUT,
        _ => http::Method::POST,
    }
}

/// `scheme://host[:port]/path` of a token request: the query is left out (it holds nothing
/// secret today, but it is not ours to judge).
fn request_line(request: &Request) -> String {
    let mut url = request.url().clone();
    url.set_query(None);
    url.set_fragment(None);
    format!("{} {url}", http_method(request.method()))
}

#[async_trait::async_trait]
impl HttpClient for IdentityHttpClient {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let started = Instant::now();
        let result = match self.attempt_timeout {
            None => self.send(request).await,
            Some(limit) => match tokio::time::timeout(limit, self.send(request)).await {
                Ok(r) => r,
                Err(_) => Err(azure_core::Error::with_message(
                    ErrorKind::Io,
                    format!(
                        "No complete token response within the attempt timeout of {} ms",
                        limit.as_millis()
                    ),
                )),
            },
        };
        if self.log.enabled(LogLevel::Info) {
            let outcome = match &result {
                Ok(r) => format!("{}", u16::from(r.status())),
                Err(e) => format!("failed: {e}"),
            };
            self.log.log(
                LogLevel::Info,
                format_args!(
                    "identity: {} -> {outcome} in {} ms",
                    request_line(request),
                    started.elapsed().as_millis()
                ),
            );
        }
        result
    }
}

/// `azure_core` client options: our transport, a retry policy mirroring ours, and the authority
/// host when given.
fn azure_options(
    options: &ClientOptions,
    authority_host: Option<&str>,
) -> Result<azure_core::http::ClientOptions, Error> {
    let mut out = azure_core::http::ClientOptions {
        transport: Some(Transport::new(Arc::new(IdentityHttpClient::new(options)?))),
        ..Default::default()
    };
    out.retry = match &options.retry {
        None => azure_core::http::RetryOptions::none(),
        Some(retry) => {
            let to_time = |d: Duration| {
                azure_core::time::Duration::try_from(d)
                    .unwrap_or(azure_core::time::Duration::seconds(60))
            };
            azure_core::http::RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: to_time(retry.initial_delay),
                max_retries: retry.max_retries,
                max_total_elapsed: to_time(
                    options.call_timeout.unwrap_or(Duration::from_secs(300)),
                ),
                max_delay: to_time(retry.max_delay),
            })
        }
    };
    if let Some(host) = authority_host.filter(|h| !h.is_empty()) {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.to_string();
        out.cloud = Some(Arc::new(CloudConfiguration::from(custom)));
    }
    Ok(out)
}

fn wrap(credential: Arc<dyn azure_core::credentials::TokenCredential>) -> Arc<dyn TokenCredential> {
    Arc::new(AzureTokenCredential::new(credential))
}

/// Managed identity (App Service / Functions / Container Apps through `IDENTITY_ENDPOINT` +
/// `IDENTITY_HEADER`, VMs through IMDS); `client_id` selects a user-assigned identity.
pub fn managed_identity_credential(
    client_id: Option<String>,
    options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, Error> {
    let settings = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id
            .filter(|c| !c.is_empty())
            .map(UserAssignedId::ClientId),
        client_options: azure_options(options, None)?,
    };
    let credential =
        ManagedIdentityCredential::new(Some(settings)).map_err(|e| credential_error(&e))?;
    Ok(wrap(credential))
}

/// Settings of [`workload_identity_credential`]; `None` falls back to `AZURE_TENANT_ID`,
/// `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE` and `AZURE_AUTHORITY_HOST`.
#[derive(Debug, Clone, Default)]
pub struct WorkloadIdentity {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub token_file_path: Option<PathBuf>,
    pub authority_host: Option<String>,
}

/// Kubernetes workload identity: a federated token file exchanged at the authority host.
pub fn workload_identity_credential(
    settings: WorkloadIdentity,
    options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, Error> {
    let wi = WorkloadIdentityCredentialOptions {
        credential_options: ClientAssertionCredentialOptions {
            client_options: azure_options(options, settings.authority_host.as_deref())?,
        },
        client_id: settings.client_id.filter(|c| !c.is_empty()),
        tenant_id: settings.tenant_id.filter(|c| !c.is_empty()),
        token_file_path: settings.token_file_path,
    };
    let credential = WorkloadIdentityCredential::new(Some(wi)).map_err(|e| credential_error(&e))?;
    Ok(wrap(credential))
}

/// A service principal's client secret (authority host default: `AZURE_AUTHORITY_HOST`, else
/// the public cloud).
pub fn client_secret_credential(
    tenant_id: &str,
    client_id: &str,
    secret: &str,
    authority_host: Option<&str>,
    options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, Error> {
    let credential = ClientSecretCredential::new(
        tenant_id,
        client_id.to_string(),
        Secret::new(secret.to_string()),
        Some(ClientSecretCredentialOptions {
            client_options: azure_options(options, authority_host)?,
        }),
    )
    .map_err(|e| credential_error(&e))?;
    Ok(wrap(credential))
}

/// The account logged in to the Azure CLI (`az account get-access-token`, run through
/// `/bin/sh`, found on `PATH`).
pub fn azure_cli_credential(tenant_id: Option<String>) -> Result<Arc<dyn TokenCredential>, Error> {
    let credential = AzureCliCredential::new(Some(AzureCliCredentialOptions {
        tenant_id: tenant_id.filter(|t| !t.is_empty()),
        ..Default::default()
    }))
    .map_err(|e| credential_error(&e))?;
    Ok(wrap(credential))
}

impl JobClient {
    /// [`managed_identity_credential`] for `host_name`.
    pub fn from_managed_identity(
        host_name: &str,
        client_id: Option<String>,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let credential = managed_identity_credential(client_id, &options)?;
        JobClient::from_token_credential(host_name, credential, options)
    }

    /// [`workload_identity_credential`] for `host_name`.
    pub fn from_workload_identity(
        host_name: &str,
        settings: WorkloadIdentity,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let credential = workload_identity_credential(settings, &options)?;
        JobClient::from_token_credential(host_name, credential, options)
    }

    /// [`client_secret_credential`] for `host_name`.
    pub fn from_client_secret(
        host_name: &str,
        tenant_id: &str,
        client_id: &str,
        secret: &str,
        authority_host: Option<&str>,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let credential =
            client_secret_credential(tenant_id, client_id, secret, authority_host, &options)?;
        JobClient::from_token_credential(host_name, credential, options)
    }

    /// [`azure_cli_credential`] for `host_name`.
    pub fn from_azure_cli(
        host_name: &str,
        tenant_id: Option<String>,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let credential = azure_cli_credential(tenant_id)?;
        JobClient::from_token_credential(host_name, credential, options)
    }
}
