//! Small, explicit wrappers over the raw Node-API calls the binding needs.
//!
//! The binding has to reproduce JavaScript semantics exactly (truthiness, `String(value)`,
//! `JSON.stringify`, exceptions thrown by user getters or `toISOString`), so it talks to
//! Node-API directly instead of going through typed conversions that would coerce or reject
//! values differently. Every function here runs on the JavaScript thread.
//!
//! A JavaScript exception is captured as a [`napi::Error`] that retains the thrown value
//! itself (whatever it is), so it can be re-thrown or used to reject a promise unchanged.

use std::cell::RefCell;
use std::ffi::CStr;
use std::ptr;

use napi::sys::{self, napi_env, napi_value};
use napi::{Error, Result, Status};

/// The JavaScript type of a value, as `typeof` sees it (plus `null`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Undefined,
    Null,
    Boolean,
    Number,
    String,
    Symbol,
    Object,
    Function,
    Other,
}

/// Turns a Node-API status into a `Result`, capturing a pending JavaScript exception.
pub(crate) fn check(env: napi_env, status: sys::napi_status) -> Result<()> {
    if status == sys::Status::napi_ok {
        return Ok(());
    }
    let mut pending = false;
    unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    if pending {
        return Err(take_exception(env));
    }
    Err(Error::new(
        Status::from(status),
        "iothub-jobs: Node-API call failed",
    ))
}

/// Clears the pending exception and returns it as an error that carries the thrown value.
pub(crate) fn take_exception(env: napi_env) -> Error {
    let mut value = ptr::null_mut();
    let status = unsafe { sys::napi_get_and_clear_last_exception(env, &mut value) };
    if status != sys::Status::napi_ok || value.is_null() {
        return Error::new(
            Status::GenericFailure,
            "iothub-jobs: lost a JavaScript exception",
        );
    }
    retain_error(env, value)
}

/// Wraps a JavaScript value (usually an Error object) so it can travel as `Err` and be
/// thrown or used as a rejection reason unchanged.
pub(crate) fn retain_error(env: napi_env, value: napi_value) -> Error {
    Error::from_unknown_without_coercion(unsafe {
        napi::bindgen_prelude::Unknown::from_raw_unchecked(env, value)
    })
}

pub(crate) fn kind(env: napi_env, value: napi_value) -> Kind {
    let mut t = 0;
    if unsafe { sys::napi_typeof(env, value, &mut t) } != sys::Status::napi_ok {
        return Kind::Other;
    }
    match t {
        sys::ValueType::napi_undefined => Kind::Undefined,
        sys::ValueType::napi_null => Kind::Null,
        sys::ValueType::napi_boolean => Kind::Boolean,
        sys::ValueType::napi_number => Kind::Number,
        sys::ValueType::napi_string => Kind::String,
        sys::ValueType::napi_symbol => Kind::Symbol,
        sys::ValueType::napi_object => Kind::Object,
        sys::ValueType::napi_function => Kind::Function,
        _ => Kind::Other,
    }
}

pub(crate) fn is_function(env: napi_env, value: napi_value) -> bool {
    kind(env, value) == Kind::Function
}

/// JavaScript `ToBoolean` (never runs user code).
pub(crate) fn truthy(env: napi_env, value: napi_value) -> bool {
    let mut b = ptr::null_mut();
    if unsafe { sys::napi_coerce_to_bool(env, value, &mut b) } != sys::Status::napi_ok {
        return true;
    }
    let mut out = false;
    unsafe { sys::napi_get_value_bool(env, b, &mut out) };
    out
}

/// `value === undefined || value === null || value === ''`, the reference's id check.
pub(crate) fn is_missing_id(env: napi_env, value: napi_value) -> bool {
    match kind(env, value) {
        Kind::Undefined | Kind::Null => true,
        Kind::String => string_len(env, value) == 0,
        _ => false,
    }
}

fn string_len(env: napi_env, value: napi_value) -> usize {
    let mut len = 0usize;
    unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len) };
    len
}

/// Reads a JavaScript string value as UTF-8 (the value must be a string).
pub(crate) fn read_string(env: napi_env, value: napi_value) -> Result<String> {
    let mut len = 0usize;
    check(env, unsafe {
        sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len)
    })?;
    let mut buf: Vec<u8> = Vec::with_capacity(len + 1);
    let mut written = 0usize;
    check(env, unsafe {
        sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), len + 1, &mut written)
    })?;
    unsafe { buf.set_len(written) };
    // Node-API hands out valid UTF-8 (lone surrogates become U+FFFD).
    Ok(String::from_utf8(buf)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// JavaScript `String(value)` semantics via `ToString` (may run user code and throw).
pub(crate) fn to_string(env: napi_env, value: napi_value) -> Result<String> {
    if kind(env, value) == Kind::String {
        return read_string(env, value);
    }
    let mut s = ptr::null_mut();
    check(env, unsafe {
        sys::napi_coerce_to_string(env, value, &mut s)
    })?;
    read_string(env, s)
}

pub(crate) fn string(env: napi_env, s: &str) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    check(env, unsafe {
        sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut out)
    })?;
    Ok(out)
}

/// A string from UTF-8 bytes (invalid sequences become U+FFFD).
pub(crate) fn string_from_bytes(env: napi_env, bytes: &[u8]) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    let (data, len) = (bytes.as_ptr().cast(), bytes.len() as isize);
    // ASCII reads the same as Latin-1, which V8 copies without decoding (response bodies are
    // usually ASCII JSON, and decoding them showed in profiles).
    check(env, unsafe {
        if bytes.is_ascii() {
            sys::napi_create_string_latin1(env, data, len, &mut out)
        } else {
            sys::napi_create_string_utf8(env, data, len, &mut out)
        }
    })?;
    Ok(out)
}

pub(crate) fn undefined(env: napi_env) -> napi_value {
    let mut out = ptr::null_mut();
    unsafe { sys::napi_get_undefined(env, &mut out) };
    out
}

pub(crate) fn null(env: napi_env) -> napi_value {
    let mut out = ptr::null_mut();
    unsafe { sys::napi_get_null(env, &mut out) };
    out
}

pub(crate) fn boolean(env: napi_env, b: bool) -> napi_value {
    let mut out = ptr::null_mut();
    unsafe { sys::napi_get_boolean(env, b, &mut out) };
    out
}

pub(crate) fn number(env: napi_env, n: f64) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    check(env, unsafe { sys::napi_create_double(env, n, &mut out) })?;
    Ok(out)
}

pub(crate) fn object(env: napi_env) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    check(env, unsafe { sys::napi_create_object(env, &mut out) })?;
    Ok(out)
}

pub(crate) fn global(env: napi_env) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    check(env, unsafe { sys::napi_get_global(env, &mut out) })?;
    Ok(out)
}

/// `obj[name]` (may run a getter and throw). `obj` must be an object or function.
pub(crate) fn get(env: napi_env, obj: napi_value, name: &CStr) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    check(env, unsafe {
        sys::napi_get_named_property(env, obj, name.as_ptr(), &mut out)
    })?;
    Ok(out)
}

/// `value[name]` for any value, with JavaScript's boxing of primitives; reading a property
/// of `undefined`/`null` must be excluded by the caller.
pub(crate) fn get_any(env: napi_env, value: napi_value, name: &CStr) -> Result<napi_value> {
    match kind(env, value) {
        Kind::Object | Kind::Function => get(env, value, name),
        _ => {
            let mut boxed = ptr::null_mut();
            check(env, unsafe {
                sys::napi_coerce_to_object(env, value, &mut boxed)
            })?;
            get(env, boxed, name)
        }
    }
}

pub(crate) fn set(env: napi_env, obj: napi_value, name: &CStr, value: napi_value) -> Result<()> {
    check(env, unsafe {
        sys::napi_set_named_property(env, obj, name.as_ptr(), value)
    })
}

pub(crate) fn call(
    env: napi_env,
    this: napi_value,
    func: napi_value,
    args: &[napi_value],
) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    check(env, unsafe {
        sys::napi_call_function(env, this, func, args.len(), args.as_ptr(), &mut out)
    })?;
    Ok(out)
}

pub(crate) fn construct(
    env: napi_env,
    ctor: napi_value,
    args: &[napi_value],
) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    check(env, unsafe {
        sys::napi_new_instance(env, ctor, args.len(), args.as_ptr(), &mut out)
    })?;
    Ok(out)
}

pub(crate) fn is_array(env: napi_env, value: napi_value) -> bool {
    let mut out = false;
    unsafe { sys::napi_is_array(env, value, &mut out) };
    out
}

pub(crate) fn array_len(env: napi_env, value: napi_value) -> u32 {
    let mut out = 0u32;
    unsafe { sys::napi_get_array_length(env, value, &mut out) };
    out
}

/// Reports an exception thrown by a user callback as Node does for event handlers:
/// `process.on('uncaughtException')`, or the process exits with the error printed.
pub(crate) fn report_uncaught(env: napi_env, error: Error) {
    let value = unsafe { napi::bindgen_prelude::ToNapiValue::to_napi_value(env, error) };
    if let Ok(value) = value {
        unsafe { sys::napi_fatal_exception(env, value) };
    }
}

/// A strong reference to a JavaScript value owned by Rust.
///
/// It must be released with [`Retained::release`] on the JavaScript thread; dropping it
/// anywhere else (which only happens when the environment is going away and the pending
/// operation can never complete) leaks the reference instead of touching V8 off-thread.
pub(crate) struct Retained {
    raw: sys::napi_ref,
}

// The reference is only dereferenced and released on the JavaScript thread (see above).
unsafe impl Send for Retained {}

impl Retained {
    pub(crate) fn new(env: napi_env, value: napi_value) -> Result<Self> {
        let mut raw = ptr::null_mut();
        check(env, unsafe {
            sys::napi_create_reference(env, value, 1, &mut raw)
        })?;
        Ok(Self { raw })
    }

    pub(crate) fn get(&self, env: napi_env) -> Result<napi_value> {
        let mut out = ptr::null_mut();
        check(env, unsafe {
            sys::napi_get_reference_value(env, self.raw, &mut out)
        })?;
        Ok(out)
    }

    /// Returns the value and deletes the reference.
    pub(crate) fn release(self, env: napi_env) -> Result<napi_value> {
        let value = self.get(env);
        unsafe { sys::napi_delete_reference(env, self.raw) };
        std::mem::forget(self);
        value
    }
}

impl Drop for Retained {
    fn drop(&mut self) {
        // Deliberately leaked: see the type's documentation.
    }
}

/// A pending promise's resolve/reject capability. Settled at most once, on the JavaScript
/// thread; one that is never settled (the environment went away) is simply leaked.
pub(crate) struct Deferred {
    raw: sys::napi_deferred,
}

// Only settled on the JavaScript thread (see above); other threads merely carry it.
unsafe impl Send for Deferred {}

impl Deferred {
    /// A new promise and the capability that settles it.
    pub(crate) fn new(env: napi_env) -> Result<(Self, napi_value)> {
        let mut raw = ptr::null_mut();
        let mut promise = ptr::null_mut();
        check(env, unsafe {
            sys::napi_create_promise(env, &mut raw, &mut promise)
        })?;
        Ok((Self { raw }, promise))
    }

    pub(crate) fn resolve(self, env: napi_env, value: napi_value) -> Result<()> {
        check(env, unsafe {
            sys::napi_resolve_deferred(env, self.raw, value)
        })
    }

    pub(crate) fn reject(self, env: napi_env, reason: napi_value) -> Result<()> {
        check(env, unsafe {
            sys::napi_reject_deferred(env, self.raw, reason)
        })
    }
}

/// The async context (`async_hooks` resource) current when an operation started, so that its
/// callback later runs in it: `AsyncLocalStorage` stores and `executionAsyncResource()` are then
/// the caller's, as with Node's own I/O callbacks.
pub(crate) struct AsyncScope {
    context: sys::napi_async_context,
    resource: Retained,
}

// Only entered and destroyed on the JavaScript thread; other threads merely carry it.
unsafe impl Send for AsyncScope {}

impl AsyncScope {
    pub(crate) fn new(env: napi_env) -> Result<Self> {
        let resource = object(env)?;
        let name = string(env, "iothub-jobs")?;
        let mut context = ptr::null_mut();
        check(env, unsafe {
            sys::napi_async_init(env, resource, name, &mut context)
        })?;
        Ok(Self {
            context,
            resource: Retained::new(env, resource)?,
        })
    }

    /// Runs `f` inside the context (outside it if it cannot be entered), then destroys it.
    pub(crate) fn run<T>(self, env: napi_env, f: impl FnOnce() -> T) -> T {
        let scope = self.resource.release(env).ok().and_then(|resource| {
            let mut scope = ptr::null_mut();
            let status =
                unsafe { sys::napi_open_callback_scope(env, resource, self.context, &mut scope) };
            (status == sys::Status::napi_ok).then_some(scope)
        });
        let out = f();
        if let Some(scope) = scope {
            unsafe { sys::napi_close_callback_scope(env, scope) };
        }
        unsafe { sys::napi_async_destroy(env, self.context) };
        out
    }
}

/// Per-thread cache of the JavaScript values the binding uses on every call: `JSON` and its
/// functions, and the functions compiled from the binding's own snippets (see [`compiled`]).
struct Cache {
    env: napi_env,
    /// `JSON`, `JSON.parse`, `JSON.stringify`.
    json: [sys::napi_ref; 3],
    /// By their source text.
    compiled: Vec<(&'static str, sys::napi_ref)>,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

unsafe extern "C" fn forget_cache(_arg: *mut std::ffi::c_void) {
    // The environment is tearing down and frees its references itself.
    let _ = CACHE.try_with(|c| c.borrow_mut().take());
}

fn reference(env: napi_env, value: napi_value) -> Result<sys::napi_ref> {
    let mut r = ptr::null_mut();
    check(env, unsafe {
        sys::napi_create_reference(env, value, 1, &mut r)
    })?;
    Ok(r)
}

fn dereference(env: napi_env, r: sys::napi_ref) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    check(env, unsafe {
        sys::napi_get_reference_value(env, r, &mut out)
    })?;
    Ok(out)
}

/// Runs `f` on this environment's cache, creating it first if needed.
fn with_cache<T>(env: napi_env, f: impl FnOnce(&mut Cache) -> Result<T>) -> Result<T> {
    let current = CACHE.with(|c| c.borrow().as_ref().is_some_and(|c| c.env == env));
    if !current {
        let json = get(env, global(env)?, c"JSON")?;
        let refs = [
            reference(env, json)?,
            reference(env, get(env, json, c"parse")?)?,
            reference(env, get(env, json, c"stringify")?)?,
        ];
        let first = CACHE.with(|c| {
            c.borrow_mut()
                .replace(Cache {
                    env,
                    json: refs,
                    compiled: Vec::new(),
                })
                .is_none()
        });
        if first {
            unsafe { sys::napi_add_env_cleanup_hook(env, Some(forget_cache), ptr::null_mut()) };
        }
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        // Just created or checked above; `f` runs no JavaScript that could reach the cache.
        let cache = c.as_mut().expect("the cache exists");
        f(cache)
    })
}

/// `JSON`, `JSON.parse`, `JSON.stringify`.
fn json_functions(env: napi_env) -> Result<(napi_value, napi_value, napi_value)> {
    let [json, parse, stringify] = with_cache(env, |c| Ok(c.json))?;
    Ok((
        dereference(env, json)?,
        dereference(env, parse)?,
        dereference(env, stringify)?,
    ))
}

/// The function `source` (a JavaScript function expression, a `'static` constant) evaluates
/// to, compiled once per environment.
pub(crate) fn compiled(env: napi_env, source: &'static str) -> Result<napi_value> {
    let cached = with_cache(env, |c| {
        Ok(c.compiled
            .iter()
            .find(|(s, _)| *s == source)
            .map(|(_, r)| *r))
    })?;
    if let Some(r) = cached {
        return dereference(env, r);
    }
    let mut function = ptr::null_mut();
    check(env, unsafe {
        sys::napi_run_script(env, string(env, source)?, &mut function)
    })?;
    let r = reference(env, function)?;
    with_cache(env, |c| {
        c.compiled.push((source, r));
        Ok(())
    })?;
    Ok(function)
}

/// The real `JSON.stringify(value)`; `None` when it returns `undefined` (functions,
/// symbols, `undefined`). Exceptions (cycles, BigInt, a throwing `toJSON`) propagate.
pub(crate) fn json_stringify(env: napi_env, value: napi_value) -> Result<Option<String>> {
    let (json, _, stringify) = json_functions(env)?;
    let out = call(env, json, stringify, &[value])?;
    if kind(env, out) == Kind::String {
        Ok(Some(read_string(env, out)?))
    } else {
        Ok(None)
    }
}

/// The real `JSON.parse(text)`; a `SyntaxError` propagates as the thrown value.
pub(crate) fn json_parse(env: napi_env, text: &[u8]) -> Result<napi_value> {
    let s = string_from_bytes(env, text)?;
    let (json, parse, _) = json_functions(env)?;
    call(env, json, parse, &[s])
}
