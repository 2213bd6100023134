// The hand-written getJob a user writes instead of any SDK, as a peer of the benchmark: parse the
// connection string, mint one SAS token (HMAC-SHA256 of `host\nexpiry`, as the SDKs do, reused
// for the process's life), then `GET /jobs/v2/{id}?api-version=2021-04-12` with `Authorization`,
// check the status and parse the JSON body. Two flavours, on the same code:
//
//   'undici': undici 7 (the devDependency) `request()` through one `Agent` trusting the hub's CA
//   'fetch':  Node's global `fetch` (its bundled undici), trusting the CA via NODE_EXTRA_CA_CERTS
//
// No retries, no error classes, no response object: the least a caller can do, so the figure is a
// floor for any JavaScript client, not a straw man.
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const API_VERSION = '2021-04-12'

function parseConnectionString(cs) {
  const fields = Object.fromEntries(
    cs.split(';').filter(Boolean).map((part) => {
      const eq = part.indexOf('=')
      return [part.slice(0, eq), part.slice(eq + 1)]
    }),
  )
  for (const k of ['HostName', 'SharedAccessKeyName', 'SharedAccessKey'])
    if (!fields[k]) throw new Error(`connection string without ${k}`)
  return fields
}

function sasToken({ HostName, SharedAccessKeyName, SharedAccessKey }, lifetimeS = 3600) {
  const se = Math.ceil(Date.now() / 1000) + lifetimeS
  const sig = createHmac('sha256', Buffer.from(SharedAccessKey, 'base64')).update(`${HostName}\n${se}`).digest('base64')
  return `SharedAccessSignature sr=${HostName}&sig=${encodeURIComponent(sig)}&skn=${encodeURIComponent(SharedAccessKeyName)}&se=${se}`
}

/** `{ getJob(id) }` for peer `pkg` ('undici' or 'fetch'); `p` is the worker's BENCH_PARAMS. */
export function peerClient(pkg, p) {
  const cs = parseConnectionString(p.connectionString)
  const headers = { authorization: sasToken(cs) }
  const base = `https://${cs.HostName}/jobs/v2/`
  const query = `?api-version=${API_VERSION}`
  const failure = (status, text) => Object.assign(new Error(`getJob: HTTP ${status}: ${text.slice(0, 200)}`), { statusCode: status })
  if (pkg === 'undici') {
    const { Agent, request } = createRequire(import.meta.url)(p.module)
    const dispatcher = new Agent({ connect: { ca: readFileSync(p.caPath, 'utf8') } })
    return {
      async getJob(id) {
        const res = await request(base + encodeURIComponent(id) + query, { headers, dispatcher })
        if (res.statusCode !== 200) throw failure(res.statusCode, await res.body.text())
        return res.body.json()
      },
    }
  }
  if (pkg === 'fetch') {
    return {
      async getJob(id) {
        const res = await fetch(base + encodeURIComponent(id) + query, { headers })
        if (res.status !== 200) throw failure(res.status, await res.text())
        return res.json()
      },
    }
  }
  throw new Error(`unknown peer ${pkg}`)
}
