//! A core HTTP response as the JavaScript caller sees it: `{ statusCode, statusMessage,
//! headers }` (the parts of Node's `IncomingMessage` users read) and the result value.

use iothub_jobs_core::Response;
use napi::sys::napi_env;
use napi::sys::napi_value;
use napi::Result;

use crate::js;

/// Headers Node's `IncomingMessage` keeps only once (later duplicates are dropped).
const SINGLE_VALUED: &[&str] = &[
    "age",
    "authorization",
    "content-length",
    "content-type",
    "etag",
    "expires",
    "from",
    "host",
    "if-modified-since",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "proxy-authorization",
    "referer",
    "retry-after",
    "server",
    "user-agent",
];

/// Builds the `response` object: header names as the core gives them (lower-cased), repeated
/// headers merged like Node's `IncomingMessage` (`set-cookie` as an array, single-valued
/// headers keep the first, others joined by ", ").
pub(crate) fn response_object(env: napi_env, response: &Response) -> Result<napi_value> {
    let obj = js::object(env)?;
    js::set(
        env,
        obj,
        c"statusCode",
        js::number(env, f64::from(response.status))?,
    )?;
    js::set(
        env,
        obj,
        c"statusMessage",
        js::string(env, &response.status_text)?,
    )?;
    js::set(
        env,
        obj,
        c"headers",
        headers_object(env, &response.headers)?,
    )?;
    Ok(obj)
}

fn headers_object(env: napi_env, headers: &[(String, String)]) -> Result<napi_value> {
    let obj = js::object(env)?;
    let mut merged: Vec<(&str, Vec<&str>)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        match merged.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => merged.push((name.as_str(), vec![value])),
        }
    }
    for (name, values) in &merged {
        let value = if *name == "set-cookie" {
            let arr = array(env, values)?;
            js::set_key(env, obj, name, arr)?;
            continue;
        } else if values.len() == 1 || SINGLE_VALUED.contains(name) {
            js::string(env, values[0])?
        } else {
            js::string(env, &values.join(", "))?
        };
        js::set_key(env, obj, name, value)?;
    }
    Ok(obj)
}

fn array(env: napi_env, values: &[&str]) -> Result<napi_value> {
    let mut arr = std::ptr::null_mut();
    js::check(env, unsafe {
        napi::sys::napi_create_array_with_length(env, values.len(), &mut arr)
    })?;
    for (i, v) in values.iter().enumerate() {
        let s = js::string(env, v)?;
        js::check(env, unsafe {
            napi::sys::napi_set_element(env, arr, i as u32, s)
        })?;
    }
    Ok(arr)
}

/// The success result: the parsed JSON body when it is non-empty and declared JSON, else `''`.
/// `Err` carries the `SyntaxError` thrown by `JSON.parse` for an invalid body.
pub(crate) fn result_value(env: napi_env, response: &Response) -> Result<napi_value> {
    if response.is_json() {
        js::json_parse(env, &response.body)
    } else {
        js::string(env, "")
    }
}
