// Loading the two clients and pointing them at the recording server.
//
// - azure-iothub (the reference) only talks to `https://<HostName>:443`. It is pointed at the
//   recording server in-process, per client, by swapping the keep-alive agent it installs on its
//   private Http object for an agent whose connections go to 127.0.0.1:<port> and trust the test
//   CA. Nothing in node_modules is modified; the request it builds (path, headers, body, and the
//   Host header derived from HostName = "127.0.0.1:<port>") is untouched.
// - iothub-jobs (ours) is loaded from the package root (whatever "main" is) and gets the test CA
//   through its documented `ca` option, the extra last argument of the three factories.
//
// PARITY_OURS=reference runs the "ours" side with the reference too (used to validate the harness
// before the addon exists: every parity test must pass, every allowed-difference test must fail).
import { createRequire } from 'node:module';
import https from 'node:https';
import { CA_PEM } from '../helpers/recording-server.mjs';

const require = createRequire(import.meta.url);

export const reference = require('azure-iothub');
export const referenceErrors = require('azure-iothub/dist/common-core/errors');
export const referenceVersion = require('azure-iothub/package.json').version;

export const OURS_IS_REFERENCE = process.env.PARITY_OURS === 'reference';

let oursModule = null;
let oursLoadError = null;
if (OURS_IS_REFERENCE) {
  oursModule = { JobClient: reference.JobClient, errors: referenceErrors, Query: require('azure-iothub/dist/query').Query };
} else {
  try {
    oursModule = require('../..');
  } catch (e) {
    oursLoadError = e;
  }
}
export const ours = oursModule;
export const oursLoadFailure = oursLoadError;
export const oursVersion = require('../../package.json').version;

class RedirectAgent extends https.Agent {
  constructor(port) {
    super({ keepAlive: true, ca: CA_PEM });
    this._port = port;
  }
  createConnection(options, cb) {
    // options.host is the reference's HostName ("127.0.0.1:<port>"), options.port 443.
    return super.createConnection({ ...options, host: '127.0.0.1', port: this._port, servername: undefined, ca: CA_PEM }, cb);
  }
}

function redirectReference(client, server) {
  const http = client._restApiClient && client._restApiClient._http;
  if (!http || typeof http.setOptions !== 'function') throw new Error('azure-iothub internals changed: cannot redirect');
  http.setOptions({ http: { agent: new RedirectAgent(server.port) } });
  return client;
}

/**
 * The two sides of a parity test. Each has:
 *   name, JobClient, errors,
 *   fromConnectionString(cs, opts?), fromSharedAccessSignature(sas, opts?),
 *   fromTokenCredential(host, cred, opts?)
 * `opts` (ours only) is merged into the options object after `ca`; the reference ignores it.
 */
export function sides(server) {
  const ref = {
    name: 'azure-iothub',
    isReference: true,
    JobClient: reference.JobClient,
    Query: require('azure-iothub/dist/query').Query,
    errors: referenceErrors,
    fromConnectionString: (cs) => redirectReference(reference.JobClient.fromConnectionString(cs), server),
    fromSharedAccessSignature: (sas) => redirectReference(reference.JobClient.fromSharedAccessSignature(sas), server),
    fromTokenCredential: (host, cred) => redirectReference(reference.JobClient.fromTokenCredential(host, cred), server),
  };
  if (!ours) return { ref, ours: null };
  const oursSide = OURS_IS_REFERENCE
    ? { ...ref, name: 'iothub-jobs (harness check: reference)', isReference: false }
    : {
        name: 'iothub-jobs',
        isReference: false,
        JobClient: ours.JobClient,
        Query: ours.Query,
        errors: ours.errors,
        fromConnectionString: (cs, opts) => ours.JobClient.fromConnectionString(cs, { ca: CA_PEM, ...opts }),
        fromSharedAccessSignature: (sas, opts) => ours.JobClient.fromSharedAccessSignature(sas, { ca: CA_PEM, ...opts }),
        fromTokenCredential: (host, cred, opts) => ours.JobClient.fromTokenCredential(host, cred, { ca: CA_PEM, ...opts }),
      };
  return { ref, ours: oursSide };
}
