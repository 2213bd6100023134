// Regenerates src/cold-start.order, the function order the linker gives the addon's code
// (build.rs passes it to lld on x86_64 Linux):
//
//   npm run order-symbols        # needs valgrind; a few minutes
//
// Why: the kernel maps a shared library's cached pages 64 KiB at a time around each page fault,
// so `require` + `fromConnectionString` (~150 KB of code, spread over the whole 2.8 MB `.text`)
// made ~1.8 MiB of the addon resident. Laid out first and together, that code fits in a few of
// those windows. The first request's code (TLS, HTTP, JSON) follows it.
//
// How: build the release addon as `npm run build` does, with a link map (IOTHUB_JOBS_LINK_MAP);
// run both workloads under `valgrind --tool=callgrind --dump-instr=yes`; map every executed
// instruction address of the addon to the function section holding it; write those functions'
// symbols, the cold-start ones first. Symbol names carry hashes of the crates' build settings,
// so regenerate after changing dependencies, features, the release profile or the toolchain
// (rust-toolchain.toml): __test__/cold-start.test.mjs warns when the order no longer takes
// effect. This script ends by rebuilding and running that test in strict mode.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const ORDER_FILE = path.join(ROOT, 'src', 'cold-start.order')
const ADDON = 'iothub-jobs.linux-x64-gnu.node'
const WORKLOADS = ['cold-start', 'first-calls']

if (process.argv[2] === '--workload') await workload(process.argv[3])
else await generate()

/** What runs under callgrind: the cold start, then (second workload) a few real calls. */
async function workload(name) {
  const { JobClient } = createRequire(import.meta.url)(ROOT)
  if (name === 'cold-start') {
    JobClient.fromConnectionString(process.env.HUB_CONNECTION_STRING)
    return
  }
  const client = JobClient.fromConnectionString(process.env.HUB_CONNECTION_STRING, {
    ca: readFileSync(process.env.HUB_CA_PATH, 'utf8'),
  })
  const jobId = 'order-symbols'
  await client.scheduleDeviceMethod(jobId, "deviceId IN ['device-1']", { methodName: 'reboot' })
  await client.getJob(jobId)
  await client.getJob('no-such-job').catch(() => {})
  const query = client.createQuery()
  await query.next()
}

async function generate() {
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error('x86_64 Linux only (the order is used there)')
  const work = mkdtempSync(path.join(tmpdir(), 'iothub-jobs-order-'))
  try {
    const mapPath = path.join(work, 'addon.map')
    run('npm', ['run', 'build'], { env: { ...process.env, IOTHUB_JOBS_LINK_MAP: mapPath } })
    const sections = textSections(readFileSync(mapPath, 'utf8'))

    const { startEmulator } = await import('./emulator-process.mjs')
    const hub = await startEmulator({ devices: 4 })
    const executed = []
    try {
      for (const name of WORKLOADS) {
        const out = path.join(work, `${name}.callgrind`)
        run('valgrind', ['--tool=callgrind', '--dump-instr=yes', `--callgrind-out-file=${out}`,
          process.execPath, fileURLToPath(import.meta.url), '--workload', name], {
          env: { ...process.env, HUB_CONNECTION_STRING: hub.connectionString, HUB_CA_PATH: hub.caPath },
          stdio: ['ignore', 'ignore', 'pipe'],
        })
        executed.push(executedAddresses(readFileSync(out, 'utf8')))
      }
    } finally {
      await hub.stop()
    }

    const order = []
    const seen = new Set()
    executed.forEach((addresses, i) => {
      const added = new Set()
      for (const address of addresses) {
        const section = sectionAt(sections, address)
        if (section && !seen.has(section.symbol)) added.add(section)
      }
      // Within a workload keep the linker's own order: related code stays together.
      for (const section of [...added].sort((a, b) => a.start - b.start)) {
        seen.add(section.symbol)
        order.push(section.symbol)
      }
      const bytes = [...added].reduce((sum, s) => sum + s.size, 0)
      console.log(`${WORKLOADS[i]}: ${added.size} more functions, ${bytes} bytes of code`)
    })
    writeFileSync(ORDER_FILE, order.join('\n') + '\n')
    console.log(`wrote ${path.relative(ROOT, ORDER_FILE)} (${order.length} functions)`)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  // Link with the new order and prove it takes effect (the test only warns in `npm test`).
  run('npm', ['run', 'build'])
  run(process.execPath, ['--test', path.join('__test__', 'cold-start.test.mjs')], {
    env: { ...process.env, IOTHUB_JOBS_STRICT_ORDER: '1' },
  })
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: ROOT, stdio: 'inherit', ...options })
  if (result.error) throw result.error
  if (result.status !== 0) {
    throw new Error(`${command} ${args[0]} exited with ${result.status ?? result.signal}: ${result.stderr?.toString().slice(-2000) ?? ''}`)
  }
}

/**
 * The addon's code sections from lld's link map, each named by its first symbol: an input section
 * line `VMA LMA Size Align  file:(.text…)` is followed by the lines of the symbols it defines,
 * `VMA LMA Size Align  SYMBOL` (mangled: build.rs links with --no-demangle for the map). Most
 * sections hold one function; `.text.startup` holds the module's constructors, and an assembly
 * object's `.text` several functions: ordering any one symbol moves the whole section.
 * @returns {{start: number, size: number, symbol: string}[]} sorted by start
 */
function textSections(map) {
  const sections = []
  let current = null
  for (const line of map.split('\n')) {
    const columns = /^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+(\S.*?)\s*$/.exec(line)
    if (!columns) continue
    const [, vma, size, rest] = columns
    if (rest.includes(':(')) {
      current = /:\(\.text(\.[^)]*)?\)$/.test(rest) && parseInt(size, 16) > 0
        ? { start: parseInt(vma, 16), size: parseInt(size, 16), symbol: null }
        : null
      if (current) sections.push(current)
    } else if (current && current.symbol === null && !rest.includes(' ')) {
      current.symbol = rest
    }
  }
  return sections.filter((s) => s.symbol !== null).sort((a, b) => a.start - b.start)
}

function sectionAt(sections, address) {
  let lo = 0
  let hi = sections.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const s = sections[mid]
    if (address < s.start) hi = mid - 1
    else if (address >= s.start + s.size) lo = mid + 1
    else return s
  }
  return null
}

/**
 * Instruction addresses executed in the addon, from a `--dump-instr=yes` callgrind profile.
 * Positions are absolute (`0x…`) or relative to the previous cost line's (`+n`, `-n`, `*`), and
 * relative to the object: for the (stripped) addon they are the link map's addresses.
 */
function executedAddresses(profile) {
  const names = new Map()
  const addresses = new Set()
  let inAddon = false
  let last = 0
  for (const line of profile.split('\n')) {
    const object = /^(c?ob)=\((\d+)\)(?: (.*))?$/.exec(line)
    if (object) {
      if (object[3]) names.set(object[2], object[3])
      if (object[1] === 'ob') inAddon = (names.get(object[2]) ?? '').endsWith(ADDON)
      continue
    }
    // Cost lines (a `calls=` line's target position is not one, and does not move `last`).
    const position = /^(0x[0-9a-f]+|[+-]\d+|\*)\s/.exec(line)
    if (!position) continue
    const token = position[1]
    if (token.startsWith('0x')) last = parseInt(token, 16)
    else if (token !== '*') last += Number(token)
    if (inAddon) addresses.add(last)
  }
  return addresses
}
