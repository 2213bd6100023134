'use strict';
// startEmulator(): runs the iothub-emulator binary as a child process on a free port, waits for its
// one JSON ready line and returns the hub's coordinates, a control-API client and stop().
//
// Lifecycle: the child gets `--exit-on-stdin-eof` and a stdin pipe, so it stops when we close the
// pipe (stop()) and also when this process ends in any way, SIGKILL included (the OS closes the
// pipe). Once ready, the child and its pipes are unref'd (unless `unref: false`): a forgotten hub
// never keeps the process alive, and stop() holds the process only until the child has exited.
const { spawn } = require('node:child_process');
const { mkdtempSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');

const { binaryPath, EmulatorNotFoundError } = require('./binary.js');
const { API_VERSION, serviceToken } = require('./service-token.js');

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
const asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose');

// Options of the Node API only; every other option is a flag: `fooBar: v` → `--foo-bar v`,
// `true` → `--foo-bar`, an array → the flag once per item.
const NODE_ONLY = new Set(['args', 'env', 'stderr', 'binary', 'readyTimeoutMs', 'seed', 'routing', 'unref']);
const FLAG_NAMES = { bearerTokens: 'bearer-token', consumerGroups: 'consumer-group' };

function flags(options) {
  const argv = ['--exit-on-stdin-eof'];
  // A free port unless one is given (as an option or in `args`), or `--standard-ports` chooses
  // the ports itself (and refuses --port).
  const args = options.args ?? [];
  const portChosen = args.some((a) => a === '--port' || a.startsWith('--port=') || a === '--standard-ports');
  if (options.port === undefined && !options.standardPorts && !portChosen) argv.push('--port', '0');
  for (const [key, value] of Object.entries(options)) {
    if (NODE_ONLY.has(key) || value === undefined || value === null || value === false) continue;
    const flag = `--${FLAG_NAMES[key] ?? key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    if (value === true) argv.push(flag);
    else for (const item of Array.isArray(value) ? value : [value]) argv.push(flag, String(item));
  }
  return argv;
}

/**
 * How the binary finds Azurite for `--storage azurite`: its `azurite-blob` script, resolved from
 * here (Azurite is an optional peer dependency), and this Node.js to run it with. Unset when
 * Azurite is not installed: the emulator then says what to install.
 */
function azuriteEnv() {
  const env = {};
  try {
    env.IOTHUB_EMULATOR_AZURITE = require.resolve('azurite/dist/src/blob/main.js');
    env.IOTHUB_EMULATOR_NODE = process.execPath;
  } catch {
    // not installed
  }
  return env;
}

/**
 * A seed object goes through a temporary file (the flag takes a file); a string is that file.
 * `routing` (IoT Hub's `properties.routing`) goes in the seed, over a seed file's own.
 */
function seedFile(seed, routing) {
  if (routing !== undefined && routing !== null) {
    const base = typeof seed === 'string' ? JSON.parse(readFileSync(seed, 'utf8')) : seed ?? {};
    seed = Array.isArray(base) ? { devices: base, routing } : { ...base, routing };
  }
  if (seed === undefined || seed === null) return { args: [], remove() {} };
  if (typeof seed === 'string') return { args: ['--seed', seed], remove() {} };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-emulator-seed-'));
  const file = path.join(dir, 'seed.json');
  writeFileSync(file, JSON.stringify(seed));
  return { args: ['--seed', file], remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function readyLine(child, timeoutMs, stderrTail) {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(`no ready line within ${timeoutMs} ms`), timeoutMs);
    function fail(why) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      // One line: the reason, and the emulator's own last word (its errors are one line).
      const last = stderrTail().trim().split('\n').pop();
      reject(new Error(`iothub-emulator did not start (${why})${last ? `: ${last}` : ''}`));
    }
    const onError = (err) => fail(err.message);
    // After the last of stdout, so that a ready line printed just before the exit still counts.
    const onExit = (code, signal) => setImmediate(() => fail(`it exited with ${code ?? signal}`));
    child.once('error', onError);
    child.once('exit', onExit);
    child.stdout.setEncoding('utf8').on('data', function onData(d) {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      child.stdout.off('data', onData);
      child.off('error', onError);
      child.off('exit', onExit);
      child.stdout.resume(); // nothing else is printed, but never let the pipe fill
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.slice(0, nl)));
      } catch (err) {
        fail(`its first line is not JSON (${err.message})`);
      }
    });
  });
}

/**
 * Starts a hub. See index.d.ts for the options and the returned object.
 * @param {import('../index').EmulatorOptions} [options]
 * @returns {Promise<import('../index').Emulator>}
 */
async function startEmulator(options = {}) {
  const { args = [], env = {}, stderr = 'pipe', binary, readyTimeoutMs = READY_TIMEOUT_MS, unref = true } = options;
  const seed = seedFile(options.seed, options.routing);
  let child;
  try {
    child = spawn(binary ?? binaryPath(), [...flags(options), ...seed.args, ...args], {
      stdio: ['pipe', 'pipe', stderr],
      env: { ...azuriteEnv(), ...process.env, ...env },
      windowsHide: true,
    });
  } catch (err) {
    seed.remove();
    throw err;
  }
  // Keep the tail of stderr for error messages; draining it also keeps the pipe from filling.
  let errText = '';
  child.stderr?.setEncoding('utf8').on('data', (d) => {
    errText = (errText + d).slice(-16_384);
  });
  child.stdin.on('error', () => {}); // EPIPE once the child is gone: nothing to tell
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  let ready;
  try {
    ready = await readyLine(child, readyTimeoutMs, () => errText);
  } finally {
    seed.remove();
  }
  child.on('error', () => {}); // a failed kill() later on: stop()'s timer and `exited` tell the rest
  // Bun's child-process streams have no unref(): there child.unref() alone lets the process exit.
  if (unref) for (const handle of [child, child.stdin, child.stdout, child.stderr]) handle?.unref?.();

  const ca = readFileSync(ready.caPath, 'utf8');
  const agent = new https.Agent({ keepAlive: true, maxSockets: 8 });

  function request(method, requestPath, body, headers = {}) {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: ready.host, port: ready.port, path: requestPath, method, ca, agent,
          headers: { ...headers, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d) => (text += d)).on('end', () => {
            if (res.statusCode < 200 || res.statusCode > 299) return reject(new Error(`${method} ${requestPath}: ${res.statusCode} ${text}`));
            try {
              resolve(text ? JSON.parse(text) : null);
            } catch (err) {
              reject(err);
            }
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** `/_emulator/<path>` with a JSON body; resolves with the parsed answer, rejects on non-2xx. */
  const control = (method, controlPath, body) => request(method, controlPath.startsWith('/') ? controlPath : `/_emulator/${controlPath}`, body);
  const deviceConnectionString = (deviceId, key) => `HostName=${ready.hostName};DeviceId=${deviceId};SharedAccessKey=${key}`;
  const id = (deviceId) => encodeURIComponent(deviceId);

  async function createDevice(deviceId, { primaryKey = null, secondaryKey = null, status = 'enabled' } = {}) {
    if (typeof deviceId !== 'string' || deviceId === '') throw new TypeError('createDevice: deviceId must be a non-empty string');
    const identity = { deviceId, status, authentication: { type: 'sas', symmetricKey: { primaryKey, secondaryKey } } };
    const created = await request('PUT', `/devices/${id(deviceId)}?api-version=${API_VERSION}`, identity, { authorization: serviceToken(ready.connectionString) });
    const keys = created.authentication.symmetricKey;
    return { deviceId, primaryKey: keys.primaryKey, secondaryKey: keys.secondaryKey, connectionString: deviceConnectionString(deviceId, keys.primaryKey) };
  }

  let stopping;
  function stop() {
    stopping ??= (async () => {
      agent.destroy();
      child.ref(); // hold the process until the child is gone
      child.stdin.end(); // --exit-on-stdin-eof: a graceful stop, on Windows too
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      const code = await exited;
      clearTimeout(timer);
      return code;
    })();
    return stopping;
  }

  return {
    host: ready.host,
    port: ready.port,
    hostName: ready.hostName,
    connectionString: ready.connectionString,
    eventHubConnectionString: ready.eventHubConnectionString,
    storageConnectionString: ready.storageConnectionString ?? null,
    ca,
    caPath: ready.caPath,
    pid: child.pid,
    ready,
    createDevice,
    deviceConnectionString,
    control,
    reset: () => control('POST', 'reset'),
    health: () => control('GET', 'health'),
    setFaults: (spec) => control('PUT', 'faults', { spec }),
    clearFaults: () => control('DELETE', 'faults'),
    routing: () => control('GET', 'routing'),
    setRouting: (routing) => control('PUT', 'routing', routing),
    setDeviceMethod: (deviceId, behaviour) => control('PATCH', `devices/${id(deviceId)}/method`, behaviour),
    setDeviceFaults: (deviceId, faults) => control('PUT', `devices/${id(deviceId)}/faults`, faults),
    dropConnection: (deviceId) => control('DELETE', `devices/${id(deviceId)}/connection`),
    addDevices: (seedObject, { replace = false } = {}) => control(replace ? 'PUT' : 'POST', 'devices', seedObject),
    advanceTime: (seconds) => control('POST', 'time/advance', { seconds }),
    setTimeScale: (scale) => control('PUT', 'time', { scale }),
    telemetry: ({ clear = false } = {}) => control('GET', `telemetry${clear ? '?clear=true' : ''}`).then((r) => r.messages),
    requests: ({ clear = false } = {}) => control('GET', `requests${clear ? '?clear=true' : ''}`),
    jobs: () => control('GET', 'jobs'),
    stderr: () => errText,
    // What a crash does (SIGKILL: nothing more written); stop() then resolves with the signal.
    kill: (signal = 'SIGKILL') => child.kill(signal),
    exited,
    stop,
    [asyncDispose]: stop,
  };
}

module.exports = { startEmulator, binaryPath, EmulatorNotFoundError, azuriteEnv };
