// The Python environments of the tests and of the wheels, each from a pinned requirements file
// installed from PyPI. Idempotent: a stamp holding the requirements' text skips the install when
// nothing changed.
//   target/python-sdk        __test__/python/requirements.txt: Microsoft's Python device and service SDKs
//   target/python-build      packages/python/requirements-build.txt: `wheel` (packs and reads wheels)
//   target/python-wheelhouse packages/python/requirements-test.txt built as wheels (pytest,
//                            azure-iot-device, azure-iot-hub …): what a test venv installs with no network
//   target/python-samples    __test__/python/samples.txt: azure-eventhub's source archive (version and
//                            sha256 pinned), with only the samples the tests run extracted from it
//
//   node scripts/python-sdk.mjs      → prints the SDKs' venv's python path
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const TARGET = path.join(ROOT, 'target')
export const PYTHON_REQUIREMENTS = {
  sdk: path.join(ROOT, '__test__', 'python', 'requirements.txt'),
  build: path.join(ROOT, 'packages', 'python', 'requirements-build.txt'),
  test: path.join(ROOT, 'packages', 'python', 'requirements-test.txt'),
  samples: path.join(ROOT, '__test__', 'python', 'samples.txt'),
}
const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] })

/** A venv's python. */
export const venvPython = (venv) => (process.platform === 'win32' ? path.join(venv, 'Scripts', 'python.exe') : path.join(venv, 'bin', 'python'))

/** Makes a venv at `venv` (python3's, with Debian's python3-venv installed first when root needs it). */
export function makeVenv(venv) {
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
  return venvPython(venv)
}

/** Runs `make()` unless `stamp` holds `requirements`' current text; then writes the stamp. */
function once(stamp, requirements, make) {
  const wanted = readFileSync(requirements, 'utf8')
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted) return
  make()
  writeFileSync(stamp, wanted)
}

/** The python of the venv `venv` with the pinned `requirements` installed (made, or brought up
 * to date, first; a stamp holding the requirements' text skips the install when nothing changed). */
export function pinnedVenv(venv, requirements) {
  const bin = venvPython(venv)
  once(path.join(venv, 'requirements.installed'), requirements, () => {
    if (!existsSync(bin)) makeVenv(venv)
    run(bin, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements])
  })
  return bin
}

/** The Python SDKs' venv's python (azure-iot-device, azure-iot-hub), made (or brought up to date) first. Throws when python3 cannot do it. */
export const pythonSdk = () => pinnedVenv(path.join(TARGET, 'python-sdk'), PYTHON_REQUIREMENTS.sdk)

/** The python of the venv with `wheel`, which packs the iothub-emulator wheels (scripts/wheels.mjs). */
export const pythonBuild = () => pinnedVenv(path.join(TARGET, 'python-build'), PYTHON_REQUIREMENTS.build)

/** target/python-wheelhouse: the test requirements as wheels (built by pip where PyPI has only a
 * source archive), for `pip install --no-index --find-links` in a fresh venv. Returns its path. */
export function pythonWheelhouse() {
  const dir = path.join(TARGET, 'python-wheelhouse')
  const python = pythonBuild()
  once(path.join(dir, 'requirements.built'), PYTHON_REQUIREMENTS.test, () => {
    run(python, ['-m', 'pip', 'wheel', '--quiet', '--disable-pip-version-check', '--wheel-dir', dir, '-r', PYTHON_REQUIREMENTS.test])
  })
  return dir
}

/**
 * The path of `sample` (its path in the archive, e.g. `samples/async_samples/x.py`) extracted from
 * the source archive pinned in __test__/python/samples.txt: Microsoft's sample as published, which
 * the tests run unmodified (never a copy in this repo). pip downloads the archive once into
 * target/python-samples, checking its sha256; only the samples asked for are extracted.
 */
export function pythonSample(sample) {
  const dir = path.join(TARGET, 'python-samples')
  const python = pythonSdk()
  once(path.join(dir, 'samples.downloaded'), PYTHON_REQUIREMENTS.samples, () => {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    run(python, ['-m', 'pip', 'download', '--quiet', '--disable-pip-version-check', '--no-deps', '--no-binary', ':all:',
      '--require-hashes', '-r', PYTHON_REQUIREMENTS.samples, '--dest', dir])
  })
  const file = path.join(dir, ...sample.split('/'))
  if (!existsSync(file)) {
    const archive = readdirSync(dir).find((name) => name.endsWith('.tar.gz'))
    // The archive's members sit under its one top folder (`azure_eventhub-5.15.1/`).
    run(python, ['-c', [
      'import os, sys, tarfile',
      'archive, sample, file = sys.argv[1:]',
      'with tarfile.open(archive) as tar:',
      '    data = tar.extractfile(tar.getnames()[0].split("/")[0] + "/" + sample).read()',
      'os.makedirs(os.path.dirname(file), exist_ok=True)',
      'open(file + ".part", "wb").write(data)',
      'os.replace(file + ".part", file)',
    ].join('\n'), path.join(dir, archive), sample, file])
  }
  return file
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
