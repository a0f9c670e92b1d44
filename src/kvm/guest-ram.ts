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

export class GuestRam {
  readonly size: number;
  readonly hostAddr: bigint;
  /** The whole of guest RAM; valid until destroy(). */
  readonly bytes: Uint8Array;
  private destroyed = false;

  private hugePages = false;
  private readonly beforeUnmap: Array<() => void> = [];

  /** `hugePages: false` defers the advice to adviseHugePages() (see above). */
  constructor(size: number, opts: { hugePages?: boolean } = {}) {
    if (size <= 0 || size % (2 << 20) !== 0)
      throw new RangeError(`guest RAM size must be a positive multiple of 2 MiB, got ${size}`);
    this.size = size;
    this.hostAddr = mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    this.bytes = viewOf(this.hostAddr, size);
    if (opts.hugePages ?? true) this.adviseHugePages();
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
