//! Credentials and the providers that turn them into `Authorization` header values.
//!
//! - [`SasKeyProvider`]: a connection string's key; mints a one-hour token and re-mints it once
//!   it is 15 minutes old, so every request carries a token valid for more than 45 minutes
//!   (the reference mints a fresh one-hour token per request).
//! - [`StaticSas`]: a caller-given SAS string, sent verbatim, never renewed; refused locally once
//!   its `se` has passed.
//! - [`TokenCredentialProvider`]: a bearer-token credential (Azure AD), cached, refreshed when at
//!   most 9 minutes are left, single-flight.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::OnceCell;

use crate::error::{CredentialError, Error};
use crate::options::Clock;
use crate::sas::{create_token_with_key, decode_base64_lenient};
use crate::shared_access_signature::SharedAccessSignature;
use crate::time::unix_millis;

/// The scope IoT Hub data-plane tokens are requested for.
pub const IOTHUB_TOKEN_SCOPE: &str = "https://iothubs.azure.net/.default";

/// Lifetime of a minted SAS token.
pub const SAS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// A minted SAS token is re-minted once this much or less is left (it is then 15 minutes old).
pub const SAS_RENEW_BEFORE: Duration = Duration::from_secs(45 * 60);
/// A bearer token is refetched once at most this is left (as azure-iothub does).
pub const TOKEN_REFRESH_BEFORE: Duration = Duration::from_secs(9 * 60);

/// A bearer token. `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    /// `None`: unknown expiry; such a token is used for one call only.
    pub expires_on: Option<SystemTime>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_on", &self.expires_on)
            .finish()
    }
}

/// Future returned by [`TokenCredential::get_token`].
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<AccessToken>, CredentialError>> + Send + 'a>>;

/// Anything that can produce bearer tokens (the JS `TokenCredential`, `azure_identity`, …).
/// `Ok(None)` means the credential produced no token (JS `getToken` resolving `null`), which
/// becomes [`Error::TokenCreationFailed`].
pub trait TokenCredential: Send + Sync {
    fn get_token<'a>(&'a self, scopes: &'a [&'a str]) -> TokenFuture<'a>;
}

/// Mints SAS tokens from a connection string's key.
pub struct SasKeyProvider {
    host: String,
    key_name: String,
    key: Vec<u8>,
    clock: Arc<dyn Clock>,
    cached: Mutex<Option<(String, u64)>>,
}

impl fmt::Debug for SasKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasKeyProvider")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl SasKeyProvider {
    pub fn new(host: &str, key_name: &str, key_b64: &str, clock: Arc<dyn Clock>) -> Self {
        SasKeyProvider {
            host: host.to_string(),
            key_name: key_name.to_string(),
            key: decode_base64_lenient(key_b64),
            clock,
            cached: Mutex::new(None),
        }
    }

    /// A token valid for more than 45 minutes; `se = ceil(now_s + 3600)` when minted.
    pub fn token(&self) -> String {
        let now_ms = unix_millis(self.clock.now());
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, se)) = cached.as_ref() {
            if i128::from(*se) * 1000 - now_ms > SAS_RENEW_BEFORE.as_millis() as i128 {
                return token.clone();
            }
        }
        let lifetime_ms = SAS_TOKEN_LIFETIME.as_millis() as i128;
        let se = (now_ms + lifetime_ms + 999).div_euclid(1000).max(1) as u64;
        let token = create_token_with_key(&self.host, &self.key_name, &self.key, se);
        *cached = Some((token.clone(), se));
        token
    }
}

/// A SAS string given by the caller.
pub struct StaticSas {
    sas: SharedAccessSignature,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for StaticSas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticSas").field("sas", &self.sas).finish()
    }
}

impl StaticSas {
    pub fn new(sas: SharedAccessSignature, clock: Arc<dyn Clock>) -> Self {
        StaticSas { sas, clock }
    }

    /// The SAS verbatim, or `UnauthorizedError` when its `se` has passed (nothing is sent).
    pub fn token(&self) -> Result<String, Error> {
        if let Some(se) = self.sas.expiry_seconds() {
            let now_s = unix_millis(self.clock.now()) as f64 / 1000.0;
            if se <= now_s {
                return Err(Error::Unauthorized {
                    message: format!(
                        "The shared access signature expired (se={}, {} seconds ago); \
                         create the client with a fresh one",
                        self.sas.se,
                        (now_s - se).floor()
                    ),
                });
            }
        }
        Ok(self.sas.raw.clone())
    }
}

#[derive(Default)]
struct TokenState {
    cached: Option<AccessToken>,
    flight: Option<Arc<OnceCell<Result<AccessToken, Error>>>>,
}

/// Caches a [`TokenCredential`]'s token and fetches a new one single-flight.
pub struct TokenCredentialProvider {
    credential: Arc<dyn TokenCredential>,
    clock: Arc<dyn Clock>,
    state: Mutex<TokenState>,
}

impl fmt::Debug for TokenCredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCredentialProvider")
            .finish_non_exhaustive()
    }
}

impl TokenCredentialProvider {
    pub fn new(credential: Arc<dyn TokenCredential>, clock: Arc<dyn Clock>) -> Self {
        TokenCredentialProvider {
            credential,
            clock,
            state: Mutex::new(TokenState::default()),
        }
    }

    fn is_fresh(&self, token: &AccessToken) -> bool {
        match token.expires_on {
            Some(exp) => {
                unix_millis(exp) - unix_millis(self.clock.now())
                    > TOKEN_REFRESH_BEFORE.as_millis() as i128
            }
            None => false,
        }
    }

    /// `Bearer <token>`. Concurrent callers share one `get_token` call and its result.
    pub async fn authorization(&self) -> Result<String, Error> {
        let flight = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(token) = state.cached.as_ref().filter(|t| self.is_fresh(t)) {
                return Ok(format!("Bearer {}", token.token));
            }
            state
                .flight
                .get_or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let result = flight
            .get_or_init(|| async {
                match self.credential.get_token(&[IOTHUB_TOKEN_SCOPE]).await {
                    Ok(Some(token)) => Ok(token),
                    Ok(None) => Err(Error::TokenCreationFailed),
                    Err(err) => Err(Error::Credential(err)),
                }
            })
            .await
            .clone();
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state
                .flight
                .as_ref()
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                state.flight = None;
                if let Ok(token) = &result {
                    state.cached = token.expires_on.map(|_| token.clone());
                }
            }
        }
        result.map(|t| format!("Bearer {}", t.token))
    }
}

/// How a client authenticates.
#[derive(Debug)]
pub(crate) enum Auth {
    Sas(SasKeyProvider),
    Static(StaticSas),
    Token(TokenCredentialProvider),
    /// No `Authorization` header at all: what azure-iothub sends when `fromTokenCredential` is
    /// given no credential (the hub then answers 401).
    Anonymous,
}

impl Auth {
    /// The `Authorization` header value for the next attempt, if any.
    pub(crate) async fn authorization(&self) -> Result<Option<String>, Error> {
        match self {
            Auth::Sas(p) => Ok(Some(p.token())),
            Auth::Static(p) => p.token().map(Some),
            Auth::Token(p) => p.authorization().await.map(Some),
            Auth::Anonymous => Ok(None),
        }
    }
}
