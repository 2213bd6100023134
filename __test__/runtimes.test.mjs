// The packages as users of each runtime get them: `npm pack` of iothub-jobs and iothub-emulator
// and of their linux-x64 platform packages, installed offline from the tarballs into a fresh
// folder, then scripts/runtimes/smoke.mjs --from that folder in Node 22, 24, 26, Bun and Deno
// (client, callbacks, ESM/CJS, CLI, emulator package; nothing of the repository's tree is on the
// module path). The runtimes come from `npm run setup:runtimes` (CI installs them first).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { NPM_CLI, cleanEnv, run } from './helpers/packages.mjs'
import { inCI, prerequisite } from './helpers/prerequisite.mjs'
import { RUNTIMES, runtimeBinary, scriptCommand } from '../scripts/runtimes/runtimes.mjs'
import { installedVersion, setup } from '../scripts/runtimes/setup.mjs'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const ADDON = 'iothub-jobs.linux-x64-gnu.node'
const EMULATOR_BUILT = ['release', 'debug'].map((p) => path.join(ROOT, 'target', p, 'iothub-emulator')).find(existsSync)
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64'
// CI installs the runtimes (the registry is there; idempotent): test:node runs before test:runtimes.
if (onLinuxX64 && inCI()) setup()
const skip = prerequisite(
  !onLinuxX64 ? 'the pinned runtimes are Linux x64 builds'
    : !existsSync(path.join(ROOT, ADDON)) ? `no ${ADDON} (npm run build)`
      : !EMULATOR_BUILT ? 'no target/{release,debug}/iothub-emulator (npm run build)'
        : RUNTIMES.some((r) => installedVersion(r) !== r.version) ? 'the runtimes are not installed (npm run setup:runtimes)'
          : false,
)

let work
let consumer
before(async () => {
  if (skip) return
  work = await mkdtemp(path.join(os.tmpdir(), 'iothub-runtimes-'))
  const tarballs = path.join(work, 'tarballs')
  await mkdir(tarballs)
  const pack = async (cwd) => path.join(tarballs, JSON.parse(await run(process.execPath, [NPM_CLI, 'pack', '--json', '--pack-destination', tarballs], { cwd }))[0].filename)
  // A platform package with its binary: the one build:platforms put there, else this machine's build.
  const platformTarball = async (dir, file, built) => {
    const stage = path.join(work, path.basename(path.dirname(dir)) + '-' + path.basename(dir))
    await cp(dir, stage, { recursive: true })
    if (!existsSync(path.join(stage, file))) {
      await mkdir(path.dirname(path.join(stage, file)), { recursive: true })
      await cp(built, path.join(stage, file))
    }
    return pack(stage)
  }
  // A main package with no binary of its own and only the linux-x64 platform package as optional
  // dependency (a local tarball instead of a registry version), whatever pack-all puts in it.
  const mainTarball = async (dir, optional) => {
    const stage = path.join(work, `main-${path.basename(dir)}`)
    await mkdir(stage)
    await run('tar', ['-xzf', await pack(dir), '-C', stage, '--strip-components=1'])
    for (const file of await readdir(stage)) if (file.endsWith('.node')) await rm(path.join(stage, file))
    const manifest = JSON.parse(await readFile(path.join(stage, 'package.json'), 'utf8'))
    manifest.optionalDependencies = optional
    await writeFile(path.join(stage, 'package.json'), JSON.stringify(manifest, null, 2))
    return pack(stage)
  }
  const jobs = await mainTarball(ROOT, { 'iothub-jobs-linux-x64-gnu': `file:${await platformTarball(path.join(ROOT, 'npm', 'linux-x64-gnu'), ADDON, path.join(ROOT, ADDON))}` })
  const emulatorDir = path.join(ROOT, 'packages', 'iothub-emulator')
  const emulator = await mainTarball(emulatorDir, { 'iothub-emulator-linux-x64': `file:${await platformTarball(path.join(emulatorDir, 'npm', 'linux-x64'), 'bin/iothub-emulator', EMULATOR_BUILT)}` })
  consumer = path.join(work, 'consumer')
  await mkdir(consumer)
  await writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
  await run(process.execPath, [NPM_CLI, 'install', '--offline', '--no-audit', '--no-fund', jobs, emulator], { cwd: consumer, timeout: 300_000 })
})

after(async () => {
  if (work) await rm(work, { recursive: true, force: true })
})

test('installed: the packages and exactly their linux-x64 platform packages, the addon not in the main package', { skip }, async () => {
  const installed = (await readdir(path.join(consumer, 'node_modules'))).filter((d) => d.startsWith('iothub-')).sort()
  assert.deepEqual(installed, ['iothub-emulator', 'iothub-emulator-linux-x64', 'iothub-jobs', 'iothub-jobs-linux-x64-gnu'])
  assert.ok(existsSync(path.join(consumer, 'node_modules', 'iothub-jobs-linux-x64-gnu', ADDON)))
})

for (const runtime of RUNTIMES) {
  test(`${runtime.label} ${runtime.version}: the smoke on the installed packages`, { skip, timeout: 180_000 }, async () => {
    const [command, args] = scriptCommand(runtime, path.join(ROOT, 'scripts', 'runtimes', 'smoke.mjs'), ['--from', consumer])
    // cleanEnv: no IOTHUB_EMULATOR, so the emulator is the installed platform package's binary.
    const out = await run(command, args, { cwd: consumer, env: cleanEnv({ NO_COLOR: '1' }), timeout: 170_000 })
    assert.match(out, new RegExp(`^smoke: 11 passed on \\S+ ${runtime.version.replaceAll('.', '\\.')}$`, 'm'))
    assert.ok(existsSync(runtimeBinary(runtime)))
  })
}

// A runtime the addon cannot load in (no Node-API, or older than 8) is told so at load, in one line
// naming it: here Node pretends to be such a runtime (process.versions replaced before the load).
for (const [what, versions, message] of [
  ['an old Bun (Node-API 7)', { bun: '1.0.0', napi: '7' }, 'iothub-jobs: Bun 1.0.0 provides Node-API 7, the addon needs 8 or later; see "Supported runtimes" in the README'],
  ['a runtime without Node-API', { deno: '1.30.0', napi: undefined }, 'iothub-jobs: Deno 1.30.0 has no Node-API (process.versions.napi is missing), so its native addon cannot load there; see "Supported runtimes" in the README'],
]) {
  test(`${what}: require and import fail at load with one line naming the runtime`, async () => {
    const pretend = `Object.defineProperty(process, 'versions', { value: { ...process.versions, ...${JSON.stringify(versions)}, ${versions.napi === undefined ? 'napi: undefined' : ''} } });`
    for (const load of [`require(${JSON.stringify(ROOT)})`, `await import(${JSON.stringify(path.join(ROOT, 'lib', 'main.mjs'))})`]) {
      const code = `${pretend} try { ${load}; console.log('loaded') } catch (err) { console.log(err.message) }`
      const out = await run(process.execPath, ['--input-type=module', '-e', code.replace('require(', 'createRequire(import.meta.url)(').replace(/^/, "import { createRequire } from 'node:module'; ")])
      assert.equal(out.trim(), message)
    }
  })
}
