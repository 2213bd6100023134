// Child process for the "nextAsTwin() on a job query" difference: the reference throws from inside
// its HTTP response handler (Twin needs a Registry it does not have) and the process dies with an
// uncaught exception; ours must answer (result or error) and the process must survive.
//
// usage: node next-as-twin-child.mjs <ref|ours> <port> <promise|callback>
// prints one line "OUTCOME <json>" and exits 0 if the call completed.
import { sides } from './clients.mjs';
import { connectionString, callPromise, callCallback } from './harness.mjs';

const [sideName, port, form] = process.argv.slice(2);
const server = { port: Number(port), hostName: `127.0.0.1:${port}` };
const pair = sides(server);
const side = sideName === 'ref' ? pair.ref : pair.ours;
const client = side.fromConnectionString(connectionString(server));
const query = client.createQuery('scheduleDeviceMethod');
const outcome =
  form === 'callback' ? await callCallback((cb) => query.nextAsTwin(cb)) : await callPromise(() => query.nextAsTwin());
const summary = { sync: outcome.sync, kind: outcome.kind };
const err = outcome.error || (outcome.args && outcome.args[0]);
if (err) summary.error = { name: err.name, message: err.message };
const value = outcome.value ? outcome.value.result : outcome.args && outcome.args[1];
if (value !== undefined) summary.resultLength = Array.isArray(value) ? value.length : typeof value;
// Give a crash that happens after the callback (e.g. on a later tick) the chance to show.
await new Promise((r) => setTimeout(r, 100));
process.stdout.write('OUTCOME ' + JSON.stringify(summary) + '\n');
process.exit(0);
