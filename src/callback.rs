//! Promise-or-callback plumbing shared by every asynchronous method.
//!
//! Like `azure-iothub`'s `tripleValueCallbackToPromise`: with a callback the method returns
//! `undefined`, throws validation errors synchronously and later calls `done(null, result,
//! response)` or `done(err)`; without one it returns a promise that settles with the packed
//! result, and validation errors reject it.
//!
//! The request runs on the addon's Tokio runtime (see `completion`); its outcome is turned into
//! JavaScript values on the JavaScript thread. A callback runs in the async context of the call
//! that started it (`AsyncLocalStorage` sees the caller's store), and one that throws is reported
//! as `uncaughtException`, as it would be from a Node event handler; a panic becomes an `Error`
//! instead of an abort.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use iothub_jobs_core::Error as CoreError;
use napi::sys::{napi_env, napi_value};
use napi::Result;

use crate::completion;
use crate::errors;
use crate::js::{self, AsyncScope, Deferred, Retained};

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
        // `undefined` (no callback, the usual promise call) is told by one type check.
        if js::kind(env, done) == js::Kind::Undefined || !js::truthy(env, done) {
            Ok(Mode::Promise)
        } else if js::is_function(env, done) {
            Ok(Mode::Callback(done))
        } else {
            Err(errors::type_error(env, "Callback has to be a Function"))
        }
    }

    /// Whether the caller gets a promise (so a conversion may hand over [`Converted::Packed`]).
    pub(crate) fn is_promise(self) -> bool {
        matches!(self, Mode::Promise)
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
    let (deferred, promise) = Deferred::new(env)?;
    deferred.reject(env, errors::error_value(env, error))?;
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

/// What a conversion hands to [`spawn`]: an [`Outcome`], or, in the promise form only, the
/// promise's value already packed (`Ok`) or its rejection (`Err`), made in one step (see
/// `response::job_status_response`).
pub(crate) enum Converted {
    Outcome(Outcome),
    Packed(std::result::Result<napi_value, napi_value>),
}

impl From<Outcome> for Converted {
    fn from(outcome: Outcome) -> Self {
        Converted::Outcome(outcome)
    }
}

/// Runs the future `request()` builds on the runtime (see [`completion::run`]) and settles the
/// caller with `convert`'s outcome, computed on the JavaScript thread. Returns the promise, or
/// `undefined` in callback mode.
pub(crate) fn spawn<T, R, F, C, O>(
    env: napi_env,
    mode: Mode,
    pack: Pack,
    request: R,
    convert: C,
) -> Result<napi_value>
where
    T: Send + 'static,
    R: FnOnce() -> F + Send + 'static,
    F: Future<Output = std::result::Result<T, CoreError>> + Send + 'static,
    C: FnOnce(napi_env, std::result::Result<T, CoreError>) -> O + Send + 'static,
    O: Into<Converted>,
{
    let (caller, out) = match mode {
        Mode::Promise => {
            let (deferred, promise) = Deferred::new(env)?;
            (Caller::Promise(deferred), promise)
        }
        Mode::Callback(f) => {
            let f = js::call(
                env,
                js::undefined(env),
                js::compiled(env, BIND_CONTEXT)?,
                &[f],
            )?;
            let callback = Caller::Callback(Retained::new(env, f)?, AsyncScope::new(env)?);
            (callback, js::undefined(env))
        }
    };
    // Built inside `CatchUnwind`, so a panic while building is caught too.
    let request = move || CatchUnwind {
        inner: async move { request().await },
    };
    completion::run(env, request, move |env, done| {
        let outcome = catch_unwind(AssertUnwindSafe(|| match done {
            Ok(result) => convert(env, result).into(),
            Err(Panicked) => Err((errors::internal(env, "panic in request"), None)).into(),
        }))
        .unwrap_or_else(|_| Err((errors::internal(env, "panic while settling"), None)).into());
        caller.settle(env, pack, outcome);
    })?;
    Ok(out)
}

/// Who is waiting for an operation.
enum Caller {
    Promise(Deferred),
    /// The user's callback, and the async context it is called in.
    Callback(Retained, AsyncScope),
}

impl Caller {
    fn settle(self, env: napi_env, pack: Pack, converted: Converted) {
        let (outcome, caller) = match (converted, self) {
            (Converted::Outcome(outcome), caller) => (outcome, caller),
            (Converted::Packed(settled), Caller::Promise(deferred)) => {
                // Settling fails only when the environment is going away.
                let _ = match settled {
                    Ok(value) => deferred.resolve(env, value),
                    Err(error) => deferred.reject(env, error),
                };
                return;
            }
            (Converted::Packed(_), caller) => (
                Err((errors::internal(env, "packed outcome for a callback"), None)),
                caller,
            ),
        };
        match caller {
            Caller::Promise(deferred) => {
                // Settling fails only when the environment is going away.
                let _ = match outcome {
                    Ok((result, response)) => match packed(env, pack, result, response) {
                        Ok(value) => deferred.resolve(env, value),
                        Err(e) => deferred.reject(env, errors::error_value(env, e)),
                    },
                    Err((error, _)) => deferred.reject(env, error),
                };
            }
            Caller::Callback(f, scope) => {
                let Ok(f) = f.release(env) else { return };
                let undefined = js::undefined(env);
                let called = scope.run(env, || match outcome {
                    Ok((result, response)) => {
                        js::call(env, undefined, f, &[js::null(env), result, response])
                    }
                    Err((error, Some(response))) => {
                        js::call(env, undefined, f, &[error, undefined, response])
                    }
                    Err((error, None)) => js::call(env, undefined, f, &[error]),
                });
                if let Err(thrown) = called {
                    js::report_uncaught(env, thrown);
                }
            }
        }
    }
}

fn packed(
    env: napi_env,
    pack: Pack,
    result: napi_value,
    response: napi_value,
) -> Result<napi_value> {
    let pack = match pack {
        Pack::Job => JOB_STATUS_RESPONSE,
        Pack::Query => RESULT_WITH_INCOMING_MESSAGE,
        Pack::Value => return Ok(result),
    };
    js::call(
        env,
        js::undefined(env),
        js::compiled(env, pack)?,
        &[result, response],
    )
}

// The caller's AsyncLocalStorage context, bound to its callback. From Node 24 on, stores live in
// V8's continuation data (AsyncContextFrame), which `napi_async_init`'s context does not capture,
// so the callback scope alone no longer restores them (Node 18 to 23 need only the scope).
// `AsyncResource.bind` captures the frame on every runtime that has one, Bun and Deno included;
// a runtime without `process.getBuiltinModule` (Node < 20.16) keeps the plain function.
const BIND_CONTEXT: &str = "(() => { const hooks = globalThis.process?.getBuiltinModule?.('node:async_hooks'); \
     return hooks ? function bindContext(f) { return hooks.AsyncResource.bind(f); } : function bindContext(f) { return f; }; })()";

// Object literals of a fixed shape: cheaper for V8 than two Node-API property sets, each of
// which looks up its key by name (see `response::INCOMING_MESSAGE`).
const JOB_STATUS_RESPONSE: &str =
    "(function jobStatusResponse(jobStatus, response) { return { jobStatus, response }; })";
const RESULT_WITH_INCOMING_MESSAGE: &str =
    "(function resultWithIncomingMessage(result, message) { return { result, message }; })";

/// A panic inside the request future.
struct Panicked;

pin_project_lite::pin_project! {
    /// Polls a future, turning a panic into [`Panicked`] instead of unwinding through the runtime.
    struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::result::Result<F::Output, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(_) => Poll::Ready(Err(Panicked)),
        }
    }
}
