//! The modern API on `JobClient`: `listJobs`, `listDeviceJobs` (paged async iterators) and
//! `waitForJob`, all promise-based and cancellable through `abortSignal`.
//!
//! Requests, paging headers, polling and error classes are Rust (core and here). The iterator
//! objects themselves come from `lib/paging.js` (registered by the package entry through
//! `__init`), because napi-rs cannot create async generator objects; that file does no
//! I/O: every page is read by [`Pages::fetch`].

use std::sync::Arc;
use std::time::Duration;

use iothub_jobs_core::monitor::ProgressError;
use iothub_jobs_core::{JobClient as CoreClient, JobQuery, PageRequest, Response, WaitOptions};
use napi::bindgen_prelude::{Env, Function, JsValue, Unknown};
use napi::sys::{napi_env, napi_value};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Result, Status};
use napi_derive::napi;

use crate::abort::{self, AbortWatch, Raced};
use crate::args;
use crate::callback::{self, Mode, Outcome, Pack};
use crate::client::JobClient;
use crate::errors;
use crate::js::{self, Js, Kind, ToJs};
use crate::response;

fn paging_module(env: napi_env) -> Result<napi_value> {
    js::paging_module(env)?.ok_or_else(|| {
        errors::hub_thrown(
            env,
            "Error",
            "iothub-jobs: load the package through its entry point (lib/main.js) to use listJobs",
        )
    })
}

/// What a [`Pages`] object lists.
enum Source {
    Jobs {
        job_type: Option<String>,
        job_status: Option<String>,
    },
    DeviceJobs {
        job_id: String,
    },
}

/// The native side of one paged iterator: the state `fetch` reads pages with.
struct Pages {
    client: CoreClient,
    source: Source,
}

/// `options` must be absent or an object.
fn options_object(env: napi_env, options: napi_value, method: &str) -> Result<Option<napi_value>> {
    match js::kind(env, options) {
        Kind::Undefined | Kind::Null => Ok(None),
        Kind::Object => Ok(Some(options)),
        _ => Err(errors::type_error(
            env,
            &format!("{method}: options must be an object"),
        )),
    }
}

/// A page size: a positive integer (at most 1000, the hub's own cap, is not enforced here).
fn page_size(env: napi_env, value: napi_value, name: &str) -> Result<Option<u32>> {
    match js::kind(env, value) {
        Kind::Undefined | Kind::Null => Ok(None),
        Kind::Number => {
            let n = js::double(env, value)?;
            if n.fract() != 0.0 || !(1.0..=f64::from(u32::MAX)).contains(&n) {
                return Err(errors::type_error(
                    env,
                    &format!("{name} must be a positive integer"),
                ));
            }
            Ok(Some(n as u32))
        }
        _ => Err(errors::type_error(
            env,
            &format!("{name} must be a positive integer"),
        )),
    }
}

fn optional_string(
    env: napi_env,
    options: Option<napi_value>,
    key: &std::ffi::CStr,
    name: &str,
) -> Result<Option<String>> {
    match options {
        Some(o) => Ok(args::optional_string(env, o, key, name)?.filter(|s| !s.is_empty())),
        None => Ok(None),
    }
}

/// Builds the iterator: `paging.paged(fetch, abortSignal, maxPageSize)`.
fn paged_iterator<'a>(
    env: &'a Env,
    pages: Pages,
    options: Option<napi_value>,
    method: &str,
) -> Result<Unknown<'a>> {
    let raw = env.raw();
    let (size, signal) = match options {
        Some(o) => (
            page_size(raw, js::get(raw, o, c"maxPageSize")?, "options.maxPageSize")?,
            abort::signal_option(raw, o)?,
        ),
        None => (None, None),
    };
    let paging = paging_module(raw)?;
    let paged = js::get(raw, paging, c"paged")?;
    if !js::is_function(raw, paged) {
        return Err(errors::hub_thrown(
            raw,
            "Error",
            &format!("iothub-jobs: {method} is unavailable"),
        ));
    }
    let fetch = fetch_function(env, pages)?;
    let size = match size {
        Some(n) => js::number(raw, f64::from(n))?,
        None => js::undefined(raw),
    };
    let signal = signal.unwrap_or_else(|| js::undefined(raw));
    let out = js::call(raw, paging, paged, &[fetch, signal, size])?;
    Ok(js::unknown(env, out))
}

/// Starts `work` raced against `signal`, settling a promise through `convert` (JavaScript
/// thread). An already aborted signal rejects at once without starting anything.
pub(crate) fn run<T, F, C>(
    env: napi_env,
    signal: Option<napi_value>,
    work: F,
    convert: C,
) -> Result<napi_value>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
    C: FnOnce(napi_env, T) -> Outcome + Send + 'static,
{
    let watch = match signal {
        Some(signal) if abort::is_aborted(env, signal)? => {
            let err = errors::abort_error(env, signal)?;
            return Mode::Promise.fail(env, js::retain_error(env, err));
        }
        Some(signal) => Some(AbortWatch::attach(env, signal)?),
        None => None,
    };
    let token = watch.as_ref().map(AbortWatch::token);
    let raced =
        move || async move { Ok::<_, iothub_jobs_core::Error>(abort::race(token, work).await) };
    let settle = move |env: napi_env, result: std::result::Result<Raced<T>, _>| -> Outcome {
        let signal = match watch.map(|w| w.detach(env)).transpose() {
            Ok(signal) => signal,
            Err(e) => return Err((errors::error_value(env, e), None)),
        };
        match result {
            Ok(Raced::Done(value)) => convert(env, value),
            Ok(Raced::Aborted) => {
                let signal = signal.unwrap_or_else(|| js::undefined(env));
                Err((
                    errors::abort_error(env, signal)
                        .unwrap_or_else(|e| errors::error_value(env, e)),
                    None,
                ))
            }
            Err(e) => Err((errors::core_error_value(env, e), None)),
        }
    };
    callback::spawn(env, Mode::Promise, Pack::Value, raced, settle)
}

/// A page: `{ items, continuationToken }` (the token `undefined` on the last page).
fn page_value(env: napi_env, response: &Response) -> Result<napi_value> {
    let items = response::result_value(env, response)?;
    if !js::is_array(env, items) {
        return Err(errors::hub_thrown(
            env,
            "FormatError",
            "The hub answered a query with something other than a JSON array",
        ));
    }
    let page = js::object(env)?;
    js::set(env, page, c"items", items)?;
    let token = match response
        .header("x-ms-continuation")
        .filter(|t| !t.is_empty())
    {
        Some(t) => js::string(env, t)?,
        None => js::undefined(env),
    };
    js::set(env, page, c"continuationToken", token)?;
    Ok(page)
}

fn page_outcome(
    env: napi_env,
    result: std::result::Result<Response, iothub_jobs_core::Error>,
) -> Outcome {
    let response = result.map_err(|e| (errors::core_error_value(env, e), None))?;
    match page_value(env, &response) {
        Ok(page) => Ok((page, js::undefined(env))),
        Err(e) => Err((errors::error_value(env, e), None)),
    }
}

/// `fetch(continuationToken?, maxPageSize?, abortSignal?)` → `Promise<{ items, continuationToken }>`,
/// a plain function (not an exported class) so the package's exports stay as typed.
fn fetch_function(env: &Env, pages: Pages) -> Result<napi_value> {
    let function =
        env.create_function_from_closure::<(), Js<napi_value>, _>("fetch", move |ctx| {
            let raw = ctx.env.raw();
            let arg = |i: usize| {
                if i < ctx.length() {
                    ctx.get::<Unknown>(i).map(|u| u.raw())
                } else {
                    Ok(js::undefined(raw))
                }
            };
            let (continuation_token, max_page_size, abort_signal) = (arg(0)?, arg(1)?, arg(2)?);
            pages
                .fetch(raw, continuation_token, max_page_size, abort_signal)
                .map(Js)
        })?;
    Ok(function.raw())
}

impl Pages {
    fn fetch(
        &self,
        raw: napi_env,
        continuation_token: napi_value,
        max_page_size: napi_value,
        abort_signal: napi_value,
    ) -> Result<napi_value> {
        let prepared = (|| -> Result<_> {
            let token = match js::kind(raw, continuation_token) {
                Kind::Undefined | Kind::Null => None,
                Kind::String => Some(js::read_string(raw, continuation_token)?),
                _ => {
                    return Err(errors::type_error(
                        raw,
                        "continuationToken must be a string",
                    ))
                }
            };
            let size = page_size(raw, max_page_size, "maxPageSize")?;
            let signal = match js::kind(raw, abort_signal) {
                Kind::Undefined | Kind::Null => None,
                _ => {
                    let holder = js::object(raw)?;
                    js::set(raw, holder, c"abortSignal", abort_signal)?;
                    abort::signal_option(raw, holder)?
                }
            };
            Ok((token, size, signal))
        })();
        let (token, size, signal) = match prepared {
            Ok(p) => p,
            Err(e) => return Mode::Promise.fail(raw, e),
        };
        let client = self.client.clone();
        match &self.source {
            Source::Jobs {
                job_type,
                job_status,
            } => {
                let query = JobQuery {
                    job_type: job_type.clone(),
                    job_status: job_status.clone(),
                    page_size: size.map(|n| n.to_string()),
                    continuation_token: token,
                };
                let work = async move { client.query_jobs(&query).await };
                run(raw, signal, work, page_outcome)
            }
            Source::DeviceJobs { job_id } => {
                let job_id = job_id.clone();
                let page = PageRequest {
                    max_item_count: size,
                    continuation_token: token,
                };
                let work = async move { client.query_device_jobs(&job_id, &page).await };
                run(raw, signal, work, page_outcome)
            }
        }
    }
}

/// A job body handed to `onProgress`, parsed with the real `JSON.parse` on the JS thread.
struct JobJson(Response);

impl ToJs for JobJson {
    fn to_js(self, env: napi_env) -> Result<napi_value> {
        js::json_parse(env, &self.0.body)
    }
}

/// `onProgress(job)`; what it returns is ignored.
type OnProgress = ThreadsafeFunction<Js<JobJson>, Js<()>, Js<JobJson>, Status, false, true>;

fn millis_option(
    env: napi_env,
    options: Option<napi_value>,
    key: &std::ffi::CStr,
    name: &str,
) -> Result<Option<Duration>> {
    let Some(o) = options else { return Ok(None) };
    Ok(args::optional_number(env, o, key, name)?
        .filter(|ms| ms.is_finite())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0)))
}

fn wait_options(
    env: napi_env,
    options: Option<napi_value>,
) -> Result<(WaitOptions, Option<OnProgress>)> {
    let mut wait = WaitOptions::default();
    if let Some(d) = millis_option(env, options, c"pollIntervalMs", "options.pollIntervalMs")? {
        wait.poll_interval = d;
    }
    // 0 (or absent) waits as long as it takes.
    wait.timeout =
        millis_option(env, options, c"timeoutMs", "options.timeoutMs")?.filter(|d| !d.is_zero());
    if let Some(d) = millis_option(env, options, c"notFoundGraceMs", "options.notFoundGraceMs")? {
        wait.not_found_grace = d;
    }
    let progress = match options {
        None => None,
        Some(o) => {
            let f = js::get(env, o, c"onProgress")?;
            match js::kind(env, f) {
                Kind::Undefined | Kind::Null => None,
                Kind::Function => {
                    let function: Function<'_, Js<JobJson>, Js<()>> = js::from_value(env, f)?;
                    Some(
                        function
                            .build_threadsafe_function::<Js<JobJson>>()
                            .weak::<true>()
                            .callee_handled::<false>()
                            .build()?,
                    )
                }
                _ => {
                    return Err(errors::type_error(
                        env,
                        "options.onProgress must be a function",
                    ))
                }
            }
        }
    };
    Ok((wait, progress))
}

#[napi]
impl JobClient {
    /// `listJobs({ jobType?, jobStatus?, maxPageSize?, abortSignal? })`.
    #[napi(skip_typescript, catch_unwind)]
    pub fn list_jobs<'a>(&self, env: &'a Env, options: Unknown<'a>) -> Result<Unknown<'a>> {
        let raw = env.raw();
        let options = options_object(raw, options.raw(), "listJobs")?;
        let pages = Pages {
            client: self.inner.clone(),
            source: Source::Jobs {
                job_type: optional_string(raw, options, c"jobType", "options.jobType")?,
                job_status: optional_string(raw, options, c"jobStatus", "options.jobStatus")?,
            },
        };
        paged_iterator(env, pages, options, "listJobs")
    }

    /// `listDeviceJobs(jobId, { maxPageSize?, abortSignal? })`.
    #[napi(skip_typescript, catch_unwind)]
    pub fn list_device_jobs<'a>(
        &self,
        env: &'a Env,
        job_id: Unknown<'a>,
        options: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        let raw = env.raw();
        args::check_job_id(raw, job_id.raw())?;
        let job_id = js::to_string(raw, job_id.raw())?;
        let options = options_object(raw, options.raw(), "listDeviceJobs")?;
        let pages = Pages {
            client: self.inner.clone(),
            source: Source::DeviceJobs { job_id },
        };
        paged_iterator(env, pages, options, "listDeviceJobs")
    }

    /// `waitForJob(jobId, { pollIntervalMs?, timeoutMs?, notFoundGraceMs?, onProgress?, abortSignal? })`.
    #[napi(skip_typescript, catch_unwind)]
    pub fn wait_for_job<'a>(
        &self,
        env: &'a Env,
        job_id: Unknown<'a>,
        options: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        let raw = env.raw();
        let parsed = (|| -> Result<_> {
            args::check_job_id(raw, job_id.raw())?;
            let id = js::to_string(raw, job_id.raw())?;
            let options = options_object(raw, options.raw(), "waitForJob")?;
            let (wait, progress) = wait_options(raw, options)?;
            let signal = match options {
                Some(o) => abort::signal_option(raw, o)?,
                None => None,
            };
            Ok((id, wait, progress, signal))
        })();
        let (id, wait, progress, signal) = match parsed {
            Ok(p) => p,
            Err(e) => {
                let out = Mode::Promise.fail(raw, e)?;
                return Ok(js::unknown(env, out));
            }
        };
        let client = self.inner.clone();
        let progress = progress.map(Arc::new);
        let work_id = id.clone();
        let work = async move {
            client
                .wait_for_job(&work_id, &wait, move |job: Response| {
                    let progress = progress.clone();
                    async move {
                        if let Some(progress) = progress {
                            progress
                                .call_async_catch(Js(JobJson(job)))
                                .await
                                .map_err(|e| Box::new(e) as ProgressError)?;
                        }
                        Ok(())
                    }
                })
                .await
        };
        let convert = move |env: napi_env,
                            result: std::result::Result<Response, iothub_jobs_core::WaitError>|
              -> Outcome {
            let value = match result {
                Ok(response) => js::json_parse(env, &response.body),
                Err(e) => {
                    return Err((
                        errors::wait_error(env, e, &id)
                            .unwrap_or_else(|e| errors::error_value(env, e)),
                        None,
                    ))
                }
            };
            match value {
                Ok(job) => Ok((job, js::undefined(env))),
                Err(e) => Err((errors::error_value(env, e), None)),
            }
        };
        let out = run(raw, signal, work, convert)?;
        Ok(js::unknown(env, out))
    }
}
