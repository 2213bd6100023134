//! `abortSignal` support for the modern API.
//!
//! The call's future is raced against a `CancellationToken` that an `'abort'` listener on the
//! caller's `AbortSignal` cancels. When the token wins, the call settles at once and the request
//! future is dropped, which cancels it wherever it is (connecting, waiting for a response, or
//! sleeping in a retry backoff): nothing in the core holds state that a drop could leave
//! half-done. The listener is removed on the JavaScript thread when the call settles, so a
//! long-lived signal collects no listeners.

use std::future::Future;
use std::task::Poll;

use napi::bindgen_prelude::{Env, JsValue};
use napi::sys::{napi_env, napi_value};
use napi::Result;
use tokio_util::sync::CancellationToken;

use crate::errors;
use crate::js::{self, Kind, Retained};

/// How a raced call ended.
pub(crate) enum Raced<T> {
    Done(T),
    Aborted,
}

/// Runs `work` until it completes or `token` is cancelled; in the latter case `work` is dropped.
/// The token is polled first, so an abort that lands together with the result wins.
pub(crate) async fn race<F: Future>(token: Option<CancellationToken>, work: F) -> Raced<F::Output> {
    let Some(token) = token else {
        return Raced::Done(work.await);
    };
    let mut cancelled = std::pin::pin!(token.cancelled());
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(move |cx| {
        if cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Raced::Aborted);
        }
        work.as_mut().poll(cx).map(Raced::Done)
    })
    .await
}

/// An `abortSignal` option: absent, or an object that looks like an `AbortSignal`.
pub(crate) fn signal_option(env: napi_env, options: napi_value) -> Result<Option<napi_value>> {
    if !matches!(js::kind(env, options), Kind::Object | Kind::Function) {
        return Ok(None);
    }
    let signal = js::get(env, options, c"abortSignal")?;
    match js::kind(env, signal) {
        Kind::Undefined | Kind::Null => Ok(None),
        Kind::Object
            if js::kind(env, js::get(env, signal, c"aborted")?) == Kind::Boolean
                && js::is_function(env, js::get(env, signal, c"addEventListener")?) =>
        {
            Ok(Some(signal))
        }
        _ => Err(errors::type_error(
            env,
            "options.abortSignal must be an AbortSignal",
        )),
    }
}

pub(crate) fn is_aborted(env: napi_env, signal: napi_value) -> Result<bool> {
    Ok(js::truthy(env, js::get(env, signal, c"aborted")?))
}

/// A listener on one signal for the duration of one call.
pub(crate) struct AbortWatch {
    token: CancellationToken,
    signal: Retained,
    listener: Retained,
}

impl AbortWatch {
    /// Adds the `'abort'` listener (the signal must not be aborted yet).
    pub(crate) fn attach(env: napi_env, signal: napi_value) -> Result<AbortWatch> {
        let token = CancellationToken::new();
        let cancel = token.clone();
        let listener = Env::from_raw(env)
            .create_function_from_closure::<(), (), _>("onAbort", move |_| {
                cancel.cancel();
                Ok(())
            })?
            .raw();
        let add = js::get(env, signal, c"addEventListener")?;
        let once = js::object(env)?;
        js::set(env, once, c"once", js::boolean(env, true))?;
        js::call(
            env,
            signal,
            add,
            &[js::string(env, "abort")?, listener, once],
        )?;
        Ok(AbortWatch {
            token,
            signal: Retained::new(env, signal)?,
            listener: Retained::new(env, listener)?,
        })
    }

    pub(crate) fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Removes the listener; returns the signal (for the abort reason).
    pub(crate) fn detach(self, env: napi_env) -> Result<napi_value> {
        let signal = self.signal.release(env)?;
        let listener = self.listener.release(env)?;
        let remove = js::get(env, signal, c"removeEventListener")?;
        if js::is_function(env, remove) {
            js::call(env, signal, remove, &[js::string(env, "abort")?, listener])?;
        }
        Ok(signal)
    }
}
