//! A JavaScript `TokenCredential` (anything with `getToken(scope)` returning a promise of
//! `{ token, expiresOnTimestamp }`, as `@azure/identity` credentials do) used by the core.
//!
//! `getToken` is called on the JavaScript thread through a weak threadsafe function bound to
//! the credential object (so `this` is the credential and an idle client never keeps the
//! process alive). A rejection (or a synchronous throw) travels back to the caller as the very
//! same JavaScript value. Caching, renewal and single flight are the core's job.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iothub_jobs_core::credential::TokenFuture;
use iothub_jobs_core::{AccessToken, CredentialError, TokenCredential, IOTHUB_TOKEN_SCOPE};
use napi::bindgen_prelude::{Function, Promise};
use napi::sys::{napi_env, napi_value};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Result, Status};

use crate::js::{self, FromJs, Js, Kind};

/// A credential without a callable `getToken` (it fails on first use, as in the reference).
#[derive(Debug)]
pub(crate) struct NotCallable;

impl fmt::Display for NotCallable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this._config.tokenCredential.getToken is not a function")
    }
}

impl std::error::Error for NotCallable {}

/// What `getToken(scope)` resolved to.
enum TokenValue {
    Token {
        token: String,
        expires_on_ms: Option<f64>,
    },
    Missing,
}

impl FromJs for TokenValue {
    fn from_js(env: napi_env, value: napi_value) -> Result<Self> {
        if !js::truthy(env, value) {
            return Ok(TokenValue::Missing);
        }
        let token = js::get_any(env, value, c"token")?;
        let token = js::to_string(env, token)?;
        let expires = js::get_any(env, value, c"expiresOnTimestamp")?;
        let expires_on_ms = if js::kind(env, expires) == Kind::Number {
            let n = js::double(env, expires)?;
            n.is_finite().then_some(n)
        } else {
            None
        };
        Ok(TokenValue::Token {
            token,
            expires_on_ms,
        })
    }
}

/// `getToken`'s return value, adopted like `await` does (`Promise.resolve(value)`), so plain
/// values and thenables work as well as promises.
struct TokenReply(Promise<Js<TokenValue>>);

impl FromJs for TokenReply {
    fn from_js(env: napi_env, value: napi_value) -> Result<Self> {
        let promise_ctor = js::get(env, js::global(env)?, c"Promise")?;
        let resolve = js::get(env, promise_ctor, c"resolve")?;
        let adopted = js::call(env, promise_ctor, resolve, &[value])?;
        Ok(TokenReply(js::from_value(env, adopted)?))
    }
}

type GetToken = ThreadsafeFunction<String, Js<TokenReply>, String, Status, false, true>;

pub(crate) struct JsTokenCredential {
    get_token: Option<GetToken>,
}

impl JsTokenCredential {
    /// Binds `credential.getToken` to `credential`. A credential without a callable `getToken`
    /// is accepted here and fails on first use, as in the reference.
    pub(crate) fn new(env: napi_env, credential: napi_value) -> Result<Self> {
        if !matches!(js::kind(env, credential), Kind::Object | Kind::Function) {
            return Ok(Self { get_token: None });
        }
        let method = js::get(env, credential, c"getToken")?;
        if !js::is_function(env, method) {
            return Ok(Self { get_token: None });
        }
        let bind = js::get(env, method, c"bind")?;
        let bound = js::call(env, method, bind, &[credential])?;
        let function: Function<'_, String, Js<TokenReply>> = js::from_value(env, bound)?;
        let tsfn = function
            .build_threadsafe_function::<String>()
            .weak::<true>()
            .callee_handled::<false>()
            .build()?;
        Ok(Self {
            get_token: Some(tsfn),
        })
    }
}

fn credential_error(e: impl std::error::Error + Send + Sync + 'static) -> CredentialError {
    CredentialError(Arc::new(e))
}

impl TokenCredential for JsTokenCredential {
    fn get_token<'a>(&'a self, scopes: &'a [&'a str]) -> TokenFuture<'a> {
        let scope = scopes
            .first()
            .copied()
            .unwrap_or(IOTHUB_TOKEN_SCOPE)
            .to_owned();
        Box::pin(async move {
            let Some(get_token) = &self.get_token else {
                return Err(credential_error(NotCallable));
            };
            let reply = get_token
                .call_async_catch(scope)
                .await
                .map_err(credential_error)?;
            match reply.0 .0.await.map_err(credential_error)?.0 {
                // Core reports this as `Error('AccessToken creation failed')`.
                TokenValue::Missing => Ok(None),
                TokenValue::Token {
                    token,
                    expires_on_ms,
                } => Ok(Some(AccessToken {
                    token,
                    expires_on: expires_on_ms.map(system_time_from_ms),
                })),
            }
        })
    }
}

fn system_time_from_ms(ms: f64) -> SystemTime {
    if ms >= 0.0 {
        UNIX_EPOCH + Duration::from_secs_f64(ms / 1000.0)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs_f64(-ms / 1000.0))
            .unwrap_or(UNIX_EPOCH)
    }
}
