// Guest RAM: one anonymous private mapping registered with KVM as
// guest-physical 0..size, with transparent huge pages requested.  Anonymous
// rather than a memfd because this host's kernel offers THP for anonymous
// memory only (shmem_enabled = never), and under nested KVM first touch of
// 4 KiB pages is several times slower than with huge pages (figures in
// docs/benchmarks.md); reading a never-written anonymous page maps the zero
// page instead of allocating, so scanning a sparse guest for a snapshot is
// cheap.  Every thread of the process shares the mapping.
//
// A guest being loaded from a stream (restore, migration destination) asks
// for huge pages only once its pages are in (`adviseHugePages`): a write to
// a huge-page region allocates and zeroes all 2 MiB of it, so a guest whose
// data pages are spread over its RAM made a 1 GiB destination zero all
// 1 GiB, most of its CPU time (docs/benchmarks.md), where 4 KiB faults
// touch only the pages that arrive.
import {
  madvise,
  MADV_HUGEPAGE,
  MAP_ANONYMOUS,
  MAP_NORESERVE,
  MAP_PRIVATE,
  mmap,
  munmap,
  PROT_READ,
  PROT_WRITE,
  viewOf,
} from './libc.js';

export const PAGE_SIZE = 4096;

/** Bytes per view of RAM: a typed array here spans at most 2^32 elements. */
export const RAM_VIEW_MAX = 2 ** 32;

/** Views of host memory [addr, addr+size), RAM_VIEW_MAX bytes each (the last may be shorter). */
export function viewsOf(addr: bigint, size: number): Uint8Array[] {
  const views: Uint8Array[] = [];
  for (let o = 0; o < size; o += RAM_VIEW_MAX) views.push(viewOf(addr + BigInt(o), Math.min(RAM_VIEW_MAX, size - o)));
  return views;
}

export class GuestRam {
  readonly size: number;
  readonly hostAddr: bigint;
  /** Guest RAM by RAM offset, RAM_VIEW_MAX bytes per view (the last may be shorter); valid until destroy(). */
  readonly chunks: readonly Uint8Array[];
  private destroyed = false;

  private hugePages = false;
  private readonly beforeUnmap: Array<() => void> = [];

  /** `hugePages: false` defers the advice to adviseHugePages() (see above). */
  constructor(size: number, opts: { hugePages?: boolean } = {}) {
    if (size <= 0 || size % (2 << 20) !== 0)
      throw new RangeError(`guest RAM size must be a positive multiple of 2 MiB, got ${size}`);
    this.size = size;
    this.hostAddr = mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    this.chunks = viewsOf(this.hostAddr, size);
    if (opts.hugePages ?? true) this.adviseHugePages();
  }

  /** The whole of guest RAM as one view: only for RAM of at most RAM_VIEW_MAX bytes (callers that take any size use `chunks`). */
  get bytes(): Uint8Array {
    if (this.chunks.length !== 1) throw new RangeError(`guest RAM of ${this.size} bytes has no single view`);
    return this.chunks[0]!;
  }

  /** From now on, faults in untouched 2 MiB regions get huge pages (and khugepaged may merge the rest).  Idempotent. */
  adviseHugePages(): void {
    if (this.hugePages || this.destroyed) return;
    this.hugePages = true;
    madvise(this.hostAddr, this.size, MADV_HUGEPAGE);
  }

  /** Runs `fn` when the memory is about to be unmapped (a filler that writes it must end first). */
  onDestroy(fn: () => void): void {
    this.beforeUnmap.push(fn);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const fn of this.beforeUnmap.splice(0)) fn();
    munmap(this.hostAddr, this.size);
  }
}

/**
 * A small anonymous mapping the emulator owns and maps into guest-physical
 * space next to RAM (the PV platform's special pages and grant frames),
 * shared by every thread of the process like RAM.
 */
export class HostPages {
  readonly hostAddr: bigint;
  readonly bytes: Uint8Array;
  private destroyed = false;

  constructor(readonly size: number) {
    if (size <= 0 || size % PAGE_SIZE !== 0) throw new RangeError(`host pages of ${size} bytes`);
    this.hostAddr = mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    this.bytes = viewOf(this.hostAddr, size);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    munmap(this.hostAddr, this.size);
  }
}
