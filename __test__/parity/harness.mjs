// Running one scenario through both clients and reducing what happened to comparable data.
import crypto from 'node:crypto';
import assert from 'node:assert/strict';

export const KEY = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';
export const POLICY = 'iothubowner';
export const connectionString = (server, { key = KEY, policy = POLICY } = {}) =>
  `HostName=${server.hostName};SharedAccessKeyName=${policy};SharedAccessKey=${key}`;

// ---- SAS helpers (an independent implementation of the IoT Hub SAS scheme, checked against known vectors) ----

export function encodeStrict(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16));
}

export function sasToken(sr, skn, key, se) {
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(sr + '\n' + se).digest('base64');
  let t = `SharedAccessSignature sr=${sr}&sig=${encodeStrict(sig)}`;
  if (skn) t += `&skn=${encodeStrict(skn)}`;
  return t + `&se=${se}`;
}

/** Parses an Authorization SAS header into its fields, in order. */
export function parseSas(header) {
  assert.match(header, /^SharedAccessSignature /);
  const fields = header.slice('SharedAccessSignature '.length).split('&').map((kv) => {
    const i = kv.indexOf('=');
    return [kv.slice(0, i), kv.slice(i + 1)];
  });
  return { order: fields.map(([k]) => k), ...Object.fromEntries(fields) };
}

/** Asserts that `header` is a correctly signed token for (sr, skn, key) and returns its `se`. */
export function assertValidSas(header, { sr, skn, key }) {
  const f = parseSas(header);
  assert.equal(f.sr, sr, 'sr');
  assert.equal(header, sasToken(sr, skn, key, f.se), 'token must be HMAC-SHA256(key, sr\\nse) in the order sr, sig, skn, se');
  return Number(f.se);
}

// ---- capturing what a call does ----

/**
 * Calls `fn()` (a promise-form call) and reports:
 *   { sync: 'throw', error } | { sync: 'return', kind: 'resolve', value } | { ..., kind: 'reject', error }
 */
export async function callPromise(fn) {
  let p;
  try {
    p = fn();
  } catch (error) {
    return { sync: 'throw', error };
  }
  if (!p || typeof p.then !== 'function') return { sync: 'return', kind: 'not-a-promise', value: p };
  try {
    return { sync: 'return', kind: 'resolve', value: await p };
  } catch (error) {
    return { sync: 'return', kind: 'reject', error };
  }
}

/**
 * Calls `fn(cb)` (a callback-form call) and reports:
 *   { sync: 'throw', error } | { sync: 'return', returned, kind: 'callback', args, calls }
 * Waits for the first callback (or `timeoutMs`), then a little longer to catch a second call.
 */
export async function callCallback(fn, { timeoutMs = 5000 } = {}) {
  let calls = 0;
  let firstArgs;
  let resolveFirst;
  const first = new Promise((r) => (resolveFirst = r));
  const cb = (...args) => {
    calls++;
    if (calls === 1) {
      firstArgs = args;
      resolveFirst();
    }
  };
  let returned;
  try {
    returned = fn(cb);
  } catch (error) {
    return { sync: 'throw', error };
  }
  let timer;
  const timedOut = await Promise.race([
    first.then(() => false),
    new Promise((r) => (timer = setTimeout(() => r(true), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (timedOut) return { sync: 'return', returned, kind: 'no-callback' };
  await new Promise((r) => setTimeout(r, 20));
  return { sync: 'return', returned, kind: 'callback', args: firstArgs, calls };
}

// ---- normalisation ----

// Response headers that describe the connection rather than the response (Node's server sets
// them according to the client's own Connection header) are not compared.
const TRANSPORT_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'date']);

export function normResponse(r) {
  if (r === undefined || r === null) return r;
  if (typeof r !== 'object') return { notAnObject: typeof r };
  const headers = {};
  for (const [k, v] of Object.entries(r.headers || {})) if (!TRANSPORT_RESPONSE_HEADERS.has(k)) headers[k] = v;
  return { statusCode: r.statusCode, statusMessage: r.statusMessage, headers };
}

export function normError(e, { messageFor = () => true } = {}) {
  if (!(e instanceof Error)) return { notAnError: true, value: e };
  const out = {
    constructorName: e.constructor && e.constructor.name,
    name: e.name,
    message: messageFor(e) ? e.message : '<not compared>',
  };
  if ('responseBody' in e) out.responseBody = e.responseBody;
  if ('response' in e) out.response = normResponse(e.response);
  return out;
}

export function normValue(v) {
  if (v && typeof v === 'object' && 'jobStatus' in v && 'response' in v) {
    return { shape: 'JobStatusResponse', keys: Object.keys(v).sort(), jobStatus: v.jobStatus, response: normResponse(v.response) };
  }
  if (v && typeof v === 'object' && 'result' in v && 'message' in v) {
    return { shape: 'ResultWithIncomingMessage', keys: Object.keys(v).sort(), result: v.result, message: normResponse(v.message) };
  }
  return v;
}

export function normOutcome(o, opts) {
  if (o.sync === 'throw') return { sync: 'throw', error: normError(o.error, opts) };
  if (o.kind === 'resolve') return { sync: 'return', kind: 'resolve', value: normValue(o.value) };
  if (o.kind === 'reject') return { sync: 'return', kind: 'reject', error: normError(o.error, opts) };
  if (o.kind === 'callback') {
    const [err, result, response] = o.args;
    return {
      sync: 'return',
      returned: o.returned,
      kind: 'callback',
      calls: o.calls,
      argc: o.args.length,
      err: err === null ? null : err === undefined ? undefined : normError(err, opts),
      result: o.args.length > 1 ? normValue(result) : '<absent>',
      response: o.args.length > 2 ? normResponse(response) : '<absent>',
    };
  }
  return o;
}

/**
 * A request reduced to what must be identical. Request-Id and User-Agent are checked separately;
 * in SAS-key mode the token's `se`/`sig` change with the clock and are masked (their correctness
 * is asserted on the side, see assertValidSas).
 */
export function normRequest(r, { maskSas = true, now } = {}) {
  const headers = {};
  for (const [k, v] of Object.entries(r.headers)) {
    if (k === 'request-id' || k === 'user-agent') continue;
    headers[k] = k === 'authorization' && maskSas ? v.replace(/([?&\s]sig=)[^&]*/, '$1<sig>').replace(/([?&\s]se=)\d+/, '$1<se>') : v;
  }
  let body = r.body.toString('utf8');
  if (now) {
    body = body.replace(/"startTime":"([^"]+)"/g, (m, iso) => {
      const t = Date.parse(iso);
      return t >= now.from - 1000 && t <= now.to + 1000 ? '"startTime":"<now>"' : m;
    });
  }
  return { method: r.method, path: r.path, query: r.rawQuery, headers: sortKeys(headers), body };
}

function sortKeys(o) {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** Per-side header checks that are not "identical" but still specified. */
export function assertSideHeaders(side, requests, { userAgent }) {
  const ids = new Set();
  for (const r of requests) {
    assert.match(r.headers['request-id'] ?? '', UUID_V4, `${side}: Request-Id must be a uuid v4`);
    ids.add(r.headers['request-id']);
    assert.equal(r.headers['user-agent'], userAgent, `${side}: User-Agent`);
  }
  assert.equal(ids.size, requests.length, `${side}: a fresh Request-Id per request`);
}

/**
 * Runs `scenario(factory, side)` for the reference and for ours against the same script and
 * returns both outcomes and recorded requests. `script(server)` sets up responses before each run.
 */
export async function runBoth(server, pair, { script, scenario, settleMs = 0 }) {
  const out = {};
  for (const [label, side] of [
    ['ref', pair.ref],
    ['ours', pair.ours],
  ]) {
    server.reset();
    server.dropConnections();
    if (script) script(server);
    const from = Date.now();
    const outcome = await scenario(side);
    if (settleMs) await new Promise((r) => setTimeout(r, settleMs));
    const to = Date.now();
    out[label] = { outcome, requests: server.requests.slice(), window: { from, to } };
  }
  return out;
}
