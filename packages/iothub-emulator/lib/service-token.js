'use strict';
// What the package's own calls to the hub's service API sign with: the REST api-version and a
// SAS token of the connection string's policy (startEmulator's createDevice, import/export).
const { createHmac } = require('node:crypto');

const API_VERSION = '2021-04-12';

/** A service SAS token for the connection string's policy, valid for an hour. */
function serviceToken(connectionString) {
  const fields = Object.fromEntries(connectionString.split(';').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  const sr = encodeURIComponent(fields.HostName);
  const se = Math.floor(Date.now() / 1000) + 3600;
  const sig = createHmac('sha256', Buffer.from(fields.SharedAccessKey, 'base64')).update(`${sr}\n${se}`).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=${encodeURIComponent(fields.SharedAccessKeyName)}`;
}

module.exports = { API_VERSION, serviceToken };
