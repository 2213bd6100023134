// `npm run pack:all [-- --out DIR]`: `npm pack` of every package buildable here, into
// target/packages/ (or DIR): iothub-jobs, its platform packages in npm/*/ that hold their addon,
// iothub-emulator, and its platform packages in packages/iothub-emulator/npm/*/ that hold their binary (the others
// are listed as skipped, with what builds them). Prints one line per package; `--json` prints the
// list of {name, tarball} instead. Tarballs are what a registry would get: versions as in the
// manifests (optionalDependencies at the same version, not files). The command also writes the
// Python wheels (scripts/wheels.mjs) there.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packWheels } from './wheels.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** npm's own CLI next to the running node, so no npm lifecycle state or shim is involved. */
export const NPM_CLI = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');

const manifest = (dir) => JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));

/** Every package directory, with the file that must be present for it to be packed. */
function packageDirs() {
  const platformDirs = (parent) => readdirSync(parent).sort().map((name) => path.join(parent, name));
  const root = manifest(ROOT);
  return [
    { dir: ROOT },
    ...platformDirs(path.join(ROOT, 'npm')).map((dir) => ({ dir, needs: path.join(dir, manifest(dir).main), builtBy: 'npm run build:platforms' })),
    { dir: path.join(ROOT, 'packages', 'iothub-emulator') },
    ...platformDirs(path.join(ROOT, 'packages', 'iothub-emulator', 'npm')).map((dir) => ({
      dir,
      needs: path.join(dir, manifest(dir).files[0]),
      builtBy: dir.endsWith('win32-x64') ? 'npm run build:platforms win32-x64-msvc emulator-win32-x64, or the hosted workflow' : 'npm run build:platforms',
    })),
  ].map((p) => ({ ...p, name: manifest(p.dir).name, version: manifest(p.dir).version, rootVersion: root.version }));
}

/** Packs what can be packed into `out`; returns [{name, tarball}] and [{name, why}]. */
export function packAll(out = path.join(ROOT, 'target', 'packages')) {
  mkdirSync(out, { recursive: true });
  const packed = [];
  const skipped = [];
  for (const p of packageDirs()) {
    if (p.version !== p.rootVersion) throw new Error(`${p.name} is at ${p.version}, iothub-jobs at ${p.rootVersion}: they are versioned together`);
    if (p.needs && !existsSync(p.needs)) {
      skipped.push({ name: p.name, why: `no ${path.relative(ROOT, p.needs)} (${p.builtBy})` });
      continue;
    }
    const text = execFileSync(process.execPath, [NPM_CLI, 'pack', '--json', '--pack-destination', out], { cwd: p.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    packed.push({ name: p.name, tarball: path.join(out, JSON.parse(text.slice(text.indexOf('[')))[0].filename) });
  }
  return { packed, skipped };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--out');
  const out = at > 0 ? path.resolve(process.argv[at + 1]) : undefined;
  const { packed, skipped } = packAll(out);
  // The Python wheels beside the tarballs (scripts/wheels.mjs: same binaries, same version).
  const wheels = packWheels(out);
  packed.push(...wheels.packed);
  skipped.push(...wheels.skipped);
  if (process.argv.includes('--json')) console.log(JSON.stringify(packed));
  else {
    for (const p of packed) console.log(`packed  ${p.name}: ${path.relative(process.cwd(), p.tarball)}`);
    for (const s of skipped) console.log(`skipped ${s.name}: ${s.why}`);
  }
}
