// Harness-only: azure-iothub and azure-iot-device-http pass HostName straight to https.request
// as `host`, so `127.0.0.1:PORT` (the emulator on a free port) would be looked up as a DNS name.
// This splits the port off before the request is made and, when given, adds the emulator's CA
// (neither package has a CA option). node_modules is never modified.
import https from 'node:https'

/** Installs the shim once per process; `ca` (PEM) is added to every request it rewrites. */
export function installHostPortShim(ca) {
  const original = https.request
  https.request = function requestWithPort(options, ...rest) {
    if (options && typeof options === 'object' && typeof options.host === 'string' && options.port === undefined) {
      const m = /^(.*):(\d+)$/.exec(options.host)
      if (m && !m[1].includes(':')) options = { ...options, host: m[1], port: Number(m[2]), ...(ca ? { ca } : {}) }
    }
    return original.call(this, options, ...rest)
  }
}
