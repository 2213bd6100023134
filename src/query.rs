//! `Query`: pages of `createQuery(jobType?, jobStatus?, pageSize?)` results.
//!
//! Like the reference, `hasMoreResults` and `continuationToken` are plain own properties of
//! the JavaScript object (starting `true` and `null`), updated after each page from the
//! `x-ms-continuation` response header. Ours: `next()` without a token uses the stored one,
//! and `nextAsTwin()` never crashes the process (see `twin_result`).

use iothub_jobs_core::{JobClient as CoreClient, JobQuery, Response};
use napi::bindgen_prelude::{Env, JsValue, This, Unknown};
use napi::sys::{napi_env, napi_value};
use napi::Result;
use napi_derive::napi;

use crate::callback::{self, Mode, Outcome, Pack};
use crate::errors;
use crate::js::{self, Retained};
use crate::recycle::Recycled;
use crate::response;

#[napi]
pub struct Query {
    client: CoreClient,
    job_type: Option<String>,
    job_status: Option<String>,
    page_size: Option<String>,
}

impl Query {
    /// Creates the JavaScript `Query` object with its two own properties.
    pub(crate) fn create<'a>(
        env: &'a Env,
        client: CoreClient,
        job_type: napi_value,
        job_status: napi_value,
        page_size: napi_value,
    ) -> Result<Unknown<'a>> {
        let raw = env.raw();
        let query = Query {
            client,
            job_type: truthy_string(raw, job_type)?,
            job_status: truthy_string(raw, job_status)?,
            page_size: truthy_string(raw, page_size)?,
        };
        let obj = js::to_value(raw, query)?;
        js::set(raw, obj, c"hasMoreResults", js::boolean(raw, true))?;
        js::set(raw, obj, c"continuationToken", js::null(raw))?;
        Ok(js::unknown(env, obj))
    }

    fn page<'a>(
        &self,
        env: &'a Env,
        this: napi_value,
        token: napi_value,
        mode: Mode,
        as_twin: bool,
    ) -> Result<Unknown<'a>> {
        let raw = env.raw();
        let query = JobQuery {
            job_type: self.job_type.clone(),
            job_status: self.job_status.clone(),
            page_size: self.page_size.clone(),
            continuation_token: truthy_string(raw, token)?,
        };
        let this_ref = Retained::new(raw, this)?;
        let client = self.client.clone();
        let request = move || async move { client.query_jobs(&query).await.map(Recycled::new) };
        let convert = move |env: napi_env, result: Fetched| -> Outcome {
            let this = match this_ref.release(env) {
                Ok(this) => this,
                Err(e) => return Err((errors::error_value(env, e), None)),
            };
            let response = match result {
                Ok(response) => response,
                Err(e) => return Err((errors::core_error_value(env, e), None)),
            };
            page_outcome(env, this, &response, as_twin)
                .unwrap_or_else(|e| Err((errors::error_value(env, e), None)))
        };
        let out = callback::spawn(raw, mode, Pack::Query, request, convert)?;
        Ok(js::unknown(env, out))
    }
}

/// A page as the runtime hands it over (see `recycle`).
type Fetched = std::result::Result<Recycled<Response>, iothub_jobs_core::Error>;

/// A successful page: parse the result, then update `continuationToken`/`hasMoreResults`.
fn page_outcome(
    env: napi_env,
    this: napi_value,
    response: &iothub_jobs_core::Response,
    as_twin: bool,
) -> Result<Outcome> {
    let message = response::response_object(env, response)?;
    let result = match response::result_value(env, response) {
        Ok(result) => result,
        // The reference's query callback gets only the error (state unchanged).
        Err(e) => return Ok(Err((errors::error_value(env, e), None))),
    };
    let headers = js::get(env, message, c"headers")?;
    let token = js::get(env, headers, c"x-ms-continuation")?;
    js::set(env, this, c"continuationToken", token)?;
    let more = js::kind(env, token) != js::Kind::Undefined;
    js::set(env, this, c"hasMoreResults", js::boolean(env, more))?;
    if as_twin {
        return Ok(match twin_result(env, result) {
            Ok(result) => Ok((result, message)),
            Err(e) => Err((errors::error_value(env, e), None)),
        });
    }
    Ok(Ok((result, message)))
}

/// `nextAsTwin` on a job query. The reference maps every item to `new Twin(item, registry)`,
/// which always throws for a job query (there is no registry, and jobs are not twins) —
/// from inside its HTTP handler, crashing the process. Ours delivers that same error to the
/// caller instead. An empty page gives `[]` and a non-JSON body `null`, as in the reference.
fn twin_result(env: napi_env, result: napi_value) -> Result<napi_value> {
    if !js::truthy(env, result) {
        return Ok(js::null(env));
    }
    if !js::is_array(env, result) {
        return Err(errors::type_error(env, "result.map is not a function"));
    }
    if js::array_len(env, result) == 0 {
        return Ok(result);
    }
    let first = js::element(env, result, 0)?;
    if js::is_missing_id(env, first) {
        let shown = js::to_string(env, first)?;
        return Err(errors::reference_error(
            env,
            &format!("'device' cannot be '{shown}'"),
        ));
    }
    Err(errors::reference_error(
        env,
        "'registryClient' cannot be 'undefined'",
    ))
}

/// `String(value)` when `value` is truthy, else `None` (the reference sends the query
/// parameters and headers only when truthy).
fn truthy_string(env: napi_env, value: napi_value) -> Result<Option<String>> {
    if js::truthy(env, value) {
        Ok(Some(js::to_string(env, value)?))
    } else {
        Ok(None)
    }
}

#[napi]
impl Query {
    /// `next([continuationToken], [done])`.
    #[napi(skip_typescript, catch_unwind)]
    pub fn next<'a>(
        &self,
        env: &'a Env,
        this: This<Unknown>,
        continuation_token_or_callback: Unknown<'a>,
        done: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        let raw = env.raw();
        let (this, first, done) = (this.raw(), continuation_token_or_callback.raw(), done.raw());
        let (token, callback) = if js::is_function(raw, first) && !js::truthy(raw, done) {
            (js::get(raw, this, c"continuationToken")?, first)
        } else if js::kind(raw, first) == js::Kind::Undefined {
            // Ours: a promise `next()` continues from the stored token.
            (js::get(raw, this, c"continuationToken")?, done)
        } else {
            (first, done)
        };
        let mode = Mode::from_callback(raw, callback)?;
        self.page(env, this, token, mode, false)
    }

    /// `nextAsTwin([continuationToken], [done])`.
    #[napi(skip_typescript, catch_unwind)]
    pub fn next_as_twin<'a>(
        &self,
        env: &'a Env,
        this: This<Unknown>,
        continuation_token: Unknown<'a>,
        done: Unknown<'a>,
    ) -> Result<Unknown<'a>> {
        let raw = env.raw();
        let (this, mut first, mut done) = (this.raw(), continuation_token.raw(), done.raw());
        if js::is_function(raw, first) && !js::truthy(raw, done) {
            done = first;
            first = js::null(raw);
        }
        let mode = Mode::from_callback(raw, done)?;
        let token = if js::truthy(raw, first) {
            first
        } else {
            js::get(raw, this, c"continuationToken")?
        };
        self.page(env, this, token, mode, true)
    }
}
