//! Promise-or-callback plumbing shared by every asynchronous method.
//!
//! Like `azure-iothub`'s `tripleValueCallbackToPromise`: with a callback the method returns
//! `undefined`, throws validation errors synchronously and later calls `done(null, result,
//! response)` or `done(err)`; without one it returns a promise that settles with the packed
//! result, and validation errors reject it.
//!
//! The request runs on the addon's Tokio runtime; its outcome is turned into JavaScript values
//! on the JavaScript thread. A callback that throws is reported as `uncaughtException`, as it
//! would be from a Node event handler, and a panic becomes an `Error` instead of an abort.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll};

use iothub_jobs_core::Error as CoreError;
use napi::sys::{self, napi_env, napi_value};
use napi::Result;

use crate::errors;
use crate::js::{self, Retained};

/// How the caller wants the outcome.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    Promise,
    /// The user's callback (a function).
    Callback(napi_value),
}

impl Mode {
    /// The reference's rule: a truthy callback must be a function (always a synchronous
    /// `TypeError`); a falsy one means "return a promise".
    pub(crate) fn from_callback(env: napi_env, done: napi_value) -> Result<Mode> {
        if !js::truthy(env, done) {
            Ok(Mode::Promise)
        } else if js::is_function(env, done) {
            Ok(Mode::Callback(done))
        } else {
            Err(errors::type_error(env, "Callback has to be a Function"))
        }
    }

    /// Delivers a validation failure: thrown with a callback, a rejected promise without.
    pub(crate) fn fail(self, env: napi_env, error: napi::Error) -> Result<napi_value> {
        match self {
            Mode::Callback(_) => Err(error),
            Mode::Promise => rejected_promise(env, error),
        }
    }
}

fn rejected_promise(env: napi_env, error: napi::Error) -> Result<napi_value> {
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    js::check(env, unsafe {
        sys::napi_create_promise(env, &mut deferred, &mut promise)
    })?;
    let reason = unsafe { napi::bindgen_prelude::ToNapiValue::to_napi_value(env, error)? };
    js::check(env, unsafe {
        sys::napi_reject_deferred(env, deferred, reason)
    })?;
    Ok(promise)
}

/// How a promise packs `(result, response)`.
#[derive(Clone, Copy)]
pub(crate) enum Pack {
    /// `{ jobStatus, response }` (`JobStatusResponse`).
    Job,
    /// `{ result, message }` (`ResultWithIncomingMessage`).
    Query,
    /// The result alone (the modern API).
    Value,
}

/// What a completed operation hands to the caller: `(result, response)`, or an error with,
/// for a body that is not valid JSON, the response (the reference calls
/// `done(err, undefined, response)` then).
pub(crate) type Outcome =
    std::result::Result<(napi_value, napi_value), (napi_value, Option<napi_value>)>;

/// Runs `request` on the runtime and settles the caller with `convert`'s outcome, computed on
/// the JavaScript thread. Returns the promise, or `undefined` in callback mode.
pub(crate) fn spawn<T, F, C>(
    env: napi_env,
    mode: Mode,
    pack: Pack,
    request: F,
    convert: C,
) -> Result<napi_value>
where
    T: Send + 'static,
    F: Future<Output = std::result::Result<T, CoreError>> + Send + 'static,
    C: FnOnce(napi_env, std::result::Result<T, CoreError>) -> Outcome + 'static,
{
    let callback = match mode {
        Mode::Callback(f) => Some(Retained::new(env, f)?),
        Mode::Promise => None,
    };
    let work = async move { Ok::<_, napi::Error>(CatchUnwind(request).await) };
    let settle = move |env: napi_env, done: Completed<T>| -> Result<napi_value> {
        match catch_unwind(AssertUnwindSafe(|| {
            settle(env, callback, pack, done, convert)
        })) {
            Ok(result) => result,
            Err(_) => Err(js::retain_error(
                env,
                errors::internal(env, "panic while settling"),
            )),
        }
    };
    let promise = napi::bindgen_prelude::execute_tokio_future(env, work, settle)?;
    Ok(match mode {
        Mode::Promise => promise,
        Mode::Callback(_) => js::undefined(env),
    })
}

type Completed<T> = std::result::Result<std::result::Result<T, CoreError>, Panicked>;

fn settle<T, C>(
    env: napi_env,
    callback: Option<Retained>,
    pack: Pack,
    done: Completed<T>,
    convert: C,
) -> Result<napi_value>
where
    C: FnOnce(napi_env, std::result::Result<T, CoreError>) -> Outcome,
{
    let outcome = match done {
        Ok(result) => convert(env, result),
        Err(Panicked) => Err((errors::internal(env, "panic in request"), None)),
    };
    let Some(callback) = callback else {
        return match outcome {
            Ok((result, response)) => packed(env, pack, result, response),
            Err((error, _)) => Err(js::retain_error(env, error)),
        };
    };
    let f = callback.release(env)?;
    let undefined = js::undefined(env);
    let called = match outcome {
        Ok((result, response)) => js::call(env, undefined, f, &[js::null(env), result, response]),
        Err((error, Some(response))) => js::call(env, undefined, f, &[error, undefined, response]),
        Err((error, None)) => js::call(env, undefined, f, &[error]),
    };
    if let Err(thrown) = called {
        js::report_uncaught(env, thrown);
    }
    Ok(undefined)
}

fn packed(
    env: napi_env,
    pack: Pack,
    result: napi_value,
    response: napi_value,
) -> Result<napi_value> {
    let obj = js::object(env)?;
    match pack {
        Pack::Job => {
            js::set(env, obj, c"jobStatus", result)?;
            js::set(env, obj, c"response", response)?;
        }
        Pack::Query => {
            js::set(env, obj, c"result", result)?;
            js::set(env, obj, c"message", response)?;
        }
        Pack::Value => return Ok(result),
    }
    Ok(obj)
}

/// Converts an internal `napi::Error` raised while building an outcome into an error value.
pub(crate) fn error_value(env: napi_env, error: napi::Error) -> napi_value {
    unsafe { napi::bindgen_prelude::ToNapiValue::to_napi_value(env, error) }
        .unwrap_or_else(|_| errors::internal(env, "conversion failed"))
}

/// A panic inside the request future.
struct Panicked;

/// Polls a future, turning a panic into [`Panicked`] instead of unwinding through the runtime.
struct CatchUnwind<F>(F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::result::Result<F::Output, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Safety: structural pinning of the only field; it is never moved out.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(_) => Poll::Ready(Err(Panicked)),
        }
    }
}
