// The domain's memory reservation as the XENMEM ops change it: which RAM
// pages the guest gave back (ballooned out), how many pages it was granted
// by increase_reservation without mapping them, and the memory map it set
// for itself (XENMEM_set_memory_map).  One SharedArrayBuffer, so every vCPU
// thread serves these ops against the same state and the main thread saves
// it (docs/xen-abi.md "Memory reservation").
//
// A ballooned page is a hole: its host memory is released (the caller
// madvises it away) and its bit is set here.  KVM's memory slots stay as
// they are, so a guest that touches a hole anyway reads zeros (and its
// write lands in a fresh page, which costs host memory again); Xen would
// give it unbacked memory instead.  Snapshots and migration send holes as
// zero pages.

/** Int32 words of the header. */
const H = {
  lock: 0,
  /** 1 + entries of the map the guest set; 0 while the layout's own e820 applies. */
  nrE820: 1,
  /** Pages ballooned out (bits set). */
  ballooned: 2,
  /** Runs of consecutive ballooned pages (what a save writes). */
  runs: 3,
  /** Pages increase_reservation granted that no frame maps (an HVM guest cannot reach them). */
  unmapped: 4,
  WORDS: 16,
} as const;

/** Xen's E820MAX: the most entries XENMEM_set_memory_map takes. */
export const E820_MAX = 1024;
/** Bytes of one packed e820 entry (u64 addr, u64 size, u32 type), as the XENMEM map ops carry it. */
export const E820_ENTRY_BYTES = 20;
/**
 * The most separate holes a guest may punch: each is one entry of the saved
 * state, so the state of a hostile guest stays bounded.  A decrease that
 * would open one more stops there (its done count says so).
 */
export const MAX_BALLOON_RUNS = 65536;

const E820_AT = H.WORDS * 4;
const BITMAP_AT = E820_AT + E820_MAX * E820_ENTRY_BYTES;

export const memoryBufferBytes = (ramBytes: number): number => BITMAP_AT + Math.ceil(ramBytes / 4096 / 32) * 4;

/** A run of ballooned pages, by RAM page index (RAM offset / 4096). */
export interface PageRun {
  first: number;
  count: number;
}

export class MemoryReservation {
  private readonly words: Int32Array;
  private readonly bitmap: Int32Array;
  private readonly e820: DataView;
  /** RAM pages of the machine (its maximum reservation). */
  readonly ramPages: number;

  constructor(
    readonly sab: SharedArrayBuffer,
    ramBytes: number,
  ) {
    if (sab.byteLength < memoryBufferBytes(ramBytes)) throw new RangeError(`memory state of ${sab.byteLength} bytes`);
    this.ramPages = Math.floor(ramBytes / 4096);
    this.words = new Int32Array(sab, 0, H.WORDS);
    this.e820 = new DataView(sab, E820_AT, E820_MAX * E820_ENTRY_BYTES);
    this.bitmap = new Int32Array(sab, BITMAP_AT, Math.ceil(this.ramPages / 32));
  }

  /** Runs `fn` with the reservation to itself (vCPU threads change it concurrently). */
  withLock<T>(fn: () => T): T {
    while (Atomics.compareExchange(this.words, H.lock, 0, 1) !== 0) Atomics.wait(this.words, H.lock, 1, 1);
    try {
      return fn();
    } finally {
      Atomics.store(this.words, H.lock, 0);
      Atomics.notify(this.words, H.lock, 1);
    }
  }

  isBallooned(page: number): boolean {
    if (!(page >= 0 && page < this.ramPages)) return false;
    return (Atomics.load(this.bitmap, page >>> 5) & (1 << (page & 31))) !== 0;
  }

  get ballooned(): number {
    return Atomics.load(this.words, H.ballooned) >>> 0;
  }
  get runs(): number {
    return Atomics.load(this.words, H.runs) >>> 0;
  }
  get unmapped(): number {
    return Atomics.load(this.words, H.unmapped) >>> 0;
  }
  set unmapped(n: number) {
    Atomics.store(this.words, H.unmapped, n | 0);
  }

  /** Pages the domain holds: RAM not ballooned out, plus pages granted unmapped (Xen's tot_pages). */
  get totPages(): number {
    return this.ramPages - this.ballooned + this.unmapped;
  }

  /** How many runs marking `page` would add (-1, 0 or 1); call with the lock held. */
  runDeltaIfSet(page: number): number {
    return 1 - (this.isBallooned(page - 1) ? 1 : 0) - (this.isBallooned(page + 1) ? 1 : 0);
  }

  /** Marks `page` ballooned out (or back in); the caller holds the lock and releases host memory itself. */
  setBallooned(page: number, out: boolean): void {
    if (this.isBallooned(page) === out) return;
    const delta = this.runDeltaIfSet(page);
    const bit = 1 << (page & 31);
    if (out) Atomics.or(this.bitmap, page >>> 5, bit);
    else Atomics.and(this.bitmap, page >>> 5, ~bit);
    Atomics.add(this.words, H.ballooned, out ? 1 : -1);
    Atomics.add(this.words, H.runs, out ? delta : -delta);
  }

  /** The ballooned pages as runs, lowest first. */
  pageRuns(): PageRun[] {
    const runs: PageRun[] = [];
    if (this.ballooned === 0) return runs;
    let start = -1;
    for (let w = 0; w < this.bitmap.length; w++) {
      const bits = Atomics.load(this.bitmap, w);
      if (bits === 0 && start < 0) continue;
      if (bits === -1 && start >= 0) continue;
      for (let b = 0; b < 32; b++) {
        const page = w * 32 + b;
        if (page >= this.ramPages) break;
        const set = (bits & (1 << b)) !== 0;
        if (set && start < 0) start = page;
        else if (!set && start >= 0) {
          runs.push({ first: start, count: page - start });
          start = -1;
        }
      }
    }
    if (start >= 0) runs.push({ first: start, count: this.ramPages - start });
    return runs;
  }

  /** Clears everything (a fresh machine's state), then marks `runs` ballooned. */
  load(runs: readonly PageRun[], unmapped: number, e820: readonly (readonly [bigint, bigint, number])[] | null): void {
    // A bitmap with nothing set is all zero already: a large machine's stays untouched.
    if (this.ballooned !== 0) this.bitmap.fill(0);
    Atomics.store(this.words, H.ballooned, 0);
    Atomics.store(this.words, H.runs, 0);
    for (const r of runs) for (let p = r.first; p < r.first + r.count; p++) this.setBallooned(p, true);
    this.unmapped = unmapped;
    this.setE820(e820);
  }

  /** The memory map the guest set, or null while the layout's own applies. */
  guestE820(): Array<[bigint, bigint, number]> | null {
    const set = Atomics.load(this.words, H.nrE820);
    if (set === 0) return null;
    return Array.from({ length: set - 1 }, (_, i) => {
      const o = i * E820_ENTRY_BYTES;
      return [this.e820.getBigUint64(o, true), this.e820.getBigUint64(o + 8, true), this.e820.getUint32(o + 16, true)];
    });
  }

  /** Replaces the guest's memory map (null: back to the layout's; [] is a map of no entries); at most E820_MAX entries. */
  setE820(map: readonly (readonly [bigint, bigint, number])[] | null): void {
    if (map && map.length > E820_MAX) throw new RangeError(`memory map of ${map.length} entries`);
    Atomics.store(this.words, H.nrE820, 0);
    (map ?? []).forEach(([addr, size, type], i) => {
      const o = i * E820_ENTRY_BYTES;
      this.e820.setBigUint64(o, addr, true);
      this.e820.setBigUint64(o + 8, size, true);
      this.e820.setUint32(o + 16, type, true);
    });
    Atomics.store(this.words, H.nrE820, map ? map.length + 1 : 0);
  }
}
