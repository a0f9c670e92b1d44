// Loads a PVH guest: an ELF (64- or 32-bit class, e_machine x86-64) whose
// PT_NOTE carries XEN_ELFNOTE_PHYS32_ENTRY.  PT_LOAD segments go to their
// physical addresses; hvm_start_info, the memory map, the command line and a
// flat boot GDT go in the pages right after the highest segment, as Xen's
// domain builder puts its start-info segment there: some guests unmap low
// memory before they read them.  Nothing lands in page 0 (docs/xen-abi.md
// "PVH boot").  The entry state is exactly the PVH ABI's: 32-bit protected
// mode, paging off, EBX = start_info.
import { LEGACY_AREA_END, type MemoryLayout } from '../xen/memory/layout.js';
import { ElfError } from '../errors.js';
import { HVM_START_MAGIC, XEN_ELFNOTE_PHYS32_ENTRY } from '../xen/abi.js';
import type { Segment, SpecialRegs } from '../kvm/types.js';
import { GPR_COUNT, Gpr } from '../kvm/types.js';

const EM_386 = 3;
const EM_X86_64 = 62;
const PT_LOAD = 1;
const PT_NOTE = 4;
/** Guest segments must start at or above the legacy area the e820 reserves. */
export const LOW_RESERVED_END = LEGACY_AREA_END;
export const CMDLINE_MAX = 4095;
/**
 * The boot block, at the first page boundary after the image: offsets of
 * hvm_start_info, the boot GDT, the memory map and the command line in it.
 * Room for MEMMAP_MAX_ENTRIES map entries; the block spans two pages.
 */
export const BootBlock = {
  START_INFO: 0,
  START_INFO_SIZE: 56,
  GDT: 0x40,
  MEMMAP: 0x80,
  CMDLINE: 0x400,
  SIZE: 0x400 + CMDLINE_MAX + 1,
} as const;
const MEMMAP_ENTRY_SIZE = 24;
const MEMMAP_MAX_ENTRIES = (BootBlock.CMDLINE - BootBlock.MEMMAP) / MEMMAP_ENTRY_SIZE;

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
export function pvhEntryState(entry: number, startInfo: number, gdt: number): { gpr: bigint[]; sregs: SpecialRegs } {
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
    gdt: { base: BigInt(gdt), limit: 4 * 8 - 1 },
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

  const block = writeBootBlock(ram, layout, imageEnd, cmdline, name);
  const startInfo = block + BootBlock.START_INFO;
  const { gpr, sregs } = pvhEntryState(entry, startInfo, block + BootBlock.GDT);
  return { entry, startInfo, imageEnd, gpr, sregs };
}

/**
 * Writes hvm_start_info (version 1, no modules), the e820, the command line
 * and the boot GDT into the pages after the image; returns the block's GPA.
 */
function writeBootBlock(
  ram: Uint8Array,
  layout: MemoryLayout,
  imageEnd: number,
  cmdline: string,
  name: string,
): number {
  const block = Math.ceil(imageEnd / 4096) * 4096;
  if (layout.offsetOf(block, BootBlock.SIZE) !== block)
    throw new ElfError(
      `${name}: no room after the image (ends at 0x${imageEnd.toString(16)}) for the boot information`,
    );
  const cmd = Buffer.from(cmdline, 'utf8');
  if (cmd.length > CMDLINE_MAX) throw new ElfError(`command line is ${cmd.length} bytes; the limit is ${CMDLINE_MAX}`);
  const map = layout.e820();
  if (map.length > MEMMAP_MAX_ENTRIES) throw new RangeError(`memory map of ${map.length} entries`);
  ram.fill(0, block, block + BootBlock.SIZE);
  const v = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  // Boot GDT: null, flat 32-bit code (0x08), flat data (0x10), 32-bit TSS (0x18).
  const gdt = block + BootBlock.GDT;
  v.setBigUint64(gdt + 8, 0x00cf9b000000ffffn, true);
  v.setBigUint64(gdt + 16, 0x00cf93000000ffffn, true);
  v.setBigUint64(gdt + 24, 0x00008b0000000067n, true);
  const cmdGpa = block + BootBlock.CMDLINE;
  ram.set(cmd, cmdGpa);
  const memmap = block + BootBlock.MEMMAP;
  map.forEach(([addr, size, type], i) => {
    const o = memmap + i * MEMMAP_ENTRY_SIZE;
    v.setBigUint64(o, BigInt(addr), true);
    v.setBigUint64(o + 8, BigInt(size), true);
    v.setUint32(o + 16, type, true);
  });
  // struct hvm_start_info, version 1 (docs/xen-abi.md "PVH boot").
  const si = block + BootBlock.START_INFO;
  v.setUint32(si, HVM_START_MAGIC, true);
  v.setUint32(si + 4, 1, true);
  v.setBigUint64(si + 24, BigInt(cmdGpa), true);
  v.setBigUint64(si + 40, BigInt(memmap), true);
  v.setUint32(si + 48, map.length, true);
  return block;
}
