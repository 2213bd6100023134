// What a cold start costs in memory: `require` plus `fromConnectionString` in a fresh
// `node`. The figures of record come from `npm run bench`; these checks keep the three causes
// of the saving from regressing silently:
// - the addon's code is laid out for the cold start (src/cold-start.order, passed to the linker
//   by build.rs): only a few hundred KiB of it become resident, not the ~1.8 MiB of an unordered
//   build. A stale order (new dependency versions, toolchain or profile) is reported here as a
//   warning, not a failure: regenerate it with `npm run order-symbols`;
// - the client builds its TLS and connection state on the first call, not when created (a unit
//   test in crates/core/src/http/pipeline.rs);
// - the addon imports the Node-API functions it calls instead of looking up every one at load.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const ADDON = 'iothub-jobs.linux-x64-gnu.node'
const CONNECTION_STRING =
  'HostName=cold-start.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='
const linuxX64 = process.platform === 'linux' && process.arch === 'x64' && !!process.report.getReport().header.glibcVersionRuntime

/** Runs `script` in a fresh node and returns the KiB resident per mapping of the addon. */
function addonResidentKiB(script) {
  const child = `
    ${script}
    const mappings = {}
    let current = null
    for (const line of require('fs').readFileSync('/proc/self/smaps', 'utf8').split('\\n')) {
      const head = /^[0-9a-f]+-[0-9a-f]+ (\\S+) \\S+ \\S+ \\S+\\s+(.*)$/.exec(line)
      if (head) current = head[2].endsWith(${JSON.stringify(ADDON)}) ? head[1] : null
      else if (current && line.startsWith('Rss:')) mappings[current] = (mappings[current] ?? 0) + parseInt(line.slice(4))
    }
    process.stdout.write(JSON.stringify(mappings))
  `
  return JSON.parse(execFileSync(process.execPath, ['-e', child], { cwd: root, encoding: 'utf8' }))
}

test('cold start: little of the addon\'s code becomes resident', { skip: !linuxX64 && 'the code order is applied on x86_64 Linux (glibc) only' }, (t) => {
  const resident = addonResidentKiB(`require(${JSON.stringify(root)}).JobClient.fromConnectionString(${JSON.stringify(CONNECTION_STRING)})`)
  assert.ok(resident['r-xp'] > 0, `the addon is mapped: ${JSON.stringify(resident)}`)
  if (resident['r-xp'] <= 512) return
  // A stale order costs memory, not correctness: it must not fail an unrelated change's CI
  // (a toolchain or lockfile bump renames the symbols), so it is reported, loudly, instead.
  // `IOTHUB_JOBS_STRICT_ORDER=1` makes it a failure (what `npm run order-symbols` checks).
  const message =
    `${resident['r-xp']} KiB of the addon's code resident after a cold start (≤ 512 expected): ` +
    'src/cold-start.order is stale (or the linker is not lld, see build.rs); run `npm run order-symbols` and commit the result'
  if (process.env.IOTHUB_JOBS_STRICT_ORDER === '1') assert.fail(message)
  t.diagnostic(`STALE COLD-START ORDER: ${message}`)
  process.stderr.write(`\n[cold-start] WARNING: ${message}\n`)
})

/** The named section of a little-endian ELF64 file. */
function elfSection(elf, wanted) {
  const shoff = Number(elf.readBigUInt64LE(0x28))
  const shentsize = elf.readUInt16LE(0x3a)
  const shnum = elf.readUInt16LE(0x3c)
  const header = (i) => shoff + i * shentsize
  const names = header(elf.readUInt16LE(0x3e))
  const namesOffset = Number(elf.readBigUInt64LE(names + 0x18))
  for (let i = 0; i < shnum; i++) {
    const nameAt = namesOffset + elf.readUInt32LE(header(i))
    const name = elf.toString('latin1', nameAt, elf.indexOf(0, nameAt))
    if (name === wanted) {
      const offset = Number(elf.readBigUInt64LE(header(i) + 0x18))
      return elf.subarray(offset, offset + Number(elf.readBigUInt64LE(header(i) + 0x20)))
    }
  }
  return null
}

test('the addon imports the Node-API functions it uses (no run-time look-up of all of them)', { skip: !linuxX64 && 'checked on the x86_64 Linux build' }, () => {
  // With napi-sys's `dyn-symbols`, no napi_* name is in the dynamic string table: all ~180 are
  // looked up (in node's large symbol table) when the addon loads.
  const dynstr = elfSection(readFileSync(path.join(root, ADDON)), '.dynstr')
  assert.ok(dynstr, 'the addon has a dynamic string table')
  assert.ok(dynstr.includes(Buffer.from('\0napi_create_promise\0')), 'napi_create_promise is imported by name')
})
