'use strict';
// Which iothub-emulator binary to run, the esbuild/Biome way: $IOTHUB_EMULATOR, else the binary of
// the platform package npm installed from our optionalDependencies (no postinstall, no download).
// When none fits, one line saying what to do.
const { accessSync, chmodSync, constants, existsSync, statSync } = require('node:fs');

/** `${process.platform} ${process.arch}` → the platform package holding its binary. */
const PACKAGES = {
  'linux x64': 'iothub-emulator-linux-x64',
  'linux arm64': 'iothub-emulator-linux-arm64',
  'darwin x64': 'iothub-emulator-darwin-x64',
  'darwin arm64': 'iothub-emulator-darwin-arm64',
  'win32 x64': 'iothub-emulator-win32-x64',
};

class EmulatorNotFoundError extends Error {
  constructor(message) {
    super(message);
    this.name = 'EmulatorNotFoundError';
    this.code = 'IOTHUB_EMULATOR_NOT_FOUND';
  }
}

const resolves = (request) => {
  try {
    return require.resolve(request);
  } catch {
    return null;
  }
};

/** The path of the binary to run; throws an EmulatorNotFoundError (one line) when there is none. */
function binaryPath(env = process.env, platform = process.platform, arch = process.arch) {
  if (env.IOTHUB_EMULATOR) {
    if (!existsSync(env.IOTHUB_EMULATOR) || statSync(env.IOTHUB_EMULATOR).isDirectory()) {
      throw new EmulatorNotFoundError(`IOTHUB_EMULATOR names no file: ${env.IOTHUB_EMULATOR}`);
    }
    return env.IOTHUB_EMULATOR;
  }
  const name = PACKAGES[`${platform} ${arch}`];
  if (!name) {
    throw new EmulatorNotFoundError(
      `iothub-emulator has no binary for ${platform}-${arch} (it ships ${Object.keys(PACKAGES).map((k) => k.replace(' ', '-')).join(', ')}): build one with \`cargo build --release -p iothub-emulator\` from the iothub-jobs repository and set IOTHUB_EMULATOR to it`,
    );
  }
  const exe = platform === 'win32' ? 'iothub-emulator.exe' : 'iothub-emulator';
  const found = resolves(`${name}/bin/${exe}`);
  if (found) return executable(found);
  const other = Object.values(PACKAGES).find((p) => p !== name && resolves(`${p}/package.json`));
  if (other) {
    throw new EmulatorNotFoundError(
      `iothub-emulator: node_modules has ${other} but not ${name}: it was installed on another platform; run \`npm ci\` (or \`npm install\`) on this ${platform}-${arch} machine`,
    );
  }
  if (resolves(`${name}/package.json`)) {
    throw new EmulatorNotFoundError(`iothub-emulator: ${name} is installed without its binary bin/${exe}: reinstall it (\`npm ci\`)`);
  }
  throw new EmulatorNotFoundError(
    `iothub-emulator: its optional dependency ${name} is not installed (npm install --omit=optional or --no-optional?): run \`npm install\` with optional dependencies, or set IOTHUB_EMULATOR to an iothub-emulator binary`,
  );
}

// A tarball unpacked by a tool that drops the executable bit still runs: set it back when we may.
function executable(file) {
  if (process.platform === 'win32') return file;
  try {
    accessSync(file, constants.X_OK);
  } catch {
    try {
      chmodSync(file, 0o755);
    } catch {
      // read-only node_modules: spawning reports EACCES with the path
    }
  }
  return file;
}

module.exports = { binaryPath, EmulatorNotFoundError, PACKAGES };
