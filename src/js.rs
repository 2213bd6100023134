//! Small, explicit wrappers over the raw Node-API calls the binding needs.
//!
//! The binding has to reproduce JavaScript semantics exactly (truthiness, `String(value)`,
//! `JSON.stringify`, exceptions thrown by user getters or `toISOString`), so it talks to
//! Node-API directly instead of going through typed conversions that would coerce or reject
//! values differently. Every function here runs on the JavaScript thread.
//!
//! This module and `completion` are the only ones allowed `unsafe` code (`#![deny(unsafe_code)]`
//! everywhere else). The invariant every function here relies on, and every `SAFETY:` line
//! refers to: it runs on the JavaScript thread, inside a Node-API call or callback of `env`, and
//! the `napi_value`s it is given belong to that call's current handle scope.
//!
//! A JavaScript exception is captured as a [`napi::Error`] that retains the thrown value
//! itself (whatever it is), so it can be re-thrown or used to reject a promise unchanged.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_void, CStr};
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
    // SAFETY: `pending` is a local out-pointer; `env` is the current call's (module invariant).
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
    // SAFETY: `value` is a local out-pointer; `env` is the current call's.
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
    // SAFETY: `value` belongs to `env`'s current scope; the error keeps it alive by a reference.
    Error::from_unknown_without_coercion(unsafe {
        napi::bindgen_prelude::Unknown::from_raw_unchecked(env, value)
    })
}

pub(crate) fn kind(env: napi_env, value: napi_value) -> Kind {
    let mut t = 0;
    // SAFETY: `value` belongs to `env`'s current scope; `t` is a local out-pointer.
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
    // SAFETY: `value` belongs to `env`'s current scope; `b` is a local out-pointer.
    if unsafe { sys::napi_coerce_to_bool(env, value, &mut b) } != sys::Status::napi_ok {
        return true;
    }
    let mut out = false;
    // SAFETY: `b` is the boolean just created; `out` is a local out-pointer.
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
    // SAFETY: a null buffer asks only for the length, written to the local `len`.
    unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len) };
    len
}

/// Reads a JavaScript string value as UTF-8 (the value must be a string).
pub(crate) fn read_string(env: napi_env, value: napi_value) -> Result<String> {
    let mut len = 0usize;
    // SAFETY: a null buffer asks only for the length, written to the local `len`.
    check(env, unsafe {
        sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len)
    })?;
    let mut buf: Vec<u8> = Vec::with_capacity(len + 1);
    let mut written = 0usize;
    // SAFETY: `buf` has room for `len + 1` bytes, the size passed; Node writes at most that.
    check(env, unsafe {
        sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), len + 1, &mut written)
    })?;
    // SAFETY: Node initialised the first `written` (≤ `len`) bytes of `buf`.
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
    // SAFETY: `value` belongs to `env`'s current scope; `s` is a local out-pointer.
    check(env, unsafe {
        sys::napi_coerce_to_string(env, value, &mut s)
    })?;
    read_string(env, s)
}

pub(crate) fn string(env: napi_env, s: &str) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: `s` points at `s.len()` bytes of UTF-8; `out` is a local out-pointer.
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
    // SAFETY: `data` points at `len` bytes (Latin-1 only when all are ASCII); `out` is local.
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
    // SAFETY: `out` is a local out-pointer; `env` is the current call's.
    unsafe { sys::napi_get_undefined(env, &mut out) };
    out
}

pub(crate) fn null(env: napi_env) -> napi_value {
    let mut out = ptr::null_mut();
    // SAFETY: `out` is a local out-pointer; `env` is the current call's.
    unsafe { sys::napi_get_null(env, &mut out) };
    out
}

pub(crate) fn boolean(env: napi_env, b: bool) -> napi_value {
    let mut out = ptr::null_mut();
    // SAFETY: `out` is a local out-pointer; `env` is the current call's.
    unsafe { sys::napi_get_boolean(env, b, &mut out) };
    out
}

pub(crate) fn number(env: napi_env, n: f64) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: `out` is a local out-pointer; `env` is the current call's.
    check(env, unsafe { sys::napi_create_double(env, n, &mut out) })?;
    Ok(out)
}

pub(crate) fn object(env: napi_env) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: `out` is a local out-pointer; `env` is the current call's.
    check(env, unsafe { sys::napi_create_object(env, &mut out) })?;
    Ok(out)
}

pub(crate) fn global(env: napi_env) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: `out` is a local out-pointer; `env` is the current call's.
    check(env, unsafe { sys::napi_get_global(env, &mut out) })?;
    Ok(out)
}

/// `obj[name]` (may run a getter and throw). `obj` must be an object or function.
pub(crate) fn get(env: napi_env, obj: napi_value, name: &CStr) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: `obj` belongs to `env`'s current scope, `name` is NUL-terminated, `out` is local.
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
            // SAFETY: `value` belongs to `env`'s current scope; `boxed` is a local out-pointer.
            check(env, unsafe {
                sys::napi_coerce_to_object(env, value, &mut boxed)
            })?;
            get(env, boxed, name)
        }
    }
}

pub(crate) fn set(env: napi_env, obj: napi_value, name: &CStr, value: napi_value) -> Result<()> {
    // SAFETY: `obj` and `value` belong to `env`'s current scope; `name` is NUL-terminated.
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
    // SAFETY: `this`, `func` and the `args.len()` values at `args` belong to `env`'s scope.
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
    // SAFETY: `ctor` and the `args.len()` values at `args` belong to `env`'s current scope.
    check(env, unsafe {
        sys::napi_new_instance(env, ctor, args.len(), args.as_ptr(), &mut out)
    })?;
    Ok(out)
}

pub(crate) fn is_array(env: napi_env, value: napi_value) -> bool {
    let mut out = false;
    // SAFETY: `value` belongs to `env`'s current scope; `out` is a local out-pointer.
    unsafe { sys::napi_is_array(env, value, &mut out) };
    out
}

pub(crate) fn array_len(env: napi_env, value: napi_value) -> u32 {
    let mut out = 0u32;
    // SAFETY: `value` belongs to `env`'s current scope; `out` is a local out-pointer.
    unsafe { sys::napi_get_array_length(env, value, &mut out) };
    out
}

/// Reports an exception thrown by a user callback as Node does for event handlers:
/// `process.on('uncaughtException')`, or the process exits with the error printed.
pub(crate) fn report_uncaught(env: napi_env, error: Error) {
    if let Ok(value) = error_value(env, error) {
        // SAFETY: `value` was just made in `env`'s current scope.
        unsafe { sys::napi_fatal_exception(env, value) };
    }
}

/// The number a JavaScript number value holds (the value must be a number).
pub(crate) fn double(env: napi_env, value: napi_value) -> Result<f64> {
    let mut out = 0f64;
    // SAFETY: `value` belongs to `env`'s current scope; `out` is a valid out-pointer.
    check(env, unsafe {
        sys::napi_get_value_double(env, value, &mut out)
    })?;
    Ok(out)
}

/// `obj[name]` for a key only known at run time (may run a getter and throw).
pub(crate) fn get_by_name(env: napi_env, obj: napi_value, name: &str) -> Result<napi_value> {
    let key = string(env, name)?;
    let mut out = ptr::null_mut();
    // SAFETY: `obj` and `key` belong to `env`'s current scope; `out` is a valid out-pointer.
    check(env, unsafe {
        sys::napi_get_property(env, obj, key, &mut out)
    })?;
    Ok(out)
}

/// `array[index]` (the value must be an array; may run a getter and throw).
pub(crate) fn element(env: napi_env, array: napi_value, index: u32) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: `array` belongs to `env`'s current scope; `out` is a valid out-pointer.
    check(env, unsafe {
        sys::napi_get_element(env, array, index, &mut out)
    })?;
    Ok(out)
}

/// `new Error(message)` (the realm's own `Error`, whatever `globalThis.Error` is now).
pub(crate) fn error(env: napi_env, message: napi_value) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: `message` belongs to `env`'s current scope; no code is null (allowed).
    check(env, unsafe {
        sys::napi_create_error(env, ptr::null_mut(), message, &mut out)
    })?;
    Ok(out)
}

/// The JavaScript value of a `napi::Error`: the very value it retains (see [`retain_error`]) or
/// a new `Error` with its message.
pub(crate) fn error_value(env: napi_env, error: Error) -> Result<napi_value> {
    to_value(env, error)
}

/// A Rust value converted by its napi-rs `ToNapiValue` implementation.
pub(crate) fn to_value<T: napi::bindgen_prelude::ToNapiValue>(
    env: napi_env,
    value: T,
) -> Result<napi_value> {
    // SAFETY: `env` is the live environment of the current call (invariant of this module).
    unsafe { T::to_napi_value(env, value) }
}

/// A JavaScript value converted by a napi-rs `FromNapiValue` implementation.
pub(crate) fn from_value<T: napi::bindgen_prelude::FromNapiValue>(
    env: napi_env,
    value: napi_value,
) -> Result<T> {
    // SAFETY: `value` belongs to `env`'s current scope (invariant of this module).
    unsafe { T::from_napi_value(env, value) }
}

/// A value of `env`'s current scope as napi-rs's `Unknown`, to return from an exported function.
pub(crate) fn unknown(env: &napi::Env, value: napi_value) -> napi::bindgen_prelude::Unknown<'_> {
    // SAFETY: `value` belongs to the scope of the call `env` was handed to, which the returned
    // `Unknown` cannot outlive (its lifetime is `env`'s).
    unsafe { napi::bindgen_prelude::Unknown::from_raw_unchecked(env.raw(), value) }
}

/// Reading a JavaScript value in safe code: what a type implements instead of napi-rs's (unsafe)
/// `FromNapiValue`, to be a promise's value or a JavaScript function's return through [`Js`].
pub(crate) trait FromJs: Sized {
    fn from_js(env: napi_env, value: napi_value) -> Result<Self>;
}

/// Making a JavaScript value in safe code, the counterpart of napi-rs's (unsafe) `ToNapiValue`.
pub(crate) trait ToJs {
    fn to_js(self, env: napi_env) -> Result<napi_value>;
}

/// Gives a [`FromJs`]/[`ToJs`] type napi-rs's conversion traits (for `Promise<T>`, `Function`,
/// thread-safe function arguments and returns).
pub(crate) struct Js<T>(pub(crate) T);

impl<T: FromJs> napi::bindgen_prelude::FromNapiValue for Js<T> {
    // SAFETY (of the implementation): napi-rs calls this on the JavaScript thread with a value of
    // `env`'s current scope, which is all `FromJs` implementations assume.
    unsafe fn from_napi_value(env: napi_env, value: napi_value) -> Result<Self> {
        T::from_js(env, value).map(Js)
    }
}

impl<T: ToJs> napi::bindgen_prelude::ToNapiValue for Js<T> {
    // SAFETY (of the implementation): napi-rs calls this on the JavaScript thread, in a scope
    // where the value made is valid, which is all `ToJs` implementations assume.
    unsafe fn to_napi_value(env: napi_env, val: Self) -> Result<napi_value> {
        val.0.to_js(env)
    }
}

/// A value already created in the current scope is its own JavaScript value.
impl ToJs for napi_value {
    fn to_js(self, _env: napi_env) -> Result<napi_value> {
        Ok(self)
    }
}

/// Any JavaScript value, ignored (a callback's unused return value).
impl FromJs for () {
    fn from_js(_env: napi_env, _value: napi_value) -> Result<Self> {
        Ok(())
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

// SAFETY: the reference is only dereferenced and released on the JavaScript thread (see above);
// other threads merely carry it.
unsafe impl Send for Retained {}

impl Retained {
    pub(crate) fn new(env: napi_env, value: napi_value) -> Result<Self> {
        let mut raw = ptr::null_mut();
        // SAFETY: `value` belongs to `env`'s current scope; `raw` is a local out-pointer.
        check(env, unsafe {
            sys::napi_create_reference(env, value, 1, &mut raw)
        })?;
        Ok(Self { raw })
    }

    pub(crate) fn get(&self, env: napi_env) -> Result<napi_value> {
        let mut out = ptr::null_mut();
        // SAFETY: `self.raw` is alive until `release` consumes `self`; only used on the JS thread.
        check(env, unsafe {
            sys::napi_get_reference_value(env, self.raw, &mut out)
        })?;
        Ok(out)
    }

    /// Returns the value and deletes the reference.
    pub(crate) fn release(self, env: napi_env) -> Result<napi_value> {
        let value = self.get(env);
        // SAFETY: the reference is alive (not yet released) and never used again (`forget` below).
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

// SAFETY: only settled on the JavaScript thread (see above); other threads merely carry it.
unsafe impl Send for Deferred {}

impl Deferred {
    /// A new promise and the capability that settles it.
    pub(crate) fn new(env: napi_env) -> Result<(Self, napi_value)> {
        let mut raw = ptr::null_mut();
        let mut promise = ptr::null_mut();
        // SAFETY: `raw` and `promise` are local out-pointers.
        check(env, unsafe {
            sys::napi_create_promise(env, &mut raw, &mut promise)
        })?;
        Ok((Self { raw }, promise))
    }

    pub(crate) fn resolve(self, env: napi_env, value: napi_value) -> Result<()> {
        // SAFETY: a deferred is settled at most once: `self` is consumed.
        check(env, unsafe {
            sys::napi_resolve_deferred(env, self.raw, value)
        })
    }

    pub(crate) fn reject(self, env: napi_env, reason: napi_value) -> Result<()> {
        // SAFETY: a deferred is settled at most once: `self` is consumed.
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

// SAFETY: only entered and destroyed on the JavaScript thread; other threads merely carry it.
unsafe impl Send for AsyncScope {}

impl AsyncScope {
    pub(crate) fn new(env: napi_env) -> Result<Self> {
        let resource = object(env)?;
        let name = string(env, "iothub-jobs")?;
        let mut context = ptr::null_mut();
        // SAFETY: `resource` and `name` were just made in `env`'s current scope.
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
                // SAFETY: `resource` and `self.context` are alive (context destroyed only below).
                unsafe { sys::napi_open_callback_scope(env, resource, self.context, &mut scope) };
            (status == sys::Status::napi_ok).then_some(scope)
        });
        let out = f();
        if let Some(scope) = scope {
            // SAFETY: `scope` was opened above and is closed once.
            unsafe { sys::napi_close_callback_scope(env, scope) };
        }
        // SAFETY: the context was created in `new` and is destroyed once (`self` is consumed).
        unsafe { sys::napi_async_destroy(env, self.context) };
        out
    }
}

/// Everything the binding keeps per Node environment (the main thread, each worker thread): the
/// JavaScript values it uses on every call and the package entry's modules. Stored as the
/// environment's instance data, so it lives exactly as long as the environment; the environment
/// frees the references itself when it tears down.
struct Instance {
    /// `JSON`, `JSON.parse`, `JSON.stringify`.
    json: [sys::napi_ref; 3],
    /// The functions compiled from the binding's own snippets (see [`compiled`]), by source text.
    compiled: Vec<(&'static str, sys::napi_ref)>,
    /// The package entry's modules, handed over by [`init`].
    entry: Option<Entry>,
    /// State other modules keep per environment (the completion queue's side,
    /// `src/completion.rs`), one value per type, made on first use. Typed by its owner, so this
    /// module depends on none of them.
    slots: Vec<Box<dyn Any>>,
}

/// The hand-written modules of `lib/` the binding calls into.
#[derive(Clone, Copy)]
struct Entry {
    /// `lib/errors.js`: the error classes of every hub error.
    errors: sys::napi_ref,
    /// `lib/paging.js`: the iterator objects of `listJobs`/`listDeviceJobs`.
    paging: sys::napi_ref,
}

unsafe extern "C" fn free_instance(_env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the box `instance` leaked with `napi_set_instance_data`; Node calls this
    // once, when the environment is torn down and no JavaScript runs in it any more.
    drop(unsafe { Box::from_raw(data.cast::<RefCell<Instance>>()) });
}

fn reference(env: napi_env, value: napi_value) -> Result<sys::napi_ref> {
    let mut r = ptr::null_mut();
    // SAFETY: `value` belongs to `env`'s current scope (invariant of this module).
    check(env, unsafe {
        sys::napi_create_reference(env, value, 1, &mut r)
    })?;
    Ok(r)
}

fn dereference(env: napi_env, r: sys::napi_ref) -> Result<napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: `r` was created in `env` and is alive: instance references are never deleted
    // before the environment frees them.
    check(env, unsafe {
        sys::napi_get_reference_value(env, r, &mut out)
    })?;
    Ok(out)
}

/// This environment's [`Instance`], created on first use.
fn instance(env: napi_env) -> Result<&'static RefCell<Instance>> {
    let mut data = ptr::null_mut();
    // SAFETY: plain out-pointer read of `env`'s instance data.
    check(env, unsafe { sys::napi_get_instance_data(env, &mut data) })?;
    if !data.is_null() {
        // SAFETY: only this module sets this addon's instance data, always to a leaked
        // `RefCell<Instance>` that stays alive until `free_instance`, which runs after the last
        // JavaScript (hence the last call of this function) in the environment.
        return Ok(unsafe { &*data.cast::<RefCell<Instance>>() });
    }
    let json = get(env, global(env)?, c"JSON")?;
    let created = Box::new(RefCell::new(Instance {
        json: [
            reference(env, json)?,
            reference(env, get(env, json, c"parse")?)?,
            reference(env, get(env, json, c"stringify")?)?,
        ],
        compiled: Vec::new(),
        entry: None,
        slots: Vec::new(),
    }));
    let raw = Box::into_raw(created);
    // SAFETY: hands the box to the environment, which calls `free_instance` on it at teardown.
    let status = unsafe {
        sys::napi_set_instance_data(env, raw.cast(), Some(free_instance), ptr::null_mut())
    };
    if let Err(e) = check(env, status) {
        // SAFETY: not handed over: still ours to free.
        drop(unsafe { Box::from_raw(raw) });
        return Err(e);
    }
    // SAFETY: just handed to the environment, alive until `free_instance` (see above).
    Ok(unsafe { &*raw })
}

/// Runs `f` on this environment's state. `f` must not run JavaScript (which could re-enter).
fn with_instance<T>(env: napi_env, f: impl FnOnce(&mut Instance) -> T) -> Result<T> {
    Ok(f(&mut instance(env)?.borrow_mut()))
}

/// Runs `f` on this environment's value of type `S` (`S::default()` the first time); `f` must not
/// run JavaScript.
pub(crate) fn with_slot<S: Default + 'static, T>(
    env: napi_env,
    f: impl FnOnce(&mut S) -> T,
) -> Result<T> {
    with_instance(env, |i| {
        let index = match i.slots.iter().position(|s| s.is::<S>()) {
            Some(index) => index,
            None => {
                i.slots.push(Box::new(S::default()));
                i.slots.len() - 1
            }
        };
        // The slot at `index` holds an `S`: found by its type or just pushed.
        let slot = i.slots[index].downcast_mut::<S>().expect("slot of type S");
        f(slot)
    })
}

/// Remembers the package entry's modules (`lib/errors.js`, `lib/paging.js`) for this
/// environment: the one initialisation call `lib/main.js` makes.
pub(crate) fn init(env: napi_env, errors: napi_value, paging: napi_value) -> Result<()> {
    let entry = Entry {
        errors: reference(env, errors)?,
        paging: reference(env, paging)?,
    };
    if let Some(old) = with_instance(env, |i| i.entry.replace(entry))? {
        for r in [old.errors, old.paging] {
            // SAFETY: `r` was created in `env` and nothing refers to it any more.
            unsafe { sys::napi_delete_reference(env, r) };
        }
    }
    Ok(())
}

/// `lib/errors.js` of this environment, if the package entry registered it.
pub(crate) fn errors_module(env: napi_env) -> Result<Option<napi_value>> {
    match with_instance(env, |i| i.entry)? {
        Some(entry) => dereference(env, entry.errors).map(Some),
        None => Ok(None),
    }
}

/// `lib/paging.js` of this environment, if the package entry registered it.
pub(crate) fn paging_module(env: napi_env) -> Result<Option<napi_value>> {
    match with_instance(env, |i| i.entry)? {
        Some(entry) => dereference(env, entry.paging).map(Some),
        None => Ok(None),
    }
}

/// `JSON`, `JSON.parse`, `JSON.stringify`.
fn json_functions(env: napi_env) -> Result<(napi_value, napi_value, napi_value)> {
    let [json, parse, stringify] = with_instance(env, |i| i.json)?;
    Ok((
        dereference(env, json)?,
        dereference(env, parse)?,
        dereference(env, stringify)?,
    ))
}

/// The real `JSON.parse` (as it was when the environment's state was made).
pub(crate) fn json_parse_function(env: napi_env) -> Result<napi_value> {
    let parse = with_instance(env, |i| i.json[1])?;
    dereference(env, parse)
}

/// The function `source` (a JavaScript function expression, a `'static` constant) evaluates
/// to, compiled once per environment.
pub(crate) fn compiled(env: napi_env, source: &'static str) -> Result<napi_value> {
    let cached = with_instance(env, |i| {
        i.compiled
            .iter()
            // The same constant is usually the same pointer: compared first, the text only
            // when it is not.
            .find(|(s, _)| ptr::eq(*s, source) || *s == source)
            .map(|(_, r)| *r)
    })?;
    if let Some(r) = cached {
        return dereference(env, r);
    }
    let mut function = ptr::null_mut();
    // SAFETY: the script is the binding's own constant; `function` is a local out-pointer.
    check(env, unsafe {
        sys::napi_run_script(env, string(env, source)?, &mut function)
    })?;
    let r = reference(env, function)?;
    with_instance(env, |i| i.compiled.push((source, r)))?;
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
