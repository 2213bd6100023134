// The checks `npm run pack:all` makes on every staged package before it packs it (see
// pack-all.mjs): what a registry would refuse, or what would leave a user without a working
// install. Each problem is one line naming the package and what is wrong.
import { existsSync, statSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** `files` entries are npm globs: `*` within one path segment, a directory for all it holds. */
const globRegExp = (pattern) => new RegExp(`^${pattern.replace(/^\.\//, '').replace(/\/$/, '').replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '[^/]*')}(/.*)?$`);

/** Every string an `exports` map leads to. */
const exportTargets = (exports) => (typeof exports === 'string' ? [exports] : exports && typeof exports === 'object' ? Object.values(exports).flatMap(exportTargets) : []);

/**
 * The problems of one staged package: `dir` holds exactly the files it will be packed with
 * (`files`, their paths relative to `dir`). `expect` says what the package must be:
 *   { version, os, cpu, libc, optionalDependencies, executables }
 * (`libc` null for a package that must not restrict it; `executables` more files that must be
 * executable, e.g. a platform package's binary). Returns one-line messages.
 */
export function checkPackage(dir, files, expect) {
  const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const name = manifest.name ?? path.basename(dir);
  const problems = [];
  const problem = (what) => problems.push(`${name}: ${what}`);
  const packed = new Set(files);
  const has = (file) => packed.has(path.posix.normalize(file.replace(/^\.\//, '')));

  if (!Array.isArray(manifest.files) || manifest.files.length === 0) problem('no `files` list: the package would ship whatever its folder holds');
  for (const entry of manifest.files ?? []) {
    if (!files.some((file) => globRegExp(entry).test(file))) problem(`\`files\` lists ${entry}, which matches no file`);
  }
  const needed = [
    ...(manifest.main ? [['main', manifest.main]] : []),
    ...(manifest.types ? [['types', manifest.types]] : []),
    ...exportTargets(manifest.exports).map((target) => ['exports', target]),
    ...Object.values(typeof manifest.bin === 'string' ? { [name]: manifest.bin } : (manifest.bin ?? {})).map((target) => ['bin', target]),
  ];
  for (const [field, target] of needed) if (!has(target)) problem(`\`${field}\` names ${target}, which is not in the package`);
  const executables = [...Object.values(typeof manifest.bin === 'string' ? { [name]: manifest.bin } : (manifest.bin ?? {})), ...(expect.executables ?? [])];
  for (const file of executables) {
    const full = path.join(dir, file);
    if (!existsSync(full)) continue;
    if ((statSync(full).mode & 0o111) === 0) problem(`${file} is not executable (chmod +x, and commit the mode)`);
    else if (file.endsWith('.js') || file.endsWith('.mjs')) {
      if (!readFileSync(full, 'utf8').startsWith('#!/usr/bin/env node')) problem(`${file} has no \`#!/usr/bin/env node\` line`);
    }
  }
  if (!files.some((file) => /^licen[cs]e(\.\w+)?$/i.test(file))) problem('no LICENSE file');
  if (!files.some((file) => /^readme(\.\w+)?$/i.test(file))) problem('no README');
  return [...checkManifest(manifest, expect), ...problems];
}

/** The problems of a manifest alone (a platform package not built here is still checked so):
 * version, licence, os/cpu/libc, optionalDependencies. One-line messages. */
export function checkManifest(manifest, expect) {
  const problems = [];
  const problem = (what) => problems.push(`${manifest.name}: ${what}`);
  if (manifest.version !== expect.version) problem(`version ${manifest.version}, expected ${expect.version} (all packages are versioned together)`);
  if (!manifest.license) problem('no `license` field');

  const list = (field) => (manifest[field] ? [manifest[field]].flat().join(',') : null);
  for (const field of ['os', 'cpu', 'libc']) {
    const wanted = expect[field] === undefined ? undefined : expect[field] === null ? null : [expect[field]].flat().join(',');
    if (wanted !== undefined && list(field) !== wanted) problem(`\`${field}\` is ${list(field) ?? 'not set'}, expected ${wanted ?? 'none'}`);
  }
  if (expect.optionalDependencies) {
    const got = JSON.stringify(Object.entries(manifest.optionalDependencies ?? {}).sort());
    if (got !== JSON.stringify(Object.entries(expect.optionalDependencies).sort())) {
      problem(`optionalDependencies ${got}, expected one per platform package at its version: ${JSON.stringify(expect.optionalDependencies)}`);
    }
  }
  return problems;
}
