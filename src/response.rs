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
    let mut merged: Vec<(&str, Vec<&str>)> = Vec::with_capacity(response.headers.len());
    for (name, value) in &response.headers {
        match merged.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => merged.push((name.as_str(), vec![value])),
        }
    }
    let mut args = Vec::with_capacity(2 + 2 * merged.len());
    args.push(js::number(env, f64::from(response.status))?);
    args.push(js::string(env, &response.status_text)?);
    for (name, values) in &merged {
        args.push(js::string(env, name)?);
        args.push(if *name == "set-cookie" {
            js::string_array(env, values)?
        } else if values.len() == 1 || SINGLE_VALUED.contains(name) {
            js::string(env, values[0])?
        } else {
            js::string(env, &values.join(", "))?
        });
    }
    let make = js::compiled(env, INCOMING_MESSAGE)?;
    js::call(env, js::undefined(env), make, &args)
}

/// `(statusCode, statusMessage, name, value, name, value, …)` → `{ statusCode, statusMessage,
/// headers }`, the headers in argument order. Built by JavaScript because V8 creates an object
/// literal of a fixed shape, and sets keys through inline caches, far faster than a series of
/// Node-API calls that each look up (or internalize) a property key: in profiles of `getJob` this
/// step cost a third of what it did. The result is the same plain object, with the same own,
/// enumerable, writable data properties in the same order.
const INCOMING_MESSAGE: &str = "(function incomingMessage(statusCode, statusMessage) {
  'use strict';
  const headers = {};
  for (let i = 2; i < arguments.length; i += 2) headers[arguments[i]] = arguments[i + 1];
  return { statusCode, statusMessage, headers };
})";

/// The success result: the parsed JSON body when it is non-empty and declared JSON, else `''`.
/// `Err` carries the `SyntaxError` thrown by `JSON.parse` for an invalid body.
pub(crate) fn result_value(env: napi_env, response: &Response) -> Result<napi_value> {
    if response.is_json() {
        js::json_parse(env, &response.body)
    } else {
        js::string(env, "")
    }
}
