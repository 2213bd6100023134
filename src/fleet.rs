//! The fleet calls' native side: `__runFleetJob(call, spec, onProgress, abortSignal)`.
//!
//! `lib/fleet.js` gives the public `runDeviceMethodJob` / `runTwinUpdateJob` their shape and
//! hands the job description and options over as one JSON text (no functions, no signal), so
//! that the orchestration and its validation stay in core (`iothub_jobs_core::fleet`).

use std::sync::Arc;

use iothub_jobs_core::fleet::{FleetError, FleetOutcome, FleetRequest};
use iothub_jobs_core::monitor::ProgressError;
use napi::bindgen_prelude::{Env, Function, JsValue, Unknown};
use napi::sys::{napi_env, napi_value};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Result, Status};
use napi_derive::napi;

use crate::abort;
use crate::callback::{Mode, Outcome};
use crate::client::JobClient;
use crate::errors;
use crate::js::{self, Js, Kind, ToJs};
use crate::modern;

/// JSON produced in core, parsed with the real `JSON.parse` on the JavaScript thread.
struct JsonText(String);

impl ToJs for JsonText {
    fn to_js(self, env: napi_env) -> Result<napi_value> {
        js::json_parse(env, self.0.as_bytes())
    }
}

/// `onProgress(progress)`; what it returns is ignored.
type OnProgress = ThreadsafeFunction<Js<JsonText>, Js<()>, Js<JsonText>, Status, false, true>;

fn progress_function(env: napi_env, f: napi_value) -> Result<Option<OnProgress>> {
    match js::kind(env, f) {
        Kind::Undefined | Kind::Null => Ok(None),
        Kind::Function => {
            let function: Function<'_, Js<JsonText>, Js<()>> = js::from_value(env, f)?;
            Ok(Some(
                function
                    .build_threadsafe_function::<Js<JsonText>>()
                    .weak::<true>()
                    .callee_handled::<false>()
                    .build()?,
            ))
        }
        _ => Err(errors::type_error(
            env,
            "options.onProgress must be a function",
        )),
    }
}

/// A failed fleet call as the caller sees it: `errors.TimeoutError` carrying the last
/// `progress`, the hub's error, an `ArgumentError` for bad options, or what `onProgress` threw.
fn fleet_error(env: napi_env, error: FleetError) -> Result<napi_value> {
    match error {
        FleetError::Timeout { ref progress, .. } => {
            let err = errors::hub_error(env, "TimeoutError", &error.to_string())?;
            let value = match progress {
                Some(p) => js::json_parse(env, p.to_json().as_bytes())?,
                None => js::undefined(env),
            };
            js::set(env, err, c"progress", value)?;
            Ok(err)
        }
        FleetError::Failed(e) => errors::core_error(env, e),
        FleetError::Progress(e) => {
            if let Some(thrown) = e.downcast_ref::<napi::Error>() {
                return js::error_value(env, thrown.try_clone()?);
            }
            errors::hub_error(env, "Error", &e.to_string())
        }
    }
}

#[napi]
impl JobClient {
    /// `__runFleetJob(call, specJson, onProgress?, abortSignal?)` → `Promise<result>` (without
    /// `deviceJobs`, which `lib/fleet.js` adds).
    #[napi(js_name = "__runFleetJob", skip_typescript, catch_unwind)]
    pub fn run_fleet_job<'a>(
        &self,
        env: &'a Env,
        call: Unknown<'a>,
        spec: Unknown<'a>,
        on_progress: Unknown<'a>,
        abort_signal: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        let raw = env.raw();
        let parsed = (|| -> Result<_> {
            let call = js::to_string(raw, call.raw())?;
            let spec = js::to_string(raw, spec.raw())?;
            let request = FleetRequest::from_json(&call, &spec)
                .map_err(|e| js::retain_error(raw, errors::core_error_value(raw, e)))?;
            let progress = progress_function(raw, on_progress.raw())?;
            let signal = match js::kind(raw, abort_signal.raw()) {
                Kind::Undefined | Kind::Null => None,
                _ => {
                    let holder = js::object(raw)?;
                    js::set(raw, holder, c"abortSignal", abort_signal.raw())?;
                    abort::signal_option(raw, holder)?
                }
            };
            Ok((request, progress, signal))
        })();
        let (request, progress, signal) = match parsed {
            Ok(p) => p,
            Err(e) => return Ok(js::unknown(env, Mode::Promise.fail(raw, e)?)),
        };
        let client = self.inner.clone();
        let progress = progress.map(Arc::new);
        let work = async move {
            client
                .run_fleet_job(&request, move |p| {
                    let progress = progress.clone();
                    async move {
                        if let Some(progress) = progress {
                            progress
                                .call_async_catch(Js(JsonText(p.to_json())))
                                .await
                                .map_err(|e| Box::new(e) as ProgressError)?;
                        }
                        Ok(())
                    }
                })
                .await
        };
        let convert =
            |env: napi_env, result: std::result::Result<FleetOutcome, FleetError>| -> Outcome {
                let value = match result {
                    Ok(outcome) => js::json_parse(env, outcome.to_json().as_bytes()),
                    Err(e) => {
                        return Err((
                            fleet_error(env, e).unwrap_or_else(|e| errors::error_value(env, e)),
                            None,
                        ))
                    }
                };
                match value {
                    Ok(v) => Ok((v, js::undefined(env))),
                    Err(e) => Err((errors::error_value(env, e), None)),
                }
            };
        let out = modern::run(raw, signal, work, convert)?;
        Ok(js::unknown(env, out))
    }
}
