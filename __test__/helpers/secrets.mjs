// Secret scanning shared by the reliability suites: every error they produce is rendered in
// every way a user might print it (message, stack, util.inspect incl. `.response`,
// JSON.stringify) and searched for the connection string's key, every SAS signature and token
// the emulator saw, and bearer tokens.
//
//   const secrets = new SecretSet().addConnectionString(cs)
//   secrets.addFromRequestLog(await hub.control('GET', 'requests'))
//   secrets.assertClean(errorTexts(err), 'getJob against a bad key')
import assert from 'node:assert/strict'
import util from 'node:util'

/** Every textual rendering of an error (and of whatever it carries) a caller could log. */
export function errorTexts(err) {
  const out = []
  const push = (label, f) => {
    try {
      const v = f()
      if (v !== undefined && v !== null) out.push([label, String(v)])
    } catch (e) {
      out.push([`${label} (threw)`, String(e && e.message)])
    }
  }
  push('String(err)', () => String(err))
  push('message', () => err?.message)
  push('stack', () => err?.stack)
  push('util.inspect', () => util.inspect(err, { depth: 8, showHidden: true, getters: true }))
  push('JSON.stringify', () => JSON.stringify(err))
  push('JSON.stringify(response)', () => JSON.stringify(err?.response))
  push('util.inspect(response)', () => util.inspect(err?.response, { depth: 8, showHidden: true }))
  push('responseBody', () => err?.responseBody)
  push('cause', () => err?.cause && util.inspect(err.cause, { depth: 8 }))
  return out
}

/** The `sig=` value of a SAS token (as written, i.e. url-encoded), or undefined. */
export function sigOf(token) {
  const m = /(?:^|[\s&])sig=([^&\s]+)/.exec(token)
  return m ? m[1] : undefined
}

function decodeOr(s) {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

export class SecretSet {
  constructor() {
    /** @type {Map<string, string>} value → label */
    this.values = new Map()
  }

  /** Adds `value` (and its url-encoded / url-decoded forms); ignores strings too short to be secret. */
  add(label, value) {
    if (typeof value !== 'string') return this
    for (const v of new Set([value, encodeURIComponent(value), decodeOr(value)])) {
      if (v.length >= 12 && !this.values.has(v)) this.values.set(v, label)
    }
    return this
  }

  addConnectionString(cs) {
    const key = /SharedAccessKey=([^;]+)/.exec(cs)?.[1]
    if (key) this.add('connection-string SharedAccessKey', key)
    return this
  }

  addSas(label, token) {
    this.add(`${label} (whole SAS token)`, token)
    const sig = sigOf(token)
    if (sig) this.add(`${label} sig`, sig)
    return this
  }

  /** Every `Authorization` header the emulator recorded (SAS signatures, bearer tokens). */
  addFromRequestLog(log) {
    for (const r of log?.requests ?? []) {
      const auth = r.headers?.authorization ?? r.headers?.Authorization
      if (typeof auth !== 'string') continue
      if (/^Bearer /i.test(auth)) this.add('recorded bearer token', auth.slice(7))
      else this.addSas('recorded Authorization', auth)
    }
    return this
  }

  /** Labels of the secrets found in `text`. */
  find(text) {
    const found = []
    for (const [value, label] of this.values) if (text.includes(value)) found.push(label)
    return found
  }

  /** Fails if any secret appears in any of `texts` (`[label, text]` pairs or plain strings). */
  assertClean(texts, context) {
    for (const entry of texts) {
      const [where, text] = Array.isArray(entry) ? entry : ['text', entry]
      const found = this.find(text)
      assert.deepEqual(found, [], `${context}: ${where} leaks ${found.join(', ')}:\n${text.slice(0, 2000)}`)
    }
  }

  get size() {
    return this.values.size
  }
}
