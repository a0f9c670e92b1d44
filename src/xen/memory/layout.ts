// Where guest RAM sits in the guest-physical address space.  RAM is one
// block of host memory; its bytes are numbered by "RAM offset" (snapshot
// files and the dirty log count pages in these units).  The guest sees the
// first LOW_RAM_END bytes at GPA 0 and the rest from 4 GiB up, leaving the
// 32-bit hole for what real machines and Xen's domain builder put there:
// the LAPIC and IOAPIC, and the special pages a PV platform reserves just
// below 4 GiB.  A machine of at most LOW_RAM_END bytes is one flat region,
// so small guests and the snapshots of older builds look exactly as before.
// See docs/xen-abi.md "Memory layout".
import { E820 } from '../abi.js';

/** Where the low RAM region ends: start of the 32-bit MMIO hole (as Xen's HVM_BELOW_4G_MMIO_START). */
export const LOW_RAM_END = 0xf000_0000;
/** Where RAM above the hole starts. */
export const HIGH_RAM_BASE = 2 ** 32;
/** Smallest and largest machines accepted (the largest is what the tests boot; host memory is only spent where touched). */
export const MIN_MEM_BYTES = 4 << 20;
export const MAX_MEM_BYTES = 2 ** 40;
/** End of the legacy VGA/BIOS area the e820 reserves (RAM from 0xA0000 to here is not usable). */
export const LEGACY_AREA_END = 0x100000;
/** Guest RAM sizes are whole 2 MiB pages. */
export const MEM_GRANULE = 2 << 20;

/**
 * The PV platform's special pages, where Xen's domain builder puts them: the
 * 8 frames just below 0xFF000, in the hole, reserved in the e820.  Each is a
 * page the emulator owns (not RAM), so ballooning or a guest's RAM layout
 * never moves it.
 */
export const SPECIAL_PFN_BASE = 0xfeff8;
export const NR_SPECIAL_PAGES = 8;
export const SpecialPage = { XENSTORE: 4, CONSOLE: 7 } as const;
export const SPECIAL_GPA = SPECIAL_PFN_BASE * 4096;
/** Grant table frames the emulator holds (Xen's default max_grant_frames). */
export const MAX_GRANT_FRAMES = 64;
/**
 * Pages the emulator owns and maps into guest-physical space: the special
 * pages, then the grant table frames.  They are numbered after RAM, from
 * RAM offset XEN_PAGES_OFFSET (beyond any RAM), so guest memory access
 * reaches them with the same offsets and accessors as RAM.
 */
export const NR_XEN_PAGES = NR_SPECIAL_PAGES + MAX_GRANT_FRAMES;
export const XEN_PAGES_OFFSET = 2 ** 41;
/** The RAM offset of Xen page `k` (special page k, or grant frame k - NR_SPECIAL_PAGES). */
export const xenPageOffset = (k: number): number => XEN_PAGES_OFFSET + k * 4096;

export interface RamRegion {
  /** First guest-physical address. */
  readonly gpa: number;
  /** Its RAM offset. */
  readonly offset: number;
  readonly size: number;
}

/**
 * Emulator pages the guest mapped at frames of its choosing (grant table
 * frames, gnttab/table.ts): the RAM offset of [g, g+len) when it lies in one
 * of them, else -1.
 */
export interface MappedFrames {
  offsetOf(g: number, len: number): number;
}

export type E820Entry = readonly [addr: number, size: number, type: number];

/** Why `memBytes` cannot be a machine's RAM size, or null if it can. */
export function memSizeProblem(memBytes: number): string | null {
  if (!Number.isSafeInteger(memBytes) || memBytes <= 0) return 'must be a positive whole number of bytes';
  if (memBytes % MEM_GRANULE !== 0) return 'must be a multiple of 2 MiB';
  if (memBytes < MIN_MEM_BYTES) return 'must be at least 4 MiB';
  if (memBytes > MAX_MEM_BYTES) return 'must be at most 1 TiB';
  return null;
}

export class MemoryLayout {
  readonly regions: readonly RamRegion[];
  private readonly lowBytes: number;

  /** `mapped`: frames placed outside RAM at run time (shared by every thread); none when absent. */
  constructor(
    readonly memBytes: number,
    private readonly mapped?: MappedFrames,
  ) {
    this.lowBytes = Math.min(memBytes, LOW_RAM_END);
    const regions: RamRegion[] = [{ gpa: 0, offset: 0, size: this.lowBytes }];
    if (memBytes > LOW_RAM_END) regions.push({ gpa: HIGH_RAM_BASE, offset: LOW_RAM_END, size: memBytes - LOW_RAM_END });
    this.regions = regions;
  }

  /**
   * The RAM offset of guest-physical `gpa` when all `len` bytes from it are
   * RAM of one region, else -1.  Never throws: guest-chosen addresses come
   * here unchecked (bigints beyond 2^53 included).
   */
  offsetOf(gpa: number | bigint, len = 1): number {
    const g = typeof gpa === 'bigint' ? (gpa < 0n || gpa > 0xffff_ffff_ffffn ? -1 : Number(gpa)) : gpa;
    if (!(g >= 0) || !(len >= 0)) return -1;
    if (g + len <= this.lowBytes) return g;
    if (g >= SPECIAL_GPA && g + len <= SPECIAL_GPA + NR_SPECIAL_PAGES * 4096) return XEN_PAGES_OFFSET + g - SPECIAL_GPA;
    if (g >= HIGH_RAM_BASE && g + len <= HIGH_RAM_BASE + this.memBytes - this.lowBytes && this.memBytes > LOW_RAM_END)
      return g - HIGH_RAM_BASE + LOW_RAM_END;
    return this.mapped ? this.mapped.offsetOf(g, len) : -1;
  }

  /** The guest-physical address of RAM offset `offset`. */
  gpaOf(offset: number): number {
    return offset < this.lowBytes ? offset : offset - LOW_RAM_END + HIGH_RAM_BASE;
  }

  /** Whether guest frame `gpfn` is RAM. */
  isRamFrame(gpfn: number | bigint): boolean {
    const g = typeof gpfn === 'bigint' ? (gpfn > 0xf_ffff_ffffn ? -1 : Number(gpfn) * 4096) : gpfn * 4096;
    const at = this.offsetOf(g, 4096);
    return at >= 0 && at < XEN_PAGES_OFFSET;
  }

  /** One past the highest guest-physical RAM address. */
  get end(): number {
    const last = this.regions[this.regions.length - 1]!;
    return last.gpa + last.size;
  }

  /**
   * The PVH memory map: low RAM below the legacy VGA/BIOS area, that area
   * reserved, RAM from 1 MiB, the hole with the special pages reserved in
   * it, and RAM above 4 GiB.
   */
  e820(): E820Entry[] {
    const map: E820Entry[] = [
      [0, 0xa0000, E820.ram],
      [0xa0000, LEGACY_AREA_END - 0xa0000, E820.reserved],
      [LEGACY_AREA_END, this.lowBytes - LEGACY_AREA_END, E820.ram],
      [SPECIAL_GPA, NR_SPECIAL_PAGES * 4096, E820.reserved],
    ];
    if (this.memBytes > LOW_RAM_END) map.push([HIGH_RAM_BASE, this.memBytes - LOW_RAM_END, E820.ram]);
    return map;
  }
}
