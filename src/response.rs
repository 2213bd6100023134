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
    let [status, text, headers] = message_args(env, response)?;
    let make = js::compiled(env, INCOMING_MESSAGE)?;
    js::call(env, js::undefined(env), make, &[status, text, headers])
}

/// `statusCode`, `statusMessage` and the headers, merged, as one string of lines `name`, `value`,
/// `name`, `value`, … (`set-cookie` once per value): one JavaScript string instead of two per
/// header, each of which was a Node-API call (HTTP forbids line breaks in names and values).
fn message_args(env: napi_env, response: &Response) -> Result<[napi_value; 3]> {
    let headers = &response.headers;
    let mut lines = String::with_capacity(
        headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 2)
            .sum(),
    );
    let mut line = |text: &str| {
        if !lines.is_empty() {
            lines.push('\n');
        }
        lines.push_str(text);
    };
    for (i, (name, value)) in headers.iter().enumerate() {
        let repeated = headers[..i].iter().any(|(n, _)| n == name);
        if name == "set-cookie" {
            // Every value, in order: the snippet collects them into an array.
            line(name);
            line(value);
            continue;
        }
        if repeated {
            // Merged into its first occurrence.
            continue;
        }
        line(name);
        let mut repeats = headers[i + 1..].iter().filter(|(n, _)| n == name);
        match repeats.next() {
            Some((_, next)) if !SINGLE_VALUED.contains(&name.as_str()) => {
                let mut merged = format!("{value}, {next}");
                for (_, v) in repeats {
                    merged.push_str(", ");
                    merged.push_str(v);
                }
                line(&merged);
            }
            _ => line(value),
        }
    }
    Ok([
        js::number(env, f64::from(response.status))?,
        js::string_from_bytes(env, response.status_text.as_bytes())?,
        js::string_from_bytes(env, lines.as_bytes())?,
    ])
}

/// The source of [`INCOMING_MESSAGE`], a macro so that [`JOB_STATUS_RESPONSE`] can embed it.
macro_rules! incoming_message {
    () => {
        "(function incomingMessage(statusCode, statusMessage, lines) {
  'use strict';
  const headers = {};
  if (lines !== '') {
    const parts = lines.split('\\n');
    for (let i = 0; i < parts.length; i += 2) {
      if (parts[i] === 'set-cookie') (headers['set-cookie'] ??= []).push(parts[i + 1]);
      else headers[parts[i]] = parts[i + 1];
    }
  }
  return { statusCode, statusMessage, headers };
})"
    };
}

/// `(statusCode, statusMessage, lines)` → `{ statusCode, statusMessage, headers }`, the headers in
/// line order (see `message_args`). Built by JavaScript because V8 creates an object literal of a
/// fixed shape, and sets keys through inline caches, far faster than a series of Node-API calls
/// that each look up (or internalize) a property key: in profiles of `getJob` this step cost a
/// third of what it did. The result is the same plain object, with the same own, enumerable,
/// writable data properties in the same order.
const INCOMING_MESSAGE: &str = incoming_message!();

/// The success result: the parsed JSON body when it is non-empty and declared JSON, else `''`.
/// `Err` carries the `SyntaxError` thrown by `JSON.parse` for an invalid body.
pub(crate) fn result_value(env: napi_env, response: &Response) -> Result<napi_value> {
    if response.is_json() {
        js::json_parse(env, &response.body)
    } else {
        js::string(env, "")
    }
}

/// The promise form's value of a job operation, `{ jobStatus, response }`, made by one JavaScript
/// call instead of three (the `response` object, `JSON.parse`, the packing): crossing into
/// JavaScript from Node-API costs more than the work each of them does. The same objects as
/// [`response_object`], [`result_value`] and `callback`'s packing make; an invalid JSON body
/// throws its `SyntaxError`, the promise's rejection.
pub(crate) fn job_status_response(env: napi_env, response: &Response) -> Result<napi_value> {
    let body = if response.is_json() {
        js::string_from_bytes(env, &response.body)?
    } else {
        js::undefined(env)
    };
    let [status, text, headers] = message_args(env, response)?;
    let make = js::compiled(env, JOB_STATUS_RESPONSE)?;
    let parse = js::json_parse_function(env)?;
    js::call(
        env,
        js::undefined(env),
        make,
        &[parse, body, status, text, headers],
    )
}

/// `(parse, body, statusCode, statusMessage, lines)` → `{ jobStatus, response }`: the body parsed
/// by the real `JSON.parse` (`''` without a JSON body), then the `response` object as
/// [`INCOMING_MESSAGE`] makes it. Parsed first, so that a `SyntaxError` is thrown before any
/// object is made, as `callback`'s packing never runs for an invalid body either.
const JOB_STATUS_RESPONSE: &str = concat!(
    "(() => {
  'use strict';
  const incomingMessage = ",
    incoming_message!(),
    ";
  return function jobStatusResponse(parse, body, statusCode, statusMessage, lines) {
    const jobStatus = body === undefined ? '' : parse(body);
    return { jobStatus, response: incomingMessage(statusCode, statusMessage, lines) };
  };
})()"
);
