//! The addon's Tokio runtime.
//!
//! napi-rs would otherwise start one worker thread per core when the module is loaded. Job
//! calls are network-bound and short, so one worker (plus a small blocking pool for DNS) is
//! enough and costs far less. `IOTHUB_JOBS_WORKER_THREADS` overrides the worker count.

use napi_derive::module_init;

#[module_init]
fn init() {
    let workers = std::env::var("IOTHUB_JOBS_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(4)
        .thread_name("iothub-jobs")
        .enable_all()
        .build();
    // If the runtime cannot be built, napi-rs falls back to its default one.
    if let Ok(runtime) = runtime {
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}
