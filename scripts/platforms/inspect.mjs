// Reads what a loader will ask of a native addon, straight from its bytes (no binutils, which know
// neither every architecture nor Mach-O nor PE): its format, architecture, the libraries it needs, the
// symbols it imports (with the glibc version each one requires) and the ones it exports.
import { readFileSync } from 'node:fs';

const ELF_MACHINES = { 62: 'x86_64', 183: 'aarch64' };
const MACHO_CPUS = { 0x01000007: 'x86_64', 0x0100000c: 'aarch64' };
const PE_MACHINES = { 0x8664: 'x86_64', 0xaa64: 'aarch64' };

/** @returns {{format, arch, needed: string[], imports: {name, version?, weak}[], exports: string[], minOs?}} */
export function inspectBinary(file) {
  const bytes = readFileSync(file);
  if (bytes.readUInt32BE(0) === 0x7f454c46) return inspectElf(bytes);
  if (bytes.readUInt32LE(0) === 0xfeedfacf) return inspectMachO(bytes);
  if (bytes.readUInt16LE(0) === 0x5a4d) return inspectPe(bytes);
  throw new Error(`${file}: neither ELF nor 64-bit Mach-O nor PE`);
}

/** The highest `GLIBC_x.y` an inspected binary requires, or null (musl, macOS, no versions). */
export function highestGlibc({ imports }) {
  const versions = imports.flatMap(({ version }) => (version?.startsWith('GLIBC_2.') ? [version.slice(6)] : []));
  return versions.sort(compareVersions).at(-1) ?? null;
}

export function compareVersions(a, b) {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number));
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

const cString = (bytes, at) => bytes.toString('latin1', at, bytes.indexOf(0, at));

function inspectElf(bytes) {
  if (bytes[4] !== 2 || bytes[5] !== 1) throw new Error('only 64-bit little-endian ELF is expected');
  if (bytes.readUInt16LE(16) !== 3) throw new Error('ELF file is not a shared object');
  const shoff = Number(bytes.readBigUInt64LE(40));
  const sections = Array.from({ length: bytes.readUInt16LE(60) }, (_, i) => {
    const at = shoff + i * bytes.readUInt16LE(58);
    return {
      type: bytes.readUInt32LE(at + 4),
      offset: Number(bytes.readBigUInt64LE(at + 24)),
      size: Number(bytes.readBigUInt64LE(at + 32)),
      link: bytes.readUInt32LE(at + 40),
    };
  });
  const byType = (type) => sections.find((s) => s.type === type);
  const dynsym = byType(11);
  const strings = (section) => (at) => cString(bytes, sections[section.link].offset + at);

  const needed = [];
  const dynamic = byType(6);
  for (let at = dynamic.offset; at < dynamic.offset + dynamic.size; at += 16) {
    if (bytes.readBigInt64LE(at) === 1n) needed.push(strings(dynamic)(Number(bytes.readBigUInt64LE(at + 8))));
  }

  // Version indexes (.gnu.version) name the entries of the version needs (.gnu.version_r).
  const versionNames = new Map();
  const verneed = byType(0x6ffffffe);
  for (let at = verneed?.offset, more = Boolean(verneed); more; ) {
    for (let aux = at + bytes.readUInt32LE(at + 8), n = bytes.readUInt16LE(at + 2); n > 0; n--) {
      versionNames.set(bytes.readUInt16LE(aux + 6), strings(verneed)(bytes.readUInt32LE(aux + 8)));
      aux += bytes.readUInt32LE(aux + 12);
    }
    more = bytes.readUInt32LE(at + 12) !== 0;
    at += bytes.readUInt32LE(at + 12);
  }
  const versym = byType(0x6fffffff);

  const imports = [];
  const exports = [];
  for (let i = 1; i < dynsym.size / 24; i++) {
    const at = dynsym.offset + i * 24;
    const name = strings(dynsym)(bytes.readUInt32LE(at));
    if (bytes.readUInt16LE(at + 6) !== 0) {
      exports.push(name);
      continue;
    }
    const version = versym && versionNames.get(bytes.readUInt16LE(versym.offset + i * 2) & 0x7fff);
    imports.push({ name, version, weak: bytes[at + 4] >> 4 === 2 });
  }
  return { format: 'elf', arch: ELF_MACHINES[bytes.readUInt16LE(18)] ?? 'unknown', needed, imports, exports };
}

function inspectMachO(bytes) {
  const needed = [];
  const imports = [];
  const exports = [];
  let minOs;
  for (let at = 32, n = bytes.readUInt32LE(16); n > 0; n--, at += bytes.readUInt32LE(at + 4)) {
    const command = bytes.readUInt32LE(at);
    if (command === 0xc) needed.push(cString(bytes, at + bytes.readUInt32LE(at + 8)));
    if (command === 0x32) {
      const v = bytes.readUInt32LE(at + 12);
      minOs = `${v >>> 16}.${(v >> 8) & 0xff}`;
    }
    if (command === 0x2) {
      const [symoff, nsyms, stroff] = [8, 12, 16].map((o) => bytes.readUInt32LE(at + o));
      for (let i = 0; i < nsyms; i++) {
        const sym = symoff + i * 16;
        const type = bytes[sym + 4];
        if (!(type & 0x01)) continue; // not external
        const name = cString(bytes, stroff + bytes.readUInt32LE(sym)).replace(/^_/, '');
        if ((type & 0x0e) === 0) imports.push({ name, weak: Boolean(bytes.readUInt16LE(sym + 6) & 0x80) });
        else exports.push(name);
      }
    }
  }
  return { format: 'mach-o', arch: MACHO_CPUS[bytes.readUInt32LE(4)] ?? 'unknown', needed, imports, exports, minOs };
}

// PE32+ (Windows): the DLLs of the import directory (and the delay-load one) with the functions
// taken from each, and the export directory's names. `format` is 'pe32+' only for a PE32+ image.
function inspectPe(bytes) {
  const pe = bytes.readUInt32LE(0x3c);
  if (bytes.readUInt32LE(pe) !== 0x4550) throw new Error('MZ file without a PE header');
  const optional = pe + 24;
  const magic = bytes.readUInt16LE(optional);
  if (magic !== 0x20b) return { format: `pe (magic 0x${magic.toString(16)}, not PE32+)`, arch: 'unknown', needed: [], imports: [], exports: [] };
  const sectionTable = optional + bytes.readUInt16LE(pe + 20);
  const sections = Array.from({ length: bytes.readUInt16LE(pe + 6) }, (_, i) => {
    const at = sectionTable + i * 40;
    return { rva: bytes.readUInt32LE(at + 12), size: bytes.readUInt32LE(at + 8), offset: bytes.readUInt32LE(at + 20) };
  });
  const offsetOf = (rva) => {
    const section = sections.find((s) => rva >= s.rva && rva < s.rva + s.size);
    if (!section) throw new Error(`RVA 0x${rva.toString(16)} is in no section`);
    return rva - section.rva + section.offset;
  };
  const directory = (index) => bytes.readUInt32LE(optional + 112 + index * 8);

  const exports = [];
  if (directory(0)) {
    const at = offsetOf(directory(0));
    const names = offsetOf(bytes.readUInt32LE(at + 32));
    for (let i = 0; i < bytes.readUInt32LE(at + 24); i++) exports.push(cString(bytes, offsetOf(bytes.readUInt32LE(names + i * 4))));
  }

  const needed = [];
  const imports = [];
  // Import descriptors are 20 bytes (name at +12, lookup table at +0), delay-load ones 32 (name at
  // +4, lookup table at +16); both end with an all-zero entry.
  for (const [index, size, nameAt, thunksAt] of [[1, 20, 12, 0], [13, 32, 4, 16]]) {
    if (!directory(index)) continue;
    for (let at = offsetOf(directory(index)); bytes.readUInt32LE(at + nameAt) !== 0; at += size) {
      const library = cString(bytes, offsetOf(bytes.readUInt32LE(at + nameAt)));
      needed.push(library);
      const thunks = bytes.readUInt32LE(at + thunksAt) || bytes.readUInt32LE(at + 16);
      for (let thunk = offsetOf(thunks); bytes.readBigUInt64LE(thunk) !== 0n; thunk += 8) {
        const entry = bytes.readBigUInt64LE(thunk);
        const name = entry >> 63n ? `#${entry & 0xffffn}` : cString(bytes, offsetOf(Number(entry & 0x7fffffffn)) + 2);
        imports.push({ name, library, weak: false });
      }
    }
  }
  // DLL names are case-insensitive and a DLL can have several descriptors (rustc's raw-dylib).
  const dlls = [...new Set(needed.map((name) => name.toLowerCase()))];
  return { format: 'pe32+', arch: PE_MACHINES[bytes.readUInt16LE(pe + 4)] ?? 'unknown', needed: dlls, imports, exports };
}

/** What an executable asks of the system that runs it: its format and architecture and, for ELF,
 * the program interpreter (none = static) and how many libraries it needs; Mach-O and PE as
 * inspectBinary reads them. */
export function inspectExecutable(file) {
  const bytes = readFileSync(file);
  if (bytes.readUInt16LE(0) === 0x5a4d) return inspectPe(bytes);
  if (bytes.readUInt32LE(0) === 0xfeedfacf) return inspectMachO(bytes);
  if (bytes.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file}: neither ELF, Mach-O nor PE`);
  if (bytes[4] !== 2 || bytes[5] !== 1) throw new Error('only 64-bit little-endian ELF is expected');
  const [phoff, phentsize, phnum] = [Number(bytes.readBigUInt64LE(32)), bytes.readUInt16LE(54), bytes.readUInt16LE(56)];
  let interpreter = null;
  let dynamic = null;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const [type, offset, size] = [bytes.readUInt32LE(at), Number(bytes.readBigUInt64LE(at + 8)), Number(bytes.readBigUInt64LE(at + 32))];
    if (type === 3) interpreter = cString(bytes, offset); // PT_INTERP
    if (type === 2) dynamic = { offset, size }; // PT_DYNAMIC (a static-pie has one, with no DT_NEEDED)
  }
  let needed = 0;
  for (let at = dynamic?.offset ?? 0; dynamic && at < dynamic.offset + dynamic.size; at += 16) if (bytes.readBigInt64LE(at) === 1n) needed++;
  const kind = { 2: 'executable', 3: 'pie' }[bytes.readUInt16LE(16)] ?? 'other';
  return { format: 'elf', arch: ELF_MACHINES[bytes.readUInt16LE(18)] ?? 'unknown', kind, interpreter, neededCount: needed, needed: [] };
}
