// How this machine builds for x86_64-pc-windows-gnu: Debian's rustc with std built from source
// (-Zbuild-std, set by build.mjs) and Debian's MinGW-w64 gcc as the linker.
//
// Why MinGW-w64's GNU ld and not zig: rustc passes a Windows cdylib's exports as a `.def` file on
// the linker's command line; GNU ld honours it, zig's linker driver drops it, which left the DLL
// without `napi_register_module_v1`. `+crt-static` links libgcc_eh and winpthreads statically, so
// the DLL needs no libgcc_s/libwinpthread DLL beside it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MINGW = 'x86_64-w64-mingw32';

/** The environment for a `cargo build --target x86_64-pc-windows-gnu` of this workspace. */
export function mingwEnv(platform, targetDir) {
  const upper = platform.triple.toUpperCase().replaceAll('-', '_');
  return {
    [`CARGO_TARGET_${upper}_LINKER`]: `${MINGW}-gcc`,
    [`CARGO_TARGET_${upper}_RUSTFLAGS`]: '-C target-feature=+crt-static',
    // ring's C and assembly
    [`CC_${platform.triple.replaceAll('-', '_')}`]: `${MINGW}-gcc`,
    [`AR_${platform.triple.replaceAll('-', '_')}`]: `${MINGW}-ar`,
    LIBNODE_PATH: libnode(targetDir),
  };
}

// napi-build's windows-gnu setup (meant for MSYS2's shared-library node) requires a `libnode.dll`
// in LIBNODE_PATH and links `-lnode`. The official node.exe is not a DLL and the addon resolves
// every napi_* function from the running process (`dyn-symbols`), so `-lnode` only has to be
// satisfied: GNU ld takes `libnode.dll.a` first, an import library of node.exe that no symbol of
// the addon pulls from, so the DLL imports nothing from it. The `libnode.dll` napi-build looks
// for is that same import library (ld never reads it, it finds the `.dll.a` first).
function libnode(targetDir) {
  const dir = path.join(targetDir, 'libnode');
  const importLibrary = path.join(dir, 'libnode.dll.a');
  if (!existsSync(importLibrary)) {
    mkdirSync(dir, { recursive: true });
    const def = path.join(dir, 'node.def');
    writeFileSync(def, 'LIBRARY node.exe\nEXPORTS\n  napi_module_register\n');
    execFileSync(`${MINGW}-dlltool`, ['-d', def, '-D', 'node.exe', '-l', importLibrary]);
    execFileSync(`${MINGW}-dlltool`, ['-d', def, '-D', 'node.exe', '-l', path.join(dir, 'libnode.dll')]);
  }
  return dir;
}

/** Where `npm run build:platforms win32-x64-msvc` writes the emulator for Windows. */
export const EMULATOR_EXE = path.resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'target', 'platforms', 'x86_64-pc-windows-gnu', 'release', 'iothub-emulator.exe');
