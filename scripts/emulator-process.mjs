// Starts `iothub-emulator` as a child process and waits for its ready line (the contract in
// crates/emulator/README.md). Shared by the demo, the benchmarks, `npm run emulator` and tests.
import { spawn, execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const exe = process.platform === 'win32' ? 'iothub-emulator.exe' : 'iothub-emulator'

/** Path of the emulator binary, building it (release) when it is missing. */
export function emulatorBinary() {
  for (const profile of ['release', 'debug']) {
    const candidate = join(root, 'target', profile, exe)
    if (existsSync(candidate)) return candidate
  }
  execFileSync('cargo', ['build', '--release', '-p', 'iothub-emulator'], { cwd: root, stdio: 'inherit' })
  return join(root, 'target', 'release', exe)
}

/**
 * @param {string[]} args emulator command-line arguments (port 0 is the default)
 * @returns {Promise<{host: string, port: number, hostName: string, connectionString: string,
 *   caPath: string, child: import('node:child_process').ChildProcess, stop: () => Promise<number|null>}>}
 */
export function startEmulator(args = [], { stderr = 'inherit' } = {}) {
  const child = spawn(emulatorBinary(), args, { stdio: ['ignore', 'pipe', stderr] })
  return new Promise((resolve, reject) => {
    let buffered = ''
    const onData = (chunk) => {
      buffered += chunk
      const newline = buffered.indexOf('\n')
      if (newline < 0) return
      child.stdout.off('data', onData)
      try {
        const ready = JSON.parse(buffered.slice(0, newline))
        resolve({ ...ready, child, stop: () => stopChild(child) })
      } catch (err) {
        child.kill()
        reject(new Error(`iothub-emulator printed an unexpected ready line: ${err.message}`))
      }
    }
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', onData)
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`iothub-emulator exited with code ${code} before it was ready`)))
  })
}

function stopChild(child) {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code))
    child.kill('SIGTERM')
  })
}
