'use strict';
// The runtime check made before the addon loads: a runtime without Node-API, or with a version
// older than the one the addon is built for (napi-rs's `napi8` feature), gets one line naming the
// runtime and the reason, instead of the loader's opaque failure to find a platform binding.
// Tested runtimes and versions: README "Supported runtimes".
const NAPI_NEEDED = 8;

function runtimeName(versions = process.versions) {
  if (versions.bun) return `Bun ${versions.bun}`;
  if (versions.deno) return `Deno ${versions.deno}`;
  if (versions.node) return `Node.js ${versions.node}`;
  return 'this JavaScript runtime';
}

/** Throws one line when the runtime cannot load the addon; returns its Node-API version. */
function checkRuntime(versions = globalThis.process?.versions ?? {}) {
  const napi = Number(versions.napi);
  if (!versions.napi || !Number.isFinite(napi)) {
    throw new Error(`iothub-jobs: ${runtimeName(versions)} has no Node-API (process.versions.napi is missing), so its native addon cannot load there; see "Supported runtimes" in the README`);
  }
  if (napi < NAPI_NEEDED) {
    throw new Error(`iothub-jobs: ${runtimeName(versions)} provides Node-API ${napi}, the addon needs ${NAPI_NEEDED} or later; see "Supported runtimes" in the README`);
  }
  return napi;
}

module.exports = { checkRuntime, runtimeName, NAPI_NEEDED };
