// Shared helpers of the benchmark harness: statistics, machine facts, child-process runners and the
// way each package under test is loaded. Nothing here measures anything by itself.
import { spawn, execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createHash, createHmac } from 'node:crypto'
import { createRequire } from 'node:module'
import { cpus, totalmem, release, platform, arch, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const BENCH = join(ROOT, 'bench')
export const WORKERS = join(BENCH, 'workers')
/** Preload that lets azure-iothub reach `HostName=127.0.0.1:PORT` (harness only; see the file). */
export const REFERENCE_SHIM = join(WORKERS, 'reference-host-port.cjs')

/**
 * Hand-written getJob without any SDK (bench/workers/peer-client.mjs), measured beside the packages at
 * the throughput workload's concurrencies 16 and 256: undici 7 (the devDependency) and Node's `fetch`.
 */
export const PEERS = ['undici', 'fetch']
/** The two packages under test, in a fixed order; `alternate(r)` flips it on odd rounds. */
export const PACKAGES = ['ours', 'reference']
export const alternate = (round) => (round % 2 === 0 ? PACKAGES : [...PACKAGES].reverse())

export const median = (values) => {
  const sorted = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Nearest-rank percentile of an already sorted numeric array-like. */
export const percentile = (sorted, p) => {
  if (sorted.length === 0) return null
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

export const ratio = (ours, reference) =>
  typeof ours === 'number' && typeof reference === 'number' && reference !== 0 ? ours / reference : null

export function machineInfo() {
  const cpuList = cpus()
  let commit = null
  let dirty = null
  try {
    commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).trim() !== ''
  } catch {}
  let loadavg = null
  try {
    loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number)
  } catch {}
  return {
    date: new Date().toISOString(),
    commit,
    dirty,
    node: process.version,
    cpu: cpuList[0]?.model?.trim() ?? 'unknown',
    cores: cpuList.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()} ${arch()}`,
    loadavgAtStart: loadavg,
  }
}

/** Whether `machine` (machineInfo()) was busy when it was read: what makes a run's figures noisy. */
export const busyAtStart = (machine) => machine.loadavgAtStart?.[0] > machine.cores / 2

// The Runtimes section of RESULTS.md is bench/runtimes.mjs's, between these markers; a full
// bench/run.mjs run keeps it.
export const RUNTIMES_START = '<!-- runtimes:start -->'
export const RUNTIMES_END = '<!-- runtimes:end -->'

let oursDir = ROOT

/**
 * Copies our package as it would be packed (package.json and its "files") into a temp folder, and
 * makes every later measurement load it from there: a rebuild in the shared working tree during a
 * long run cannot mix two builds into one set of figures. Removed when the harness exits.
 */
export function snapshotOurs() {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  const dir = mkdtempSync(join(tmpdir(), 'iothub-jobs-bench-ours-'))
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  const top = readdirSync(ROOT)
  const escape = (t) => t.replace(/[.+?^${}()|[\]\\]/g, '\\$&')
  for (const entry of ['package.json', ...(manifest.files ?? [])]) {
    if (entry.includes('/')) {
      if (existsSync(join(ROOT, entry))) cpSync(join(ROOT, entry), join(dir, entry), { recursive: true })
      continue
    }
    const pattern = new RegExp(`^${entry.split('*').map(escape).join('[^/]*')}$`)
    for (const name of top) if (pattern.test(name)) cpSync(join(ROOT, name), join(dir, name), { recursive: true })
  }
  oursDir = dir
  return dir
}

/** The addon binaries of the package measured (name, bytes, sha256 prefix). */
export function addonFingerprint(dir = oursDir) {
  return readdirSync(dir)
    .filter((f) => /^iothub-jobs\..+\.node$/.test(f))
    .map((f) => ({ file: f, bytes: statSync(join(dir, f)).size, sha256: createHash('sha256').update(readFileSync(join(dir, f))).digest('hex').slice(0, 16) }))
}

/** How a child process loads package `pkg` and trusts the hub's CA. */
export function packageLaunch(pkg, caPath) {
  if (pkg === 'ours' || pkg === 'reference') {
    const env = { ...process.env }
    delete env.NODE_OPTIONS
    if (pkg === 'reference') {
      // azure-iothub has no CA option: Node's own convention is its only way to trust the emulator.
      if (caPath) env.NODE_EXTRA_CA_CERTS = caPath
      return { nodeArgs: ['--require', REFERENCE_SHIM], env }
    }
    delete env.NODE_EXTRA_CA_CERTS
    return { nodeArgs: [], env }
  }
  if (PEERS.includes(pkg)) {
    const env = { ...process.env }
    delete env.NODE_OPTIONS
    // `fetch` takes no CA option: like the reference, it trusts the emulator through Node's convention.
    if (pkg === 'fetch' && caPath) env.NODE_EXTRA_CA_CERTS = caPath
    else delete env.NODE_EXTRA_CA_CERTS
    return { nodeArgs: [], env }
  }
  throw new Error(`unknown package ${pkg}`)
}

/** Absolute module paths, so every child loads exactly the code under test. */
export function packageModule(pkg) {
  if (pkg === 'ours') return oursDir
  if (pkg === 'reference') return createRequire(join(ROOT, 'package.json')).resolve('azure-iothub')
  if (pkg === 'undici') return createRequire(join(ROOT, 'package.json')).resolve('undici')
  if (pkg === 'fetch') return null // Node's global fetch
  throw new Error(`unknown package ${pkg}`)
}

/**
 * Runs `command args`, collects stdout, and resolves with the last stdout line parsed as JSON plus
 * the wall time from spawn to exit. Killed (SIGKILL) after `timeoutMs`; never left running.
 */
export function runJsonChild(command, args, { env = process.env, cwd = ROOT, timeoutMs = 120_000, input } = {}) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const child = spawn(command, args, { env, cwd, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    trackChild(child)
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => {
      if (stderr.length < 64 * 1024) stderr += d
    })
    if (input !== undefined) child.stdin.end(input)
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      const wallMs = Number(process.hrtime.bigint() - started) / 1e6
      const lines = stdout.trim().split('\n').filter(Boolean)
      let result = null
      try {
        result = JSON.parse(lines[lines.length - 1])
      } catch {}
      if (timedOut || code !== 0 || result === null) {
        const why = timedOut ? `timed out after ${timeoutMs} ms` : `exited with ${signal ?? code}`
        const what = args.find((a) => a.endsWith('.mjs')) ?? (args[0] === '-e' ? 'node -e' : command)
        const err = new Error(`${what.replace(ROOT + '/', '')} ${why}: ${firstErrorLine(stderr)}`)
        err.stderr = stderr
        err.result = result
        reject(err)
        return
      }
      resolve({ result, wallMs, stderr })
    })
  })
}

/** The most telling line of a crashed child's stderr (the thrown error), for one-line reports. */
export function firstErrorLine(stderr) {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean)
  return (lines.find((l) => /^([A-Z]\w*)?(Error|Exception)\b|^thread '.*' panicked|^error(\[|:)/.test(l)) ?? lines.at(-1) ?? '(no stderr)').slice(0, 400)
}

/** Runs a bench worker script for `pkg` in a fresh Node process; resolves with its JSON line. */
export async function runWorker(pkg, script, params, { caPath, timeoutMs = 180_000 } = {}) {
  const { nodeArgs, env } = packageLaunch(pkg, caPath)
  env.BENCH_PARAMS = JSON.stringify({ ...params, pkg, module: packageModule(pkg), caPath })
  const { result } = await runJsonChild(process.execPath, [...nodeArgs, join(WORKERS, script)], { env, timeoutMs })
  return result
}

export const fmt = (value, digits = 1) => {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a'
  if (typeof value !== 'number') return String(value)
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}
export const fmtRatio = (value) => (typeof value === 'number' ? `${value.toFixed(2)}×` : 'n/a')

export const log = (...args) => console.error('[bench]', ...args)

/**
 * Starts the hub for a workload: `iothub-emulator ARGS` through scripts/emulator-process.mjs.
 */
export async function startHub(args = []) {
  return spawnHub(args)
}

// Emulators stop with the harness by themselves (the launcher's stdin pipe, --exit-on-stdin-eof);
// workers and the ceiling binary are killed with it.
const liveChildren = new Set() // workers, the ceiling binary and its build
/** Kills `child` if the harness exits or is interrupted before it does. */
export function trackChild(child) {
  liveChildren.add(child)
  child.once('exit', () => liveChildren.delete(child))
  return child
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    for (const child of liveChildren) child.kill('SIGKILL')
    process.exit(130)
  })
}
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL')
})

async function spawnHub(args) {
  const { startEmulator } = await import('../../scripts/emulator-process.mjs')
  return startEmulator({ args, stderr: process.env.BENCH_HUB_LOGS ? 'inherit' : 'ignore' })
}

/**
 * A device's SAS token for an MQTT CONNECT to `hub`, signed with the hub policy's key (the
 * emulator accepts a policy-signed device token), valid for an hour: what the device benchmarks
 * log in with.
 */
export function deviceToken(hub, deviceId) {
  const policyKey = Buffer.from(/SharedAccessKey=([^;]+)/.exec(hub.connectionString)[1], 'base64')
  const se = Math.floor(Date.now() / 1000) + 3600
  const sr = encodeURIComponent(`${hub.hostName}/devices/${deviceId}`)
  const sig = createHmac('sha256', policyKey).update(`${sr}\n${se}`).digest('base64')
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&skn=iothubowner&se=${se}`
}
