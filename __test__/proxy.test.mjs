// Proxies: the `proxy` option, HTTPS_PROXY / NO_PROXY from the environment (read when the client
// is created), basic proxy credentials, and token requests of the native credentials going through
// the same proxy. The proxy is a tiny Node HTTP server that handles CONNECT, tunnels to the
// requested loopback target and counts tunnels.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { startEmulator } from './helpers/emulator.mjs';
import { RecordingServer, CA_PEM } from './helpers/recording-server.mjs';

const require = createRequire(import.meta.url);
const { JobClient } = require('../lib/main.js');

const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy'];
const saved = Object.fromEntries(PROXY_VARS.map((k) => [k, process.env[k]]));
function clearProxyEnv() {
  for (const k of PROXY_VARS) delete process.env[k];
}

class ConnectProxy {
  constructor({ requireAuth } = {}) {
    this.tunnels = [];
    this.sockets = new Set();
    this.server = http.createServer((req, res) => {
      res.writeHead(405).end();
    });
    this.server.on('connect', (req, clientSocket, head) => {
      this.sockets.add(clientSocket);
      clientSocket.on('close', () => this.sockets.delete(clientSocket));
      clientSocket.on('error', () => {});
      const auth = req.headers['proxy-authorization'];
      this.tunnels.push({ target: req.url, auth });
      if (requireAuth && auth !== requireAuth) {
        clientSocket.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const [host, port] = splitHostPort(req.url);
      if (host !== '127.0.0.1' && host !== 'localhost') {
        // Loopback only: never tunnel anywhere else.
        clientSocket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const upstream = net.connect(port, host, () => {
        clientSocket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head?.length) upstream.write(head);
        upstream.pipe(clientSocket);
        clientSocket.pipe(upstream);
      });
      this.sockets.add(upstream);
      upstream.on('close', () => this.sockets.delete(upstream));
      upstream.on('error', () => clientSocket.destroy());
    });
  }
  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }
  async stop() {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

function splitHostPort(target) {
  const i = target.lastIndexOf(':');
  return [target.slice(0, i).replace(/^\[|\]$/g, ''), Number(target.slice(i + 1))];
}

let hub;
let hubCa;
let proxy;

before(async () => {
  clearProxyEnv();
  hub = await startEmulator();
  hubCa = readFileSync(hub.caPath, 'utf8');
  proxy = await new ConnectProxy().start();
});

after(async () => {
  await proxy?.stop();
  await hub?.stop();
  clearProxyEnv();
  for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
});

afterEach(() => clearProxyEnv());

async function call(client) {
  const { message } = await client.createQuery().next();
  assert.equal(message.statusCode, 200);
}

/** An unusable proxy (password `pw`) fails the call, says so without the password, and never
 * falls back to a direct connection. */
async function assertRefusedWithoutReachingHub(client) {
  await assert.rejects(call(client), (e) => {
    assert.match(e.message, /not a valid proxy URL/);
    assert.ok(!e.message.includes('pw'), e.message);
    return true;
  });
  const { requests } = await hub.control('GET', 'requests');
  assert.equal(requests.length, 0, 'nothing reached the hub');
}

const tunnelsTo = (p, target) => p.tunnels.filter((t) => t.target === target).length;

describe('proxy option', () => {
  test('tunnels every connection to the hub through the proxy', async () => {
    const before = proxy.tunnels.length;
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa, proxy: proxy.url });
    await call(client);
    await call(client);
    const mine = proxy.tunnels.slice(before);
    assert.ok(mine.length >= 1, 'at least one tunnel');
    assert.ok(mine.every((t) => t.target === hub.hostName), JSON.stringify(mine));
    assert.equal(mine[0].auth, undefined);
  });

  test('the option wins over the environment, and NO_PROXY does not apply to it', async () => {
    process.env.HTTPS_PROXY = 'http://127.0.0.1:9'; // nothing listens there
    process.env.NO_PROXY = '127.0.0.1';
    const before = tunnelsTo(proxy, hub.hostName);
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa, proxy: proxy.url });
    await call(client);
    assert.ok(tunnelsTo(proxy, hub.hostName) > before);
  });

  test('proxy credentials travel as Proxy-Authorization: Basic', async () => {
    const expected = 'Basic ' + Buffer.from('user:p@ss').toString('base64');
    const authProxy = await new ConnectProxy({ requireAuth: expected }).start();
    try {
      const url = authProxy.url.replace('http://', 'http://user:p%40ss@');
      const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa, proxy: url });
      await call(client);
      assert.equal(authProxy.tunnels[0].auth, expected);
      // Wrong credentials: the proxy answers 407 and the call fails without reaching the hub.
      const bad = JobClient.fromConnectionString(hub.connectionString, {
        ca: hubCa,
        proxy: authProxy.url.replace('http://', 'http://user:wrong@'),
        retry: false,
      });
      await assert.rejects(call(bad), (e) => {
        assert.ok(!e.message.includes('wrong'), 'no proxy password in the message');
        return true;
      });
    } finally {
      await authProxy.stop();
    }
  });

  test("proxy: '' means no proxy even when HTTPS_PROXY is set", async () => {
    process.env.HTTPS_PROXY = proxy.url;
    const before = proxy.tunnels.length;
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa, proxy: '' });
    await call(client);
    assert.equal(proxy.tunnels.length, before);
  });

  test('an unparsable proxy option fails every call instead of connecting directly', async () => {
    await hub.control('DELETE', 'requests');
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa, proxy: 'http://user:pw@bad host:3128', retry: false });
    await assertRefusedWithoutReachingHub(client);
  });

  test('an unsupported proxy scheme fails the call clearly', async () => {
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa, proxy: 'socks5://127.0.0.1:1', retry: false });
    await assert.rejects(call(client), /only http:\/\/ proxies/);
  });
});

describe('environment', () => {
  test('HTTPS_PROXY is honoured, read when the client is created', async () => {
    const before = tunnelsTo(proxy, hub.hostName);
    const direct = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa });
    process.env.HTTPS_PROXY = proxy.url;
    const proxied = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa });
    clearProxyEnv();
    await call(direct);
    assert.equal(tunnelsTo(proxy, hub.hostName), before, 'a client made before HTTPS_PROXY was set goes direct');
    await call(proxied);
    assert.ok(tunnelsTo(proxy, hub.hostName) > before, 'a client made while HTTPS_PROXY was set keeps using it');
  });

  test('lower-case https_proxy works too', async () => {
    const before = tunnelsTo(proxy, hub.hostName);
    process.env.https_proxy = proxy.url;
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa });
    await call(client);
    assert.ok(tunnelsTo(proxy, hub.hostName) > before);
  });

  for (const noProxy of ['127.0.0.1', '127.0.0.0/8', '*', 'example.invalid, 127.0.0.1']) {
    test(`NO_PROXY=${noProxy} bypasses the proxy`, async () => {
      const before = proxy.tunnels.length;
      process.env.HTTPS_PROXY = proxy.url;
      process.env.NO_PROXY = noProxy;
      const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa });
      await call(client);
      assert.equal(proxy.tunnels.length, before);
    });
  }

  test('an unusable HTTPS_PROXY fails every call instead of connecting directly', async () => {
    await hub.control('DELETE', 'requests');
    process.env.HTTPS_PROXY = 'http://user:pw@bad host:3128';
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa, retry: false });
    clearProxyEnv();
    await assertRefusedWithoutReachingHub(client);
  });

  test('NO_PROXY naming another host does not bypass', async () => {
    const before = tunnelsTo(proxy, hub.hostName);
    process.env.HTTPS_PROXY = proxy.url;
    process.env.NO_PROXY = 'example.invalid,10.0.0.0/8';
    const client = JobClient.fromConnectionString(hub.connectionString, { ca: hubCa });
    await call(client);
    assert.ok(tunnelsTo(proxy, hub.hostName) > before);
  });
});

describe('native credentials', () => {
  test('token requests go through the proxy too', async () => {
    const token = `proxy-token-${process.pid}`;
    const hub2 = await startEmulator({ args: ['--bearer-token', token] });
    const entra = await new RecordingServer({
      fallback: { status: 200, headers: { 'content-type': 'application/json' }, json: { token_type: 'Bearer', expires_in: 3600, access_token: token } },
    }).start();
    const entraHost = entra.hostName;
    try {
      const ca = readFileSync(hub2.caPath, 'utf8') + '\n' + CA_PEM;
      const client = JobClient.fromClientSecret(hub2.hostName, 'tenant', 'client', 'secret', {
        authorityHost: `https://${entraHost}`,
        ca,
        proxy: proxy.url,
      });
      await call(client);
      assert.ok(tunnelsTo(proxy, entraHost) >= 1, 'token endpoint reached through the proxy');
      assert.ok(tunnelsTo(proxy, hub2.hostName) >= 1, 'hub reached through the proxy');

      // HTTPS_PROXY read when the client is created applies to the token requests too.
      const before = tunnelsTo(proxy, entraHost);
      process.env.HTTPS_PROXY = proxy.url;
      const viaEnv = JobClient.fromClientSecret(hub2.hostName, 'tenant', 'client2', 'secret', { authorityHost: `https://${entraHost}`, ca });
      clearProxyEnv();
      await call(viaEnv);
      assert.equal(tunnelsTo(proxy, entraHost), before + 1, 'token request tunnelled per the creation-time environment');

      // ...and so does NO_PROXY.
      process.env.HTTPS_PROXY = proxy.url;
      process.env.NO_PROXY = '127.0.0.1';
      const bypass = JobClient.fromClientSecret(hub2.hostName, 'tenant', 'client3', 'secret', { authorityHost: `https://${entraHost}`, ca });
      clearProxyEnv();
      await call(bypass);
      assert.equal(tunnelsTo(proxy, entraHost), before + 1, 'NO_PROXY bypassed the proxy for the token request');
    } finally {
      await entra.close();
      await hub2.stop();
    }
  });
});
