// The edit–test loop (`npm run test:quick`): every `node --test` suite except the ones that
// measure rather than check behaviour on a debug build — the soak (100,000 calls), the
// cold-start layout (only meaningful for the release build) — and no benchmark. `npm test`
// (what CI runs) stays the full gate: release build, lint, all suites, typings, quick bench.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const TESTS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '__test__')
const SKIPPED = new Set(['soak.test.mjs', 'cold-start.test.mjs'])

const files = readdirSync(TESTS)
  .filter((f) => f.endsWith('.test.mjs') && !SKIPPED.has(f))
  .map((f) => path.join(TESTS, f))
// The emulator it just built (build:debug), not a target/release one left by an older `npm run build`.
const exe = process.platform === 'win32' ? 'iothub-emulator.exe' : 'iothub-emulator'
const env = { ...process.env, IOTHUB_EMULATOR: path.join(TESTS, '..', 'target', 'debug', exe) }
const { status, signal } = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env })
process.exit(status ?? (signal ? 1 : 0))
