// The one recording test server of the suites: a local HTTP(S) server that records every request
// and answers from a script.
//
// It listens on 127.0.0.1, port 0, over HTTPS with the test-only certificate in __test__/fixtures
// (CA "iothub-jobs parity test CA", leaf for IP:127.0.0.1 and DNS:localhost; trust it with
// `CA_PEM`) or over plain HTTP (`{ tls: false }`). Every request is recorded (method, path,
// query, headers, raw body, arrival time) and answered from a script: a queue of responses, or a
// function of the recorded request. `close()` drops every open connection, so it never waits for
// a client's keep-alive pool.
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const CA_PATH = path.join(fixtures, 'ca.pem');
export const CA_PEM = readFileSync(CA_PATH, 'utf8');
const SERVER_CERT = readFileSync(path.join(fixtures, 'server.pem'), 'utf8');
const SERVER_KEY = readFileSync(path.join(fixtures, 'server-key.pem'), 'utf8');

/**
 * A scripted response:
 *   { status = 200, statusMessage?, headers = {}, body?: string | Buffer, json?: any,
 *     chunks?: Array<string | Buffer>, chunkDelayMs = 30, delayMs?: number, hang?: boolean }
 * `delayMs` waits before answering; `hang` never answers.
 * `json` sets content-type application/json; charset=utf-8 (unless given) and the JSON body.
 * `chunks` are written one by one with a pause in between (each lands in its own TCP segment).
 */
export class RecordingServer {
  /**
   * `tls`: HTTPS (default) or plain HTTP. `fallback`: the answer when nothing is scripted.
   * `respond`: a script function from the start (see `respond`).
   */
  constructor({ tls = true, keepAliveTimeout = 5000, fallback = { status: 200, json: {} }, respond = null } = {}) {
    this.requests = [];
    this._queue = [];
    this._responder = respond;
    this._fallback = fallback;
    this._tls = tls;
    this._sockets = new Set();
    const handler = (req, res) => this._handle(req, res);
    this._server = tls
      ? https.createServer({ cert: SERVER_CERT, key: SERVER_KEY, keepAliveTimeout }, handler)
      : http.createServer({ keepAliveTimeout }, handler);
    this._server.on('connection', (s) => {
      this._sockets.add(s);
      s.on('close', () => this._sockets.delete(s));
    });
    this._server.on('secureConnection', (s) => {
      this._sockets.add(s);
      s.on('close', () => this._sockets.delete(s));
    });
  }

  async start() {
    await new Promise((resolve, reject) => {
      this._server.once('error', reject);
      this._server.listen(0, '127.0.0.1', resolve);
    });
    this.port = this._server.address().port;
    this.hostName = `127.0.0.1:${this.port}`;
    this.url = `${this._tls ? 'https' : 'http'}://${this.hostName}`;
    return this;
  }

  /** A hub connection string for this server (a SAS key of the caller's choice). */
  connectionString(key) {
    return `HostName=${this.hostName};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`;
  }

  /** Forget recorded requests and scripted responses. */
  reset() {
    this.requests = [];
    this._queue = [];
    this._responder = null;
  }

  /** Queue responses (used in order; the last one repeats once the queue is exhausted). */
  reply(...responses) {
    this._queue.push(...responses);
    return this;
  }

  /** Answer with fn(recordedRequest, index) instead of the queue. */
  respond(fn) {
    this._responder = fn;
    return this;
  }

  /** Drop every open connection (keep-alive pools of both clients). */
  dropConnections() {
    for (const s of this._sockets) s.destroy();
    this._sockets.clear();
  }

  async close() {
    this.dropConnections();
    await new Promise((resolve) => this._server.close(() => resolve()));
  }

  _next(record, index) {
    if (this._responder) return this._responder(record, index);
    if (this._queue.length === 0) return this._fallback;
    return this._queue.length > 1 ? this._queue.shift() : this._queue[0];
  }

  _handle(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const url = new URL(req.url, 'https://recorded');
      const query = [];
      for (const [k, v] of url.searchParams) query.push([k, v]);
      const record = {
        method: req.method,
        url: req.url,
        // the path exactly as sent (not normalised: "/jobs/v2/../x" stays as is)
        path: req.url.split('?')[0],
        rawQuery: req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '',
        query,
        headers: { ...req.headers },
        rawHeaders: [...req.rawHeaders],
        body: Buffer.concat(chunks),
        at: performance.now(),
      };
      const index = this.requests.length;
      this.requests.push(record);
      let r;
      try {
        r = (await this._next(record, index)) || {};
      } catch (e) {
        r = { status: 599, body: String(e) };
      }
      if (r.hang) return; // never answer (connection stays open until the test drops it)
      if (r.delayMs) await new Promise((ok) => setTimeout(ok, r.delayMs));
      res.sendDate = false;
      const headers = { ...(r.headers || {}) };
      let body = r.body;
      if (r.json !== undefined) {
        body = JSON.stringify(r.json);
        if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
          headers['content-type'] = 'application/json; charset=utf-8';
        }
      }
      const status = r.status ?? 200;
      if (r.chunks) {
        const bufs = r.chunks.map((c) => (Buffer.isBuffer(c) ? c : Buffer.from(c)));
        headers['content-length'] = String(bufs.reduce((n, b) => n + b.length, 0));
        res.writeHead(status, r.statusMessage, headers);
        res.flushHeaders();
        for (let i = 0; i < bufs.length; i++) {
          res.write(bufs[i]);
          if (i < bufs.length - 1) await new Promise((ok) => setTimeout(ok, r.chunkDelayMs ?? 30));
        }
        res.end();
        return;
      }
      const buf = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(String(body));
      headers['content-length'] = String(buf.length);
      res.writeHead(status, r.statusMessage, headers);
      res.end(buf);
    });
  }
}
