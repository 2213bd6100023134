//! Hidden exports that prove a panic becomes a JavaScript error instead of aborting the
//! process. Built only with the `test-exports` feature, by `__test__/panic.test.mjs`.

use iothub_jobs_core::Error as CoreError;
use napi::bindgen_prelude::{Env, Unknown};
use napi::Result;
use napi_derive::napi;

use crate::callback::{self, Mode, Pack};
use crate::js;

/// Panics synchronously inside an exported function.
#[napi(js_name = "__panicSync", skip_typescript, catch_unwind)]
pub fn panic_sync() -> Result<()> {
    panic!("deliberate panic (sync)");
}

/// Panics inside the request future of an asynchronous call (promise or callback form).
#[napi(js_name = "__panicAsync", skip_typescript, catch_unwind)]
pub fn panic_async<'a>(env: &'a Env, done: Unknown<'a>) -> Result<Unknown<'a>> {
    let raw = env.raw();
    let mode = Mode::from_callback(raw, napi::bindgen_prelude::JsValue::raw(&done))?;
    let request = || async {
        if std::hint::black_box(true) {
            panic!("deliberate panic (async)");
        }
        Ok::<(), CoreError>(())
    };
    let convert = |env, _result: std::result::Result<(), CoreError>| -> callback::Outcome {
        Ok((js::undefined(env), js::undefined(env)))
    };
    let out = callback::spawn(raw, mode, Pack::Job, request, convert)?;
    Ok(js::unknown(env, out))
}
