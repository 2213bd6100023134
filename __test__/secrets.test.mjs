// Security: no error or log line ever shows the connection string's key, a SAS
// signature, a whole SAS token or a bearer token. Drives every error path (401 with a wrong key,
// expired / forged / malformed SAS, malformed connection strings, token-credential failures,
// transport errors, timeouts) and scans each error's message, stack, util.inspect (incl.
// `.response`), JSON.stringify and `responseBody`; then the emulator's stderr; then reruns
// everything in a child process with every logging switch on (AZURE_LOG_LEVEL, DEBUG, RUST_LOG)
// and scans all it printed. The other reliability suites scan their errors with the same helper.
//
// Logging: the client writes `iothub-jobs:<level> …` lines to stderr when AZURE_LOG_LEVEL or
// DEBUG=iothub-jobs* is set (crates/core/src/log.rs); the child-process test scans them all.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import path from 'node:path'
import os from 'node:os'
import util from 'node:util'
import { spawn } from 'node:child_process'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { setup, makeSas, GOOD_BEARER, FAST } from './helpers/secret-scenarios.mjs'
import { SecretSet, errorTexts } from './helpers/secrets.mjs'
import { pkg } from './helpers/reliability.mjs'
import { RecordingServer, CA_PEM } from './helpers/recording-server.mjs'

const { JobClient, errors } = pkg
const here = path.dirname(fileURLToPath(import.meta.url))

/** Scenarios that must not send anything. */
const NOTHING_SENT = new Set([
  'expired SAS (fails fast, nothing sent)',
  'token credential: token with CR/LF (refused before sending)',
  'malformed SAS: sig with NUL (refused before sending)',
])

describe('secrets never appear in errors', () => {
  let env
  const seenErrors = []
  before(async () => {
    env = await setup()
  })
  after(() => env?.stop())

  test('every error path is scanned', async (t) => {
    for (const s of env.scenarios) {
      await t.test(s.name, async () => {
        await env.hub.control('DELETE', 'requests')
        if (s.faults) await env.hub.control('PUT', 'faults', { spec: s.faults })
        let err
        try {
          err = await s.run()
        } finally {
          await env.hub.control('DELETE', 'faults')
        }
        const { requests } = await env.hub.control('GET', 'requests')
        assert.ok(err, `${s.name}: no error`)
        seenErrors.push([s.name, err])
        if (s.expect) assert.ok(s.expect(err), `unexpected error: ${err?.name}: ${err?.message}`)
        if (NOTHING_SENT.has(s.name)) assert.equal(requests.length, 0, 'a request was sent')

        const secrets = new SecretSet().addFromRequestLog({ requests })
        for (const [label, value] of Object.entries(s.secrets)) secrets.add(label, value)
        for (const token of s.sas ?? []) secrets.addSas('scenario SAS', token)
        secrets.assertClean(errorTexts(err), s.name)
      })
    }
    assert.equal(seenErrors.length, env.scenarios.length, 'every scenario produced an error')
  })

  test('util.inspect of clients built by every factory shows no secret', async () => {
    const { hub, ca, key } = env
    const now = Math.floor(Date.now() / 1000)
    const sas = makeSas({ host: hub.hostName, key, se: now + 3600 })
    const clients = [
      JobClient.fromConnectionString(hub.connectionString, { ca }),
      JobClient.fromSharedAccessSignature(sas, { ca }),
      JobClient.fromTokenCredential(hub.hostName, { getToken: async () => ({ token: GOOD_BEARER, expiresOnTimestamp: Date.now() + 3600_000 }) }, { ca }),
    ]
    // after a call each, so any cached token exists
    for (const c of clients) await c.getJob('missing').catch(() => {})
    const { requests } = await hub.control('GET', 'requests')
    const secrets = new SecretSet().add('key', key).addSas('SAS', sas).add('bearer', GOOD_BEARER).addFromRequestLog({ requests })
    for (const c of clients) {
      secrets.assertClean(
        [
          ['util.inspect(client)', util.inspect(c, { showHidden: true, depth: 8 })],
          ['JSON.stringify(client)', String(JSON.stringify(c))],
          ['Object.keys', Object.getOwnPropertyNames(c).join(',')],
          ['query', util.inspect(c.createQuery(), { showHidden: true, depth: 8 })],
        ],
        'client object',
      )
    }
  })

  // The raw body stays available as `responseBody` (the server's bytes, like `.response`); every
  // message we build from it is scrubbed.
  test("a hub that echoes the request's Authorization in its error body: the message is scrubbed", async () => {
    const server = await new RecordingServer({
      respond: (req) => ({
        status: 401,
        headers: { 'content-type': 'application/json', 'iothub-errorcode': 'IotHubUnauthorizedAccess' },
        json: { Message: `ErrorCode:IotHubUnauthorizedAccess;Token ${req.headers.authorization} is not valid`, ExceptionMessage: '' },
      }),
    }).start()
    const key = Buffer.from('echo-suite-key-0123456789abcdef').toString('base64')
    try {
      const err = await JobClient.fromConnectionString(server.connectionString(key), { ca: CA_PEM, retry: FAST })
        .getJob('x')
        .then(() => null, (e) => e)
      assert.ok(err)
      const sig = /sig=([^&\s"]+)/.exec(err.responseBody ?? '')?.[1]
      assert.ok(sig, 'the echo server did not echo')
      assert.ok(err instanceof errors.UnauthorizedError)
      assert.match(err.message, /^Token SharedAccessSignature sr=.* is not valid$/, 'the rest of the message is kept')
      new SecretSet().add('key', key).add('echoed sig', sig).assertClean([err.message, err.stack, String(err)], 'echoed Authorization')
    } finally {
      await server.close()
    }
  })

  test("the emulator's stderr shows no secret", () => {
    const secrets = new SecretSet().add('key', env.key).add('bearer', GOOD_BEARER)
    for (const t of env.allSecrets.sas) secrets.addSas('SAS', t)
    secrets.assertClean([['emulator stderr', env.hub.stderr()]], 'emulator log')
  })
})

describe('secrets never appear in log output (every logging switch on)', () => {
  test('child process with AZURE_LOG_LEVEL=verbose, DEBUG=iothub-jobs*,*, RUST_LOG=trace', { timeout: 60_000 }, async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'iothub-jobs-secrets-'))
    const secretsFile = path.join(dir, 'secrets.json')
    try {
      const { code, stdout, stderr } = await new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [path.join(here, 'helpers', 'secrets-child.mjs')], {
          env: {
            ...process.env,
            AZURE_LOG_LEVEL: 'verbose',
            DEBUG: 'iothub-jobs*,azure*,*',
            RUST_LOG: 'trace',
            RUST_BACKTRACE: 'full',
            SECRETS_OUT: secretsFile,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        let out = ''
        let err = ''
        child.stdout.setEncoding('utf8').on('data', (d) => (out += d))
        child.stderr.setEncoding('utf8').on('data', (d) => (err += d))
        child.once('error', reject)
        child.once('exit', (c) => resolve({ code: c, stdout: out, stderr: err }))
      })
      assert.equal(code, 0, `child failed:\n${stderr.slice(-4000)}`)
      const found = JSON.parse(readFileSync(secretsFile, 'utf8'))
      const secrets = new SecretSet()
        .add('connection-string key', found.key)
        .add('good bearer', found.GOOD_BEARER)
        .add('bad bearer', found.BAD_BEARER)
        .add('wrong key', found.WRONG_KEY)
        .add('not-base64 key', found.NOT_BASE64_KEY)
        .add('proxy password', found.PROXY_PASSWORD)
      for (const s of found.sas) secrets.addSas('scenario SAS', s)
      for (const a of found.recorded) {
        if (/^Bearer /i.test(a)) secrets.add('recorded bearer', a.slice(7))
        else secrets.addSas('recorded Authorization', a)
      }
      const clientLogLines = stderr.split('\n').filter((l) => l.startsWith('iothub-jobs')).length
      t.diagnostic(
        `${stdout.split('\n').length + stderr.split('\n').length} lines scanned (${clientLogLines} of them the client's own log lines) for ${secrets.size} secret values`,
      )
      assert.ok(found.recorded.length > 5, 'the child sent almost nothing')
      const leaks = []
      for (const [stream, text] of [['stdout', stdout], ['stderr', stderr]]) {
        let scenario = ''
        for (const line of text.split('\n')) {
          if (line.startsWith('--- ')) scenario = line.slice(4)
          const hit = secrets.find(line)
          if (hit.length) leaks.push(`${stream} [${scenario}] ${hit.join(', ')}: ${line.slice(0, 300)}`)
        }
      }
      assert.deepEqual(leaks, [])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('transport hygiene: an explicit proxy is never silently bypassed', () => {
  for (const proxy of ['http://user:pw@bad host:3128', 'ftp://proxy.invalid:21', 'not a url']) {
    test(`options.proxy ${JSON.stringify(proxy)} → refused, no direct connection`, async () => {
      let direct = 0
      const target = net.createServer((s) => {
        direct++
        s.destroy()
      })
      await new Promise((r) => target.listen(0, '127.0.0.1', r))
      try {
        const key = Buffer.from('proxy-suite-key-0123456789abcdef').toString('base64')
        const cs = `HostName=127.0.0.1:${target.address().port};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`
        let err
        try {
          await JobClient.fromConnectionString(cs, { retry: false, proxy }).getJob('x')
        } catch (e) {
          err = e
        }
        assert.ok(err, 'resolved')
        assert.equal(direct, 0, 'the client bypassed the configured proxy and connected directly')
        assert.match(err.message, /proxy/i)
      } finally {
        await new Promise((r) => target.close(r))
      }
    })
  }
})
