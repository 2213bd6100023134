// HARNESS-ONLY shim, preloaded (`node --require`) into every reference (azure-iothub) worker that
// sends requests. It is not part of either package under test.
//
// Why: azure-iothub 1.16.6 passes the connection string's HostName unchanged as `host` to
// https.request (dist/common-http/http.js, buildRequest), so `HostName=127.0.0.1:PORT` — the
// emulator's form — becomes a DNS lookup of "127.0.0.1:PORT" and fails. Real hubs listen on 443 and
// never hit this. The shim only splits `host: 'name:port'` into `host` + `port` when no port was
// given; everything else (agent, headers, TLS, SNI, the Host header Node derives) is untouched, so
// the reference sends exactly what it would send to a hub on a non-default port. Its cost is one
// regex test per request, paid identically by every reference measurement.
'use strict'
const https = require('https')

const request = https.request
const hostWithPort = /^([^:[\]]+):(\d{1,5})$/

https.request = function requestWithHostPort(options, ...rest) {
  if (options && typeof options === 'object' && !(options instanceof URL) && typeof options.host === 'string' && options.port == null) {
    const match = hostWithPort.exec(options.host)
    if (match) options = { ...options, host: match[1], port: Number(match[2]) }
  }
  return request.call(this, options, ...rest)
}
