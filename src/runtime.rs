//! The addon's Tokio runtime.
//!
//! napi-rs would otherwise start one worker thread per core when the module is loaded. Two
//! workers (one on a single-core machine), plus a small blocking pool for DNS: under load one
//! worker is the bottleneck (TLS, HTTP and JSON decoding for every call run there; with 256
//! calls in flight it saturated its core at ~23k getJob/s, two reach ~32k on two cores), and
//! the calls are network-bound, so more would mostly add threads. An idle worker costs no measurable memory (its
//! stack is touched lazily). `IOTHUB_JOBS_WORKER_THREADS` (1–64) overrides the count.

use napi_derive::module_init;

#[module_init]
fn init() {
    let workers = std::env::var("IOTHUB_JOBS_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |cores| cores.get().min(2))
        });
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
