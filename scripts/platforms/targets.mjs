// Every platform package in npm/, how this machine builds its addon, and what its binary must ask
// of the system that loads it. One table for the build, the check and the platform tests.
//
// `std`: where the target's standard library comes from —
//   'rustup'  the pinned toolchain has it (x86_64 gnu only): built like the default build, with
//             rustc's own linker and symbol order, against zig's glibc stubs (glibc-stubs.mjs);
//   'debian'  Debian's rustc-web ships it prebuilt (libstd-rust-web-dev:<arch>);
//   'source'  built from rust-web-src with -Zbuild-std (musl, macOS, Windows).
// `linker`: 'mingw' links with Debian's MinGW-w64 gcc (GNU ld) instead of zig: zig's linker drops
//   the export list rustc passes for a Windows cdylib (a `.def` file), GNU ld honours it.
//
// win32-x64-msvc holds a windows-gnu build: it is the package napi-rs's loader (index.js) picks on
// the official node.exe (the `-gnu` one only on a node built as a shared library, e.g. MSYS2's).
// The addon calls nothing of node.exe but Node-API, a C ABI it resolves at run time
// (napi's `dyn-symbols`), and shares no C runtime object with it, so the toolchain that built
// node.exe does not matter. The hosted workflow still builds the MSVC one for releases.
export const PLATFORMS = [
  { name: 'linux-x64-gnu', triple: 'x86_64-unknown-linux-gnu', glibc: '2.17', std: 'rustup', format: 'elf', arch: 'x86_64' },
  { name: 'linux-arm64-gnu', triple: 'aarch64-unknown-linux-gnu', glibc: '2.17', std: 'debian', format: 'elf', arch: 'aarch64' },
  { name: 'linux-x64-musl', triple: 'x86_64-unknown-linux-musl', std: 'source', format: 'elf', arch: 'x86_64' },
  { name: 'linux-arm64-musl', triple: 'aarch64-unknown-linux-musl', std: 'source', format: 'elf', arch: 'aarch64' },
  { name: 'darwin-x64', triple: 'x86_64-apple-darwin', std: 'source', format: 'mach-o', arch: 'x86_64' },
  { name: 'darwin-arm64', triple: 'aarch64-apple-darwin', std: 'source', format: 'mach-o', arch: 'aarch64' },
  { name: 'win32-x64-msvc', triple: 'x86_64-pc-windows-gnu', std: 'source', linker: 'mingw', format: 'pe32+', arch: 'x86_64' },
];

/** The libraries a binary may need: the C library (its loader and the parts older glibc kept in
 * libpthread, libdl, librt: glibc 2.17 has clock_gettime in librt) and nothing else; on macOS
 * Rust's std also links libiconv (and zig's libiconv stub libcharset), both in every macOS. */
export const ALLOWED_LIBRARIES = {
  gnu: /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libgcc_s\.so\.1|ld-linux-(x86-64|aarch64)\.so\.[12])$/,
  musl: /^libc\.so$/,
  darwin: /^\/usr\/lib\/(libSystem\.B|libiconv\.2|libcharset\.1)\.dylib$/,
  // Windows' own DLLs (mingw's C runtime is msvcrt.dll); never libgcc_s, libwinpthread or
  // libnode: those are linked statically or resolved at run time.
  windows: /^(kernel32|ntdll|msvcrt|ws2_32|bcrypt|bcryptprimitives|advapi32|userenv|secur32|crypt32|ncrypt|ole32|oleaut32|shell32|user32|iphlpapi|api-ms-win-[a-z0-9-]+)\.dll$/i,
};

/** npm's names for an addon platform (`linux-x64-gnu` → os linux, cpu x64, libc glibc; libc null
 * off Linux): what its package's manifest says and what `npm install --os/--cpu/--libc` matches. */
export function npmSystem(platform) {
  const [os, cpu, abi] = platform.name.split('-');
  return { os, cpu, libc: os === 'linux' ? (abi === 'musl' ? 'musl' : 'glibc') : null };
}

export const binaryName = (platform) => `iothub-jobs.${platform.name}.node`;

/** The emulator's platform packages, `packages/iothub-emulator/npm/<name>/` holding `bin/iothub-emulator[.exe]`:
 * an executable, so Linux gets one static musl binary per architecture that runs on any glibc and
 * on Alpine alike (no `libc` field: it fits both). `os`/`cpu` are npm's names for the package.
 * win32-x64 is the .exe the win32-x64-msvc addon build makes with MinGW-w64 (windows.mjs). */
export const EMULATOR_PLATFORMS = [
  { name: 'linux-x64', os: 'linux', cpu: 'x64', triple: 'x86_64-unknown-linux-musl', std: 'source', format: 'elf', arch: 'x86_64' },
  { name: 'linux-arm64', os: 'linux', cpu: 'arm64', triple: 'aarch64-unknown-linux-musl', std: 'source', format: 'elf', arch: 'aarch64' },
  { name: 'darwin-x64', os: 'darwin', cpu: 'x64', triple: 'x86_64-apple-darwin', std: 'source', format: 'mach-o', arch: 'x86_64' },
  { name: 'darwin-arm64', os: 'darwin', cpu: 'arm64', triple: 'aarch64-apple-darwin', std: 'source', format: 'mach-o', arch: 'aarch64' },
  { name: 'win32-x64', os: 'win32', cpu: 'x64', triple: 'x86_64-pc-windows-gnu', format: 'pe32+', arch: 'x86_64' },
];

export const emulatorExe = (platform) => (platform.os === 'win32' ? 'iothub-emulator.exe' : 'iothub-emulator');
