//! napi-rs's link settings, plus the cold-start function order (see scripts/cold-start-order.mjs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    napi_build::setup();

    // `npm run order-symbols` needs the link map of the exact release build it profiles.
    println!("cargo:rerun-if-env-changed=IOTHUB_JOBS_LINK_MAP");
    if let Ok(path) = std::env::var("IOTHUB_JOBS_LINK_MAP") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-Map={path}");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-demangle");
    }

    // `npm run build:platforms linux-x64-gnu`: link against an old glibc's stub libraries
    // (scripts/platforms/glibc-stubs.mjs) so that no symbol newer than that glibc is required,
    // with the same compiler, linker and symbol order as the default build.
    println!("cargo:rerun-if-env-changed=IOTHUB_JOBS_GLIBC_STUBS");
    if let Ok(dir) = std::env::var("IOTHUB_JOBS_GLIBC_STUBS") {
        println!("cargo:rustc-cdylib-link-arg=-L{dir}");
    }

    // Lay out the code that `require` and the first calls run first and together, so that far
    // fewer of the addon's pages become resident. `--symbol-ordering-file` is an lld option (GNU
    // ld and gold reject it), so it is passed only when the link is known to go through lld; any
    // other linker builds the same addon without the order. Names that no longer exist (a stale
    // order) are skipped by lld, never an error.
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cold-start.order");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=IOTHUB_JOBS_SYMBOL_ORDER");
    if order.exists() && links_with_lld() {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether this build links with lld: rustc's bundled `rust-lld`, its default on
/// x86_64-unknown-linux-gnu since Rust 1.90, with no linker chosen by the user.
/// `IOTHUB_JOBS_SYMBOL_ORDER=0` (or `1`, for a linker configured to be lld) overrides the guess.
fn links_with_lld() -> bool {
    match std::env::var("IOTHUB_JOBS_SYMBOL_ORDER").as_deref() {
        Ok("0") => return false,
        Ok("1") => return true,
        _ => {}
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        return false;
    }
    // A linker chosen through cargo config, the environment or RUSTFLAGS may be anything.
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace('-', "_")
    );
    for var in [linker_var.as_str(), "RUSTC_LINKER"] {
        println!("cargo:rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some() {
            return false;
        }
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    rustc_minor(&rustc).is_some_and(|minor| minor >= 90) && bundled_lld(&rustc, &target)
}

/// The minor version of `rustc` (`1.95.0` → 95).
fn rustc_minor(rustc: &str) -> Option<u32> {
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let version = String::from_utf8(out.stdout).ok()?;
    version
        .split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}

/// Whether the toolchain ships the `rust-lld` rustc links with by default (distribution builds
/// of rustc may not, and then fall back to the system linker).
fn bundled_lld(rustc: &str, target: &str) -> bool {
    let Some(sysroot) = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
    else {
        return false;
    };
    let bin: PathBuf = [sysroot.trim(), "lib", "rustlib", target, "bin"]
        .iter()
        .collect();
    bin.join("rust-lld").exists() && bin.join("gcc-ld").join("ld.lld").exists()
}
