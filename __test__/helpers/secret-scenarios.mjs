// The error paths secrets.test.mjs drives (in process, and again in a child process with every
// logging switch turned on). Each scenario returns the error (thrown synchronously by a factory
// or delivered by the call) plus the secrets that must not appear in it.
import crypto from 'node:crypto'
import net from 'node:net'
import { readFileSync } from 'node:fs'

import { startEmulator } from './emulator.mjs'
import { RecordingServer, CA_PEM } from './recording-server.mjs'
import { pkg, refusedPort } from './reliability.mjs'

const { JobClient } = pkg

// Distinctive, long values: a hit in any rendering cannot be a coincidence.
export const GOOD_BEARER = 'eyJhbGciOiJub25lIn0.GOOD-BEARER-TOKEN-4f6c1d0e9b8a7c6d5e4f3a2b1c0d9e8f'
export const BAD_BEARER = 'eyJhbGciOiJub25lIn0.BAD-BEARER-TOKEN-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d'
export const WRONG_KEY = Buffer.from('WRONG-KEY-wrong-key-WRONG-KEY-0123456789').toString('base64')
export const NOT_BASE64_KEY = '!!!not-base64~SECRET~KEY~value~0123456789!!!'
export const PROXY_PASSWORD = 'proxy-PASSWORD-5e4f3a2b1c0d9e8f7a6b'
export const FAST = { maxRetries: 2, initialDelayMs: 5, maxDelayMs: 20 }

/** azure-iot-common's SAS: sig = base64(HMAC-SHA256(base64decode(key), sr + '\n' + se)). */
export function makeSas({ host, key, skn = 'iothubowner', se }) {
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(`${host}\n${se}`).digest('base64')
  return `SharedAccessSignature sr=${host}&sig=${encodeURIComponent(sig)}&skn=${skn}&se=${se}`
}

const keyOf = (cs) => /SharedAccessKey=([^;]+)/.exec(cs)[1]

/** Runs `f`, returning the error it throws or rejects with (or `null` if it succeeded). */
export async function errorOf(f) {
  try {
    const r = f()
    if (r && typeof r.then === 'function') await r
    return null
  } catch (err) {
    return err
  }
}

/**
 * Starts what the scenarios need (an emulator accepting GOOD_BEARER, a silent TLS server) and
 * returns `{ hub, scenarios, stop }`. Each scenario: `{ name, secrets: {label: value}, sas: [tokens],
 * run: () => Promise<Error|null>, expect?: (err) => void }`.
 */
export async function setup() {
  const hub = await startEmulator({ devices: 2, args: ['--bearer-token', GOOD_BEARER] })
  const ca = readFileSync(hub.caPath, 'utf8')
  const host = hub.hostName
  const key = keyOf(hub.connectionString)
  const cs = hub.connectionString
  const withKey = (k) => cs.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${k}`)
  const now = Math.floor(Date.now() / 1000)
  const expiredSas = makeSas({ host, key, se: now - 60 })
  const validSas = makeSas({ host, key, se: now + 3600 })
  const forgedSas = makeSas({ host, key: WRONG_KEY, se: now + 3600 })

  const silent = await new RecordingServer({ fallback: { hang: true } }).start()
  const silentHost = silent.hostName
  const fixtureCa = CA_PEM
  const deadHost = `127.0.0.1:${await refusedPort()}`

  const cred = (getToken) => ({ getToken })
  const tokenClient = (getToken, opts = {}) => JobClient.fromTokenCredential(host, cred(getToken), { ca, retry: FAST, ...opts })
  const common = { 'connection-string key': key }

  /** @type {Array<{name:string, secrets?:Record<string,string>, sas?:string[], run:()=>Promise<any>, expect?: (err:any)=>void}>} */
  const scenarios = [
    // -- keys and SAS tokens the hub refuses
    {
      name: 'wrong key (401 from the hub)',
      secrets: { 'wrong key': WRONG_KEY },
      run: () => errorOf(() => JobClient.fromConnectionString(withKey(WRONG_KEY), { ca, retry: FAST }).getJob('x')),
      expect: (e) => e.name === 'UnauthorizedError',
    },
    {
      name: 'wrong key, schedule (401 on PUT, body echoed in responseBody)',
      secrets: { 'wrong key': WRONG_KEY },
      run: () => errorOf(() => JobClient.fromConnectionString(withKey(WRONG_KEY), { ca, retry: FAST }).scheduleDeviceMethod('x', '*', { methodName: 'm', payload: { p: 1 } })),
      expect: (e) => e.name === 'UnauthorizedError',
    },
    {
      name: 'expired SAS (fails fast, nothing sent)',
      sas: [expiredSas],
      run: () => errorOf(() => JobClient.fromSharedAccessSignature(expiredSas, { ca, retry: FAST }).getJob('x')),
      expect: (e) => e.name === 'UnauthorizedError' && /expire/i.test(e.message),
    },
    {
      name: 'forged SAS (wrong signature, 401)',
      sas: [forgedSas],
      run: () => errorOf(() => JobClient.fromSharedAccessSignature(forgedSas, { ca, retry: FAST }).cancelJob('x')),
      expect: (e) => e.name === 'UnauthorizedError',
    },
    {
      name: 'valid SAS, JobNotFound (404 error carries the response)',
      sas: [validSas],
      run: () => errorOf(() => JobClient.fromSharedAccessSignature(validSas, { ca, retry: FAST }).getJob('missing')),
      expect: (e) => e.name === 'JobNotFoundError',
    },
    // -- malformed connection strings (the key must never be echoed back)
    ...[
      ['missing HostName', `SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`],
      ['empty HostName', `HostName=;SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`],
      ['missing SharedAccessKeyName', `HostName=${host};SharedAccessKey=${key}`],
      ['key not base64', `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${NOT_BASE64_KEY}`],
      ['key with CR/LF', `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}\r\nX-Injected: 1`],
      ['policy name with CR/LF', `HostName=${host};SharedAccessKeyName=iothub\r\nowner;SharedAccessKey=${key}`],
      ['host with a space', `HostName=bad host ${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`],
      ['host with userinfo', `HostName=user:${key}@${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`],
      ['key and junk swapped', `${key};HostName=${host};SharedAccessKeyName=iothubowner`],
      ['commas instead of semicolons', `HostName=${host},SharedAccessKeyName=iothubowner,SharedAccessKey=${key}`],
      ['a semicolon missing before the key', `HostName=${host};SharedAccessKeyName=iothubowner SharedAccessKey=${key}`],
    ].map(([label, bad]) => ({
      name: `malformed connection string: ${label}`,
      secrets: { 'not-base64 key': NOT_BASE64_KEY },
      run: () => errorOf(() => JobClient.fromConnectionString(bad, { ca, retry: FAST }).getJob('x')),
    })),
    // -- malformed SAS strings
    ...[
      ['missing se and skn', `SharedAccessSignature sr=${host}&sig=${encodeURIComponent(forgedSas.match(/sig=([^&]+)/)[1])}`],
      ['not a SharedAccessSignature', validSas.replace('SharedAccessSignature', 'SharedAccessToken')],
      ['extra whitespace', validSas.replace(' ', '  ')],
      ['non-numeric se', validSas.replace(/se=\d+/, 'se=tomorrow')],
      ['sig with CR/LF', validSas.replace('&skn=', '%0D%0A&skn=').replace('sig=', 'sig=\r\nX-Injected:')],
      ['sig with NUL (refused before sending)', validSas.replace('&skn=', '%00\u0000&skn=')],
      ['sr at a refused port', makeSas({ host: deadHost, key, se: now + 3600 })],
      ['sr at a bad host', makeSas({ host: 'bad host', key, se: now + 3600 })],
    ].map(([label, bad]) => ({
      name: `malformed SAS: ${label}`,
      sas: [bad],
      run: () => errorOf(() => JobClient.fromSharedAccessSignature(bad, { ca, retry: FAST }).getJob('x')),
    })),
    // -- token credentials
    {
      name: 'token credential: a token the hub refuses (401)',
      secrets: { 'bad bearer': BAD_BEARER },
      run: () => errorOf(() => tokenClient(async () => ({ token: BAD_BEARER, expiresOnTimestamp: Date.now() + 3600_000 })).getJob('x')),
      expect: (e) => e.name === 'UnauthorizedError',
    },
    {
      name: 'token credential: accepted token, hub keeps failing (503 after retries)',
      faults: '503:1',
      run: () => errorOf(() => tokenClient(async () => ({ token: GOOD_BEARER, expiresOnTimestamp: Date.now() + 3600_000 })).getJob('x')),
      expect: (e) => e.name === 'ServiceUnavailableError',
    },
    {
      name: 'token credential: accepted token, unknown job (404)',
      run: () => errorOf(() => tokenClient(async () => ({ token: GOOD_BEARER, expiresOnTimestamp: Date.now() + 3600_000 })).getJob('missing')),
      expect: (e) => e.name === 'JobNotFoundError',
    },
    {
      name: 'token credential: getToken rejects',
      run: () => errorOf(() => tokenClient(async () => Promise.reject(new Error('identity endpoint unavailable'))).getJob('x')),
      expect: (e) => e.message === 'identity endpoint unavailable',
    },
    {
      name: 'token credential: getToken throws synchronously',
      run: () => errorOf(() => tokenClient(() => { throw new TypeError('credential misconfigured') }).getJob('x')),
    },
    {
      name: 'token credential: getToken resolves null',
      run: () => errorOf(() => tokenClient(async () => null).getJob('x')),
    },
    {
      name: 'token credential: token with CR/LF (refused before sending)',
      secrets: { 'injected bearer': `${GOOD_BEARER}-CRLF` },
      run: () => errorOf(() => tokenClient(async () => ({ token: `${GOOD_BEARER}-CRLF\r\nX-Injected: 1`, expiresOnTimestamp: Date.now() + 3600_000 })).getJob('x')),
    },
    {
      name: 'token credential: getToken never settles (call timeout)',
      run: () => errorOf(() => tokenClient(() => new Promise(() => {}), { timeoutMs: 400 }).getJob('x')),
      expect: (e) => e.name === 'TimeoutError',
    },
    // -- transport errors and timeouts
    {
      name: 'transport: refused port',
      run: () => errorOf(() => JobClient.fromConnectionString(`HostName=${deadHost};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`, { ca, retry: FAST }).getJob('x')),
    },
    {
      name: 'transport: proxy with credentials refuses the connection',
      secrets: { 'proxy password': PROXY_PASSWORD },
      run: () => errorOf(() => JobClient.fromConnectionString(cs, { ca, retry: FAST, proxy: `http://proxyuser:${PROXY_PASSWORD}@${deadHost}` }).getJob('x')),
    },
    {
      name: 'transport: untrusted certificate (no ca)',
      run: () => errorOf(() => JobClient.fromConnectionString(cs, { retry: FAST }).getJob('x')),
    },
    {
      name: 'transport: hub resets every connection',
      faults: 'reset:1',
      run: () => errorOf(() => JobClient.fromConnectionString(cs, { ca, retry: FAST }).scheduleTwinUpdate('x', '*', { etag: '*', tags: { a: 1 } })),
    },
    {
      name: 'timeout: server never answers',
      run: () => errorOf(() => JobClient.fromConnectionString(`HostName=${silentHost};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`, { ca: fixtureCa, timeoutMs: 400 }).getJob('x')),
      expect: (e) => e.name === 'TimeoutError',
    },
    {
      name: 'timeout: server never answers (SAS client)',
      sas: [makeSas({ host: silentHost, key, se: now + 3600 })],
      run: () => errorOf(() => JobClient.fromSharedAccessSignature(makeSas({ host: silentHost, key, se: now + 3600 }), { ca: fixtureCa, timeoutMs: 400 }).cancelJob('x')),
      expect: (e) => e.name === 'TimeoutError',
    },
  ]
  for (const s of scenarios) s.secrets = { ...common, ...(s.secrets ?? {}) }

  return {
    hub,
    ca,
    key,
    scenarios,
    /** Every secret value in play, for scanning logs. */
    allSecrets: { key, PROXY_PASSWORD, GOOD_BEARER, BAD_BEARER, WRONG_KEY, NOT_BASE64_KEY, sas: [expiredSas, validSas, forgedSas] },
    async stop() {
      await silent.close()
      await hub.stop()
    },
  }
}
