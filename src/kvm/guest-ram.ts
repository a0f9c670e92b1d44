// Guest RAM: one memfd mapped MAP_SHARED at a single host address, registered
// with the engine as guest-physical 0..size.  The memfd (not anonymous memory)
// lets a worker thread, a snapshot writer or a future process map the very
// same pages.  Transparent huge pages are requested because first touch of 4
// KiB pages is slow under nested KVM (ARCHITECTURE.md).
import { ftruncate, madvise, MADV_HUGEPAGE, MAP_SHARED, memfdCreate, mmap, munmap, closeFd, PROT_READ, PROT_WRITE, viewOf } from './libc.js';

export const PAGE_SIZE = 4096;

export class GuestRam {
  readonly size: number;
  readonly fd: number;
  readonly hostAddr: bigint;
  /** The whole of guest RAM; valid until destroy(). */
  readonly bytes: Uint8Array;
  private destroyed = false;

  constructor(size: number) {
    if (size <= 0 || size % (2 << 20) !== 0) throw new RangeError(`guest RAM size must be a positive multiple of 2 MiB, got ${size}`);
    this.size = size;
    this.fd = memfdCreate('xenkvm-ram');
    ftruncate(this.fd, size);
    this.hostAddr = mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, this.fd, 0);
    madvise(this.hostAddr, size, MADV_HUGEPAGE);
    this.bytes = viewOf(this.hostAddr, size);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    munmap(this.hostAddr, this.size);
    closeFd(this.fd);
  }
}
