// An old glibc's stub libraries for rustc's own linker (rust-lld through `cc`): zig generates the
// stubs of any glibc version (`libc.so.6` & co. exporting only that version's symbols, plus that
// version's `libc_nonshared.a`); this writes linker scripts named as `-lc`, `-lm`, … look them up,
// so that `-L <dir>` ahead of the system's directories makes the link bind to them. The x64 gnu
// build then needs nothing newer than that glibc and still gets the default build's symbol order,
// which zig's own linker driver cannot apply (it rejects `--symbol-ordering-file`).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const LIBRARIES = ['c', 'm', 'pthread', 'dl', 'rt', 'util', 'resolv'];

/** Writes `<targetDir>/glibc-<version>-<arch>/lib*.so` and returns that directory. */
export function glibcStubs(targetDir, arch, version) {
  const dir = path.join(targetDir, `glibc-${version}-${arch}`);
  mkdirSync(dir, { recursive: true });
  const source = path.join(dir, 'empty.c');
  writeFileSync(source, '');
  // `-v` prints the ld.lld command zig runs, which names the stubs it generated (or had cached).
  const zig = spawnSync('python3', ['-m', 'ziglang', 'cc', '-target', `${arch}-linux-gnu.${version}`, '-shared', '-v', '-o', path.join(dir, 'empty.so'), source], { encoding: 'utf8' });
  if (zig.status !== 0) throw new Error(`zig cc failed (${zig.error?.message ?? zig.status}): run \`npm run setup:platforms\`\n${zig.stderr}`);
  return writeScripts(dir, zig.stderr);
}

function writeScripts(dir, zigOutput) {
  const link = zigOutput.split('\n').filter((l) => /\bld\.lld\b.* -shared /.test(l)).at(-1);
  const args = link?.split(/\s+/) ?? [];
  const find = (pattern) => args.find((a) => pattern.test(path.basename(a))) ?? fail(pattern);
  const fail = (pattern) => { throw new Error(`zig cc -v named no ${pattern} stub:\n${zigOutput.slice(-2000)}`); };
  const loader = find(/^libld\.so\.2$/);
  for (const name of LIBRARIES) {
    const stub = find(new RegExp(`^lib${name}\\.so\\.\\d+$`));
    const script = name === 'c' ? `GROUP ( ${stub} ${find(/^libc_nonshared\.a$/)} AS_NEEDED ( ${loader} ) )` : `INPUT ( ${stub} )`;
    writeFileSync(path.join(dir, `lib${name}.so`), `/* glibc stub from zig (scripts/platforms/glibc-stubs.mjs) */\n${script}\n`);
  }
  return dir;
}
