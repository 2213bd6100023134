// The runtimes step of `npm test` (after test:node): installs the pinned runtimes
// (setup.mjs, from the npm registry; idempotent) and runs, on each:
//   - Node 22, 24, 26: the suites that pin the client's behaviour (parity with azure-iothub, the
//     client and modern suites) under `node --test`, then smoke.mjs, whose fleet call stands for
//     fleet.test.mjs (85 s a line, mostly the emulated S1 slot waits, which no runtime changes);
//   - Bun, Deno: smoke.mjs only. `node:test` suites need Node's own runner (`bun test` does not
//     run them to the end, and `deno test` lacks what several of them spawn: `process.execPath`
//     is not a Node binary there), so what can run there is the smoke: client, callbacks,
//     ESM/CJS, CLI, emulator package.
// Prints each runtime's version, its pass counts and the seconds it took; fails on any failure.
// Outside Linux x64 (the pinned builds are Linux x64 ones) it says so and does nothing.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { ROOT, RUNTIMES, runtimeBinary, scriptCommand } from './runtimes.mjs'
import { installedVersion, setup } from './setup.mjs'

export const NODE_SUITES = ['parity', 'client', 'modern'].map((s) => path.join('__test__', `${s}.test.mjs`))
const SMOKE = path.join(ROOT, 'scripts', 'runtimes', 'smoke.mjs')

/** Runs a command, echoing its output, and returns it with the seconds it took. */
function timed(command, args) {
  const started = Date.now()
  const result = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1' } })
  process.stdout.write(result.stdout)
  process.stderr.write(result.stderr)
  return { ...result, seconds: (Date.now() - started) / 1000 }
}

const count = (tap, field) => Number(tap.match(new RegExp(`^# ${field} (\\d+)$`, 'm'))?.[1] ?? NaN)

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.log(`runtimes: skipped, the pinned runtimes are Linux x64 builds (this is ${process.platform}-${process.arch})`)
  process.exit(0)
}
setup()
const rows = []
for (const runtime of RUNTIMES) {
  const row = { runtime: `${runtime.label} ${installedVersion(runtime)}`, suites: '', smoke: '', seconds: 0, failed: false }
  console.log(`\nruntimes: ${row.runtime}`)
  if (runtime.kind === 'node') {
    const suites = timed(runtimeBinary(runtime), ['--test', '--test-concurrency=1', '--test-reporter=tap', ...NODE_SUITES])
    const pass = count(suites.stdout, 'pass')
    const fail = count(suites.stdout, 'fail')
    row.suites = `${pass}/${count(suites.stdout, 'tests')} passed`
    row.seconds += suites.seconds
    if (suites.status !== 0 || fail !== 0 || !(pass > 0)) row.failed = true
  }
  const [command, args] = scriptCommand(runtime, SMOKE)
  const smoke = timed(command, args)
  row.smoke = smoke.stdout.match(/^smoke: (\d+) passed/m)?.[1] ?? 'failed'
  row.seconds += smoke.seconds
  if (smoke.status !== 0) row.failed = true
  rows.push(row)
}
console.log('\nruntimes: results (node --test: parity, client, modern; smoke: scripts/runtimes/smoke.mjs)')
for (const r of rows) {
  console.log(`  ${r.runtime.padEnd(20)} node --test ${(r.suites || 'n/a (not Node)').padEnd(18)} smoke ${String(r.smoke).padEnd(7)} ${r.seconds.toFixed(0).padStart(4)} s${r.failed ? '  FAILED' : ''}`)
}
const failed = rows.filter((r) => r.failed)
if (failed.length) {
  console.error(`runtimes: failed on ${failed.map((r) => r.runtime).join(', ')}`)
  process.exit(1)
}
