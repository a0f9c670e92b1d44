// Guest RAM: one anonymous private mapping registered with KVM as
// guest-physical 0..size, with transparent huge pages requested.  Anonymous
// rather than a memfd because this host's kernel offers THP for anonymous
// memory only (shmem_enabled = never), and first touch of 4 KiB pages under
// nested KVM runs at 0.3–1 GiB/s against 6.7 GiB/s with huge pages
// (ARCHITECTURE.md); reading a never-written anonymous page maps the zero
// page instead of allocating, so scanning a sparse guest for a snapshot is
// cheap.  Every thread of the process shares the mapping.
import { madvise, MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, mmap, munmap, PROT_READ, PROT_WRITE, viewOf } from './libc.js';

export const PAGE_SIZE = 4096;

export class GuestRam {
  readonly size: number;
  readonly hostAddr: bigint;
  /** The whole of guest RAM; valid until destroy(). */
  readonly bytes: Uint8Array;
  private destroyed = false;

  constructor(size: number) {
    if (size <= 0 || size % (2 << 20) !== 0) throw new RangeError(`guest RAM size must be a positive multiple of 2 MiB, got ${size}`);
    this.size = size;
    this.hostAddr = mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    madvise(this.hostAddr, size, MADV_HUGEPAGE);
    this.bytes = viewOf(this.hostAddr, size);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    munmap(this.hostAddr, this.size);
  }
}
