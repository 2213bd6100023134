// Makes the venv of Microsoft's Python device SDK for the tests: target/python-sdk, with
// __test__/python/requirements.txt (pinned) installed from PyPI. Idempotent: a stamp holding the
// requirements' text skips the install when nothing changed.
//
//   node scripts/python-sdk.mjs      → prints the venv's python path
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const VENV = path.join(ROOT, 'target', 'python-sdk')
const REQUIREMENTS = path.join(ROOT, '__test__', 'python', 'requirements.txt')

/** The venv's python, made (or brought up to date) first. Throws when python3 cannot do it. */
export function pythonSdk() {
  return pinnedVenv(VENV, REQUIREMENTS)
}

/** The python of the venv `venv` with the pinned `requirements` installed (made, or brought up
 * to date, first; a stamp holding the requirements' text skips the install when nothing changed). */
export function pinnedVenv(venv, requirements) {
  const bin = process.platform === 'win32' ? path.join(venv, 'Scripts', 'python.exe') : path.join(venv, 'bin', 'python')
  const stamp = path.join(venv, 'requirements.installed')
  const wanted = readFileSync(requirements, 'utf8')
  if (existsSync(bin) && existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted) return bin
  const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] })
  if (!existsSync(bin)) {
    try {
      run('python3', ['-m', 'venv', venv])
    } catch (err) {
      // Debian ships venv's pip bootstrap separately (python3-venv); as root, install it.
      if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) throw err
      const apt = { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }
      execFileSync('apt-get', ['update', '-q'], apt)
      execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', '--no-remove', 'python3-venv'], apt)
      run('python3', ['-m', 'venv', '--clear', venv])
    }
  }
  run(bin, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements])
  writeFileSync(stamp, wanted)
  return bin
}

/** True when python3 is on PATH. */
export function hasPython3() {
  try {
    execFileSync('python3', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(pythonSdk())
