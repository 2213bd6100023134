// The repository's launcher of `iothub-emulator` for the tests, the benchmarks, the demo and
// `npm run emulator`: the published package's startEmulator() (packages/iothub-emulator/lib/index.js) pointed at
// this checkout's binary, built when absent. Everything else — free port, ready line, control API,
// `stderr()`, stop() — is the package's, so the tests exercise the API users get.
//
//   const hub = await startEmulator({ devices: 20 })
//   await hub.control('POST', 'time/advance', { seconds: 3600 })
//   await hub.stop()
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const packaged = createRequire(import.meta.url)('../packages/iothub-emulator/lib/index.js')

/**
 * The emulator binary: $IOTHUB_EMULATOR when set (`npm run test:quick` points it at the debug
 * build it just made), else release first (what `npm run build` makes), then debug; built when absent.
 */
export function emulatorBinary() {
  if (process.env.IOTHUB_EMULATOR) return process.env.IOTHUB_EMULATOR
  const exe = process.platform === 'win32' ? 'iothub-emulator.exe' : 'iothub-emulator'
  for (const profile of ['release', 'debug']) {
    const candidate = path.join(ROOT, 'target', profile, exe)
    if (existsSync(candidate)) return candidate
  }
  execFileSync('cargo', ['build', '--release', '-p', 'iothub-emulator'], { cwd: ROOT, stdio: 'inherit' })
  return path.join(ROOT, 'target', 'release', exe)
}

/**
 * The package's startEmulator (options and result in packages/iothub-emulator/index.d.ts) on the checkout's binary.
 * @param {import('../packages/iothub-emulator/index').EmulatorOptions} [options]
 * @returns {Promise<import('../packages/iothub-emulator/index').Emulator>}
 */
export function startEmulator(options = {}) {
  return packaged.startEmulator({ binary: emulatorBinary(), ...options })
}
