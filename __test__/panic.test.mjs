// A Rust panic becomes a JavaScript Error, never an abort. The exports that panic on purpose
// are test-only (the `test-exports` feature): this file builds an addon with them (a debug
// `cargo build`, incremental after the first run) and loads it directly; the production addon
// from `napi build` does not have them (checked in client.test.mjs).
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const LIBRARY = { linux: 'libiothub_jobs.so', darwin: 'libiothub_jobs.dylib', win32: 'iothub_jobs.dll' }[process.platform]

let native

before(() => {
  execFileSync('cargo', ['build', '--quiet', '-p', 'iothub-jobs', '--features', 'test-exports'], { cwd: root, stdio: 'inherit' })
  // Loaded from a copy: `process.dlopen` wants a `.node`, and a rebuild must not replace a
  // library the process has mapped.
  const dir = mkdtempSync(path.join(tmpdir(), 'iothub-jobs-panic-'))
  const addon = path.join(dir, 'test-exports.node')
  copyFileSync(path.join(root, 'target', 'debug', LIBRARY), addon)
  const module = { exports: {} }
  process.dlopen(module, addon)
  native = module.exports
  rmSync(dir, { recursive: true, force: true })
})

function viaCallback(fn) {
  return new Promise((resolve) => fn((...args) => resolve(args)))
}

test('a Rust panic becomes a JavaScript Error, never an abort (sync, promise, callback)', async () => {
  assert.equal(typeof native.__panicSync, 'function', 'the test build has the test-only exports')
  assert.throws(() => native.__panicSync(), (e) => e instanceof Error && /deliberate panic/.test(e.message))
  await assert.rejects(native.__panicAsync(), (e) => e instanceof Error && /internal error/.test(e.message))
  const args = await viaCallback((cb) => native.__panicAsync(cb))
  assert.equal(args.length, 1)
  assert.ok(args[0] instanceof Error)
})
