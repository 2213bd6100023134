//! napi-rs bindings for iothub-jobs: argument shapes, callbacks/promises and JS errors only.
