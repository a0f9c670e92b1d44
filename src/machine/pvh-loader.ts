// Loads a PVH guest: an ELF (64- or 32-bit class, e_machine x86-64) whose
// PT_NOTE carries XEN_ELFNOTE_PHYS32_ENTRY.  PT_LOAD segments go to their
// physical addresses; hvm_start_info, the command line, the memory map and a
// flat boot GDT go below 1 MiB, where no segment may land.  The entry state is
// exactly the PVH ABI's: 32-bit protected mode, paging off, EBX = start_info.
import { LEGACY_AREA_END, type MemoryLayout } from '../xen/memory/layout.js';
import { ElfError } from '../errors.js';
import { HVM_START_MAGIC, XEN_ELFNOTE_PHYS32_ENTRY } from '../xen/abi.js';
import type { Segment, SpecialRegs } from '../kvm/types.js';
import { GPR_COUNT, Gpr } from '../kvm/types.js';

const EM_386 = 3;
const EM_X86_64 = 62;
const PT_LOAD = 1;
const PT_NOTE = 4;
/** Boot structures live here; guest segments must start at or above it. */
export const LOW_RESERVED_END = LEGACY_AREA_END;
const GDT_GPA = 0x5000;
const START_INFO_GPA = 0x6000;
const MEMMAP_GPA = 0x6100;
const CMDLINE_GPA = 0x7000;
export const CMDLINE_MAX = 4095;

export interface LoadedGuest {
  entry: number;
  startInfo: number;
  /** Highest guest-physical byte a segment occupies (exclusive). */
  imageEnd: number;
  gpr: bigint[];
  sregs: SpecialRegs;
}

interface Phdr {
  type: number;
  offset: number;
  paddr: number;
  filesz: number;
  memsz: number;
}

function readPhdrs(file: Uint8Array, name: string): { phdrs: Phdr[] } {
  if (file.length < 52 || file[0] !== 0x7f || file[1] !== 0x45 || file[2] !== 0x4c || file[3] !== 0x46) {
    throw new ElfError(`${name}: not an ELF file`);
  }
  const cls = file[4];
  if (cls !== 1 && cls !== 2) throw new ElfError(`${name}: unknown ELF class ${cls}`);
  if (file[5] !== 1) throw new ElfError(`${name}: not a little-endian ELF`);
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const machine = v.getUint16(18, true);
  // PVH starts every guest in 32-bit protected mode, so 32-bit images (GRUB's i386-xen_pvh) run as they are.
  if (machine !== EM_X86_64 && machine !== EM_386)
    throw new ElfError(`${name}: ELF machine ${machine} is neither x86-64 nor i386`);
  const is64 = cls === 2;
  if (is64 && file.length < 64) throw new ElfError(`${name}: truncated ELF header`);
  const phoff = is64 ? Number(v.getBigUint64(32, true)) : v.getUint32(28, true);
  const phentsize = v.getUint16(is64 ? 54 : 42, true);
  const phnum = v.getUint16(is64 ? 56 : 44, true);
  if (phentsize < (is64 ? 56 : 32) || phoff + phnum * phentsize > file.length)
    throw new ElfError(`${name}: program headers lie outside the file`);
  const phdrs: Phdr[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    const big = (off: number) => {
      const x = v.getBigUint64(o + off, true);
      if (x > BigInt(Number.MAX_SAFE_INTEGER))
        throw new ElfError(`${name}: program header ${i} has an address or size beyond 2^53`);
      return Number(x);
    };
    phdrs.push(
      is64
        ? { type: v.getUint32(o, true), offset: big(8), paddr: big(24), filesz: big(32), memsz: big(40) }
        : {
            type: v.getUint32(o, true),
            offset: v.getUint32(o + 4, true),
            paddr: v.getUint32(o + 12, true),
            filesz: v.getUint32(o + 16, true),
            memsz: v.getUint32(o + 20, true),
          },
    );
  }
  return { phdrs };
}

function findEntry(file: Uint8Array, phdrs: Phdr[], name: string): number | null {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  for (const ph of phdrs) {
    if (ph.type !== PT_NOTE) continue;
    if (ph.offset + ph.filesz > file.length) throw new ElfError(`${name}: PT_NOTE lies outside the file`);
    let o = ph.offset;
    const end = ph.offset + ph.filesz;
    while (o + 12 <= end) {
      const namesz = v.getUint32(o, true);
      const descsz = v.getUint32(o + 4, true);
      const type = v.getUint32(o + 8, true);
      const nameOff = o + 12;
      const descOff = nameOff + ((namesz + 3) & ~3);
      const next = descOff + ((descsz + 3) & ~3);
      if (next > end) break;
      const noteName = Buffer.from(file.subarray(nameOff, nameOff + namesz))
        .toString('latin1')
        .replace(/\0+$/, '');
      if (noteName === 'Xen' && type === XEN_ELFNOTE_PHYS32_ENTRY) {
        if (descsz === 4) return v.getUint32(descOff, true);
        if (descsz === 8) return Number(v.getBigUint64(descOff, true) & 0xffffffffn);
        throw new ElfError(`${name}: PHYS32_ENTRY note has ${descsz} bytes (want 4 or 8)`);
      }
      o = next;
    }
  }
  return null;
}

function flatSegment(selector: number, type: number): Segment {
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type,
    present: true,
    dpl: 0,
    db: true,
    s: true,
    l: false,
    g: true,
    avl: false,
    unusable: false,
  };
}

/** The PVH entry CPU state (docs/xen-abi.md, "PVH boot"). */
export function pvhEntryState(entry: number, startInfo: number): { gpr: bigint[]; sregs: SpecialRegs } {
  const gpr = new Array<bigint>(GPR_COUNT).fill(0n);
  gpr[Gpr.RIP] = BigInt(entry);
  gpr[Gpr.RBX] = BigInt(startInfo);
  gpr[Gpr.RFLAGS] = 0x2n;
  const data = flatSegment(0x10, 3);
  const sregs: SpecialRegs = {
    cs: flatSegment(0x08, 11),
    ds: data,
    es: { ...data },
    fs: { ...data },
    gs: { ...data },
    ss: { ...data },
    tr: {
      base: 0n,
      limit: 0x67,
      selector: 0x18,
      type: 11,
      present: true,
      dpl: 0,
      db: false,
      s: false,
      l: false,
      g: false,
      avl: false,
      unusable: false,
    },
    ldt: {
      base: 0n,
      limit: 0xffff,
      selector: 0,
      type: 2,
      present: false,
      dpl: 0,
      db: false,
      s: false,
      l: false,
      g: false,
      avl: false,
      unusable: true,
    },
    gdt: { base: BigInt(GDT_GPA), limit: 4 * 8 - 1 },
    idt: { base: 0n, limit: 0 },
    cr0: 0x11n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
    apicBase: 0xfee00900n,
  };
  return { gpr, sregs };
}

/**
 * Copies the guest into RAM and writes the boot structures.  `ram` views the
 * RAM from offset 0; segments must lie in the low region, where RAM offset
 * and guest-physical address agree.  Throws ElfError.
 */
export function loadPvh(
  file: Uint8Array,
  ram: Uint8Array,
  layout: MemoryLayout,
  cmdline: string,
  name = 'guest',
): LoadedGuest {
  const { phdrs } = readPhdrs(file, name);
  const entry = findEntry(file, phdrs, name);
  if (entry === null) throw new ElfError(`${name}: no Xen PHYS32_ENTRY note: not a PVH guest`);
  let imageEnd = 0;
  let loads = 0;
  for (const ph of phdrs) {
    if (ph.type !== PT_LOAD || ph.memsz === 0) continue;
    loads++;
    if (ph.filesz > ph.memsz) throw new ElfError(`${name}: segment at 0x${ph.paddr.toString(16)} has filesz > memsz`);
    if (ph.offset + ph.filesz > file.length)
      throw new ElfError(`${name}: segment at 0x${ph.paddr.toString(16)} lies outside the file`);
    if (ph.paddr < LOW_RESERVED_END)
      throw new ElfError(`${name}: segment at 0x${ph.paddr.toString(16)} overlaps the boot area below 1 MiB`);
    if (layout.offsetOf(ph.paddr, ph.memsz) !== ph.paddr)
      throw new ElfError(
        `${name}: segment at 0x${ph.paddr.toString(16)} (+${ph.memsz} bytes) does not fit in the guest's RAM below 4 GiB (${Math.floor(layout.regions[0]!.size / 2 ** 20)} MiB)`,
      );
    ram.set(file.subarray(ph.offset, ph.offset + ph.filesz), ph.paddr);
    ram.fill(0, ph.paddr + ph.filesz, ph.paddr + ph.memsz);
    imageEnd = Math.max(imageEnd, ph.paddr + ph.memsz);
  }
  if (loads === 0) throw new ElfError(`${name}: no loadable segment`);
  if (entry < LOW_RESERVED_END || entry >= imageEnd)
    throw new ElfError(`${name}: entry 0x${entry.toString(16)} is outside the loaded image`);

  const v = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  // Boot GDT: null, flat 32-bit code (0x08), flat data (0x10), 32-bit TSS (0x18).
  v.setBigUint64(GDT_GPA + 8, 0x00cf9b000000ffffn, true);
  v.setBigUint64(GDT_GPA + 16, 0x00cf93000000ffffn, true);
  v.setBigUint64(GDT_GPA + 24, 0x00008b0000000067n, true);
  const cmd = Buffer.from(cmdline, 'utf8');
  if (cmd.length > CMDLINE_MAX) throw new ElfError(`command line is ${cmd.length} bytes; the limit is ${CMDLINE_MAX}`);
  ram.set(cmd, CMDLINE_GPA);
  ram[CMDLINE_GPA + cmd.length] = 0;
  const map = layout.e820();
  map.forEach(([addr, size, type], i) => {
    const o = MEMMAP_GPA + i * 24;
    v.setBigUint64(o, BigInt(addr), true);
    v.setBigUint64(o + 8, BigInt(size), true);
    v.setUint32(o + 16, type, true);
    v.setUint32(o + 20, 0, true);
  });
  ram.fill(0, START_INFO_GPA, START_INFO_GPA + 56);
  v.setUint32(START_INFO_GPA, HVM_START_MAGIC, true);
  v.setUint32(START_INFO_GPA + 4, 1, true);
  v.setBigUint64(START_INFO_GPA + 24, BigInt(CMDLINE_GPA), true);
  v.setBigUint64(START_INFO_GPA + 40, BigInt(MEMMAP_GPA), true);
  v.setUint32(START_INFO_GPA + 48, map.length, true);
  const { gpr, sregs } = pvhEntryState(entry, START_INFO_GPA);
  return { entry, startInfo: START_INFO_GPA, imageEnd, gpr, sregs };
}
