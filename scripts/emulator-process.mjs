// Starts `iothub-emulator` as a child process on a free port, waits for its ready line (the
// contract in crates/emulator/README.md) and returns its coordinates plus a control-API client.
// The one launcher shared by the tests, the benchmarks, the demo and `npm run emulator`.
//
//   const hub = await startEmulator({ devices: 20 })
//   await hub.control('POST', 'time/advance', { seconds: 3600 })
//   await hub.stop()
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const READY_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 5_000

/** The emulator binary: release first (what `npm run build` makes), then debug; built when absent. */
export function emulatorBinary() {
  const exe = process.platform === 'win32' ? 'iothub-emulator.exe' : 'iothub-emulator'
  for (const profile of ['release', 'debug']) {
    const candidate = path.join(ROOT, 'target', profile, exe)
    if (existsSync(candidate)) return candidate
  }
  execFileSync('cargo', ['build', '--release', '-p', 'iothub-emulator'], { cwd: ROOT, stdio: 'inherit' })
  return path.join(ROOT, 'target', 'release', exe)
}

/**
 * @param {{devices?: number, faults?: string, args?: string[], env?: Record<string,string>,
 *   stderr?: 'pipe' | 'inherit' | 'ignore'}} [options] `stderr: 'pipe'` (default) keeps its tail for `hub.stderr()`
 * @returns {Promise<{host: string, hostName: string, port: number, connectionString: string, caPath: string,
 *   control: (method: string, path: string, body?: unknown) => Promise<any>, stop: () => Promise<number|null>,
 *   stderr: () => string}>}
 */
export async function startEmulator({ devices, faults, args = [], env = {}, stderr = 'pipe' } = {}) {
  // `--standard-ports` chooses the ports itself (and refuses --port).
  const argv = args.includes('--standard-ports') || args.includes('--port') ? [] : ['--port', '0']
  if (devices !== undefined) argv.push('--devices', String(devices))
  if (faults) argv.push('--faults', faults)
  argv.push(...args)
  const child = spawn(emulatorBinary(), argv, { stdio: ['ignore', 'pipe', stderr], env: { ...process.env, ...env } })

  // Keep the tail of stderr for error messages; draining it also keeps the pipe from filling.
  let errText = ''
  child.stderr?.setEncoding('utf8').on('data', (d) => {
    errText = (errText + d).slice(-16_384)
  })
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))

  const ready = await new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => fail(new Error(`no ready line within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS)
    function fail(err) {
      clearTimeout(timer)
      child.kill('SIGKILL')
      reject(new Error(`iothub-emulator did not start: ${err.message}\n${errText}`))
    }
    child.once('error', fail)
    exited.then((code) => fail(new Error(`exited with ${code}`)))
    child.stdout.setEncoding('utf8').on('data', function onData(d) {
      out += d
      const nl = out.indexOf('\n')
      if (nl < 0) return
      child.stdout.off('data', onData)
      child.stdout.resume() // nothing else is printed, but never let the pipe block
      clearTimeout(timer)
      try {
        resolve(JSON.parse(out.slice(0, nl)))
      } catch (err) {
        fail(err)
      }
    })
  })

  const agent = new https.Agent({ keepAlive: true, maxSockets: 8 })
  const ca = readFileSync(ready.caPath)

  /** Calls `/_emulator/<path>` and resolves with the parsed JSON; rejects on a non-2xx answer. */
  function control(method, controlPath, body) {
    const fullPath = controlPath.startsWith('/') ? controlPath : `/_emulator/${controlPath}`
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: ready.host, port: ready.port, path: fullPath, method, ca, agent,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
        },
        (res) => {
          let text = ''
          res.setEncoding('utf8').on('data', (d) => (text += d)).on('end', () => {
            if (res.statusCode < 200 || res.statusCode > 299) {
              return reject(new Error(`${method} ${fullPath}: ${res.statusCode} ${text}`))
            }
            try {
              resolve(text ? JSON.parse(text) : null)
            } catch (err) {
              reject(err)
            }
          })
        },
      )
      req.on('error', reject)
      req.end(payload)
    })
  }

  let stopping
  function stop() {
    stopping ??= (async () => {
      agent.destroy()
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
      const code = await exited
      clearTimeout(timer)
      return code
    })()
    return stopping
  }

  return {
    child,
    host: ready.host,
    port: ready.port,
    hostName: ready.hostName,
    connectionString: ready.connectionString,
    caPath: ready.caPath,
    control,
    stop,
    stderr: () => errText,
  }
}
