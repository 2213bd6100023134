// azure-iothub passes HostName straight to https.request as `host` and has no CA option, so the
// tests that drive it against the emulator (harness only) split the port off `host:port` and add
// the emulator's CA to its HTTPS requests. node_modules is never modified.
import https from 'node:https'

export function shimAzureIothub(caPem) {
  const original = https.request
  https.request = function requestWithPort(options, ...rest) {
    if (options && typeof options === 'object' && typeof options.host === 'string' && options.port === undefined) {
      const m = /^(.*):(\d+)$/.exec(options.host)
      if (m && !m[1].includes(':')) options = { ...options, host: m[1], port: Number(m[2]), ca: caPem }
    }
    return original.call(this, options, ...rest)
  }
}
