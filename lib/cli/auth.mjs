// Which JobClient the command line gets: a connection string (--connection-string or
// IOTHUB_CONNECTION_STRING), or a hub host name with the native Azure CLI or managed-identity
// credential. The CA of a private hub or of the emulator comes from --ca or IOTHUB_CA_FILE.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { CliError, EXIT, usageError } from './failure.mjs';
import { oneOf } from './values.mjs';

const { JobClient } = createRequire(import.meta.url)('../main.js');

function clientOptions(values, env) {
  const caFile = values.ca ?? env.IOTHUB_CA_FILE;
  if (caFile === undefined || caFile === '') return {};
  try {
    return { ca: readFileSync(caFile, 'utf8') };
  } catch (err) {
    throw usageError(`${values.ca ? '--ca' : 'IOTHUB_CA_FILE'}: cannot read ${caFile} (${err.code ?? err.message})`);
  }
}

export function createClient(values, env = process.env) {
  const auth = oneOf(values, 'auth', ['key', 'login', 'identity']) ?? 'key';
  const options = clientOptions(values, env);
  if (auth === 'key') {
    if (values.hub !== undefined) {
      throw usageError('--hub needs --auth login or --auth identity (with a key, give the connection string instead)');
    }
    const connectionString = values['connection-string'] ?? env.IOTHUB_CONNECTION_STRING;
    if (!connectionString) {
      throw new CliError('no credentials: set IOTHUB_CONNECTION_STRING, or give --connection-string, or --hub HOST --auth login', EXIT.auth);
    }
    try {
      return JobClient.fromConnectionString(connectionString, options);
    } catch (err) {
      // The addon's message never holds the key; say which input was wrong.
      throw new CliError(`invalid connection string: ${err.message}`, EXIT.auth);
    }
  }
  if (!values.hub) throw usageError(`--auth ${auth} needs --hub HOST (e.g. my-hub.azure-devices.net)`);
  if (values['connection-string'] !== undefined) throw usageError(`--auth ${auth} and --connection-string exclude each other`);
  if (auth === 'login') return JobClient.fromAzureCli(values.hub, options);
  const clientId = values['client-id'];
  return JobClient.fromManagedIdentity(values.hub, clientId === undefined ? options : { ...options, clientId });
}
