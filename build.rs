//! napi-rs's link settings, plus the cold-start function order (see scripts/cold-start-order.mjs).

fn main() {
    napi_build::setup();

    // `npm run order-symbols` needs the link map of the exact release build it profiles.
    println!("cargo:rerun-if-env-changed=IOTHUB_JOBS_LINK_MAP");
    if let Ok(path) = std::env::var("IOTHUB_JOBS_LINK_MAP") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-Map={path}");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-demangle");
    }

    // Lay out the code that `require` and the first calls run first and together, so that far
    // fewer of the addon's pages become resident. The order names lld's input sections, and lld is
    // Rust's default linker on this target only; names that no longer exist are just skipped.
    // A configured linker (cargo-zigbuild's `zig cc`, for an old glibc) rejects the flag.
    let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cold-start.order");
    println!("cargo:rerun-if-changed={}", order.display());
    const LINKER_VAR: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER";
    println!("cargo:rerun-if-env-changed={LINKER_VAR}");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && std::env::var_os(LINKER_VAR).is_none()
        && order.exists()
    {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
    }
}
