// Installs the runtimes of scripts/runtimes/runtimes.mjs under target/runtimes/ from the npm
// registry (`npm pack` of the exact version, unpacked; no install script runs). Idempotent: a
// runtime whose binary already reports its pinned version is left alone, and then no network is
// needed. Linux x64 only (the CI machine); elsewhere it says so and installs nothing.
//   node scripts/runtimes/setup.mjs [name...]
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { RUNTIMES, runtimeBinary, runtimeDir } from './runtimes.mjs'

/** The version the runtime's binary reports, or null when it does not run. */
export function installedVersion(runtime) {
  const result = spawnSync(runtimeBinary(runtime), ['--version'], { encoding: 'utf8' })
  if (result.status !== 0) return null
  return result.stdout.trim().match(/\d+\.\d+\.\d+/)?.[0] ?? null
}

export function setup(names = []) {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.log(`runtimes: the pinned runtimes are Linux x64 builds; nothing installed on ${process.platform}-${process.arch}`)
    return []
  }
  const wanted = names.length ? RUNTIMES.filter((r) => names.includes(r.name)) : RUNTIMES
  const unknown = names.filter((n) => !RUNTIMES.some((r) => r.name === n))
  if (unknown.length) throw new Error(`runtimes: unknown runtime ${unknown.join(', ')} (known: ${RUNTIMES.map((r) => r.name).join(', ')})`)
  for (const runtime of wanted) {
    if (installedVersion(runtime) === runtime.version) continue
    const dir = runtimeDir(runtime)
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    execFileSync('npm', ['pack', '--silent', `${runtime.package}@${runtime.version}`], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] })
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))
    execFileSync('tar', ['-xzf', tarball, '--strip-components=1'], { cwd: dir })
    rmSync(path.join(dir, tarball))
    const got = installedVersion(runtime)
    if (got !== runtime.version) throw new Error(`runtimes: ${runtime.package}@${runtime.version} unpacked, but ${runtimeBinary(runtime)} reports ${got ?? 'nothing (it does not run)'}`)
  }
  console.log(`runtimes ready: ${wanted.map((r) => `${r.label} ${r.version}`).join(', ')}`)
  return wanted
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    setup(process.argv.slice(2))
  } catch (err) {
    console.error(err.message.split('\n')[0])
    process.exit(1)
  }
}
