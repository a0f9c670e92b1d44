// Guest RAM as the emulator reads and writes it: by RAM offset (see
// layout.ts), through views of at most RAM_CHUNK bytes each, because a typed
// array here holds at most 2^32 elements.  Emulator-owned structures
// (shared_info, vcpu_info, time and runstate areas, page-table entries)
// never cross a 4 KiB page, so an access never straddles two chunks.  The
// emulator's own pages (special pages, grant frames) are one more chunk, at
// XEN_PAGES_OFFSET: a sparse slot in the chunk list, so the accessors need no
// second path.
import { RAM_VIEW_MAX as RAM_CHUNK } from '../../kvm/guest-ram.js';
import { NR_XEN_PAGES, XEN_PAGES_OFFSET, type MemoryLayout } from './layout.js';

const XEN_CHUNK = XEN_PAGES_OFFSET / RAM_CHUNK;
export const XEN_PAGES_BYTES = NR_XEN_PAGES * 4096;

export class GuestPhys {
  readonly layout: MemoryLayout;
  readonly size: number;
  /** RAM views by chunk, and the emulator's pages at chunk XEN_CHUNK (a sparse list). */
  readonly chunks: readonly Uint8Array[];
  readonly xenPages: Uint8Array;
  private readonly u32: readonly Uint32Array[];
  private readonly u64: readonly BigUint64Array[];
  private readonly dv: readonly DataView[];

  /**
   * `xenPages`: the emulator's pages (XEN_PAGES_BYTES); a private zeroed
   * buffer when the caller has none (tests on plain memory).
   */
  constructor(layout: MemoryLayout, ram: readonly Uint8Array[], xenPages?: Uint8Array) {
    this.layout = layout;
    this.size = ram.reduce((n, c) => n + c.length, 0);
    if (this.size !== layout.memBytes) throw new RangeError(`RAM views of ${this.size} bytes for ${layout.memBytes}`);
    const xen = xenPages ?? new Uint8Array(XEN_PAGES_BYTES);
    if (xen.length !== XEN_PAGES_BYTES) throw new RangeError(`emulator pages of ${xen.length} bytes`);
    const chunks: Uint8Array[] = [...ram];
    chunks[XEN_CHUNK] = xen;
    this.chunks = chunks;
    this.xenPages = xen;
    const each = <T>(f: (c: Uint8Array) => T): T[] => {
      const out: T[] = ram.map(f);
      out[XEN_CHUNK] = f(xen);
      return out;
    };
    this.u32 = each((c) => new Uint32Array(c.buffer, c.byteOffset, Math.floor(c.length / 4)));
    this.u64 = each((c) => new BigUint64Array(c.buffer, c.byteOffset, Math.floor(c.length / 8)));
    this.dv = each((c) => new DataView(c.buffer, c.byteOffset, c.length));
  }

  /** RAM offset of guest-physical [gpa, gpa+len), or -1 (layout.offsetOf). */
  offsetOf(gpa: number | bigint, len = 1): number {
    return this.layout.offsetOf(gpa, len);
  }

  /** Whether [offset, offset+len) is guest memory inside one view (what the accessors below may touch in one go). */
  holds(offset: number, len: number): boolean {
    if (!(offset >= 0) || !(len > 0)) return false;
    const c = Math.floor(offset / RAM_CHUNK);
    const chunk = this.chunks[c];
    return chunk !== undefined && offset - c * RAM_CHUNK + len <= chunk.length;
  }

  /** The bytes [offset, offset+len) of one chunk: a view, not a copy.  The range must not cross a chunk. */
  bytes(offset: number, len: number): Uint8Array {
    const c = Math.floor(offset / RAM_CHUNK);
    const o = offset - c * RAM_CHUNK;
    return this.chunks[c]!.subarray(o, o + len);
  }

  /** The DataView of the chunk holding `offset` (index it with within()). */
  view(offset: number): DataView {
    return this.dv[Math.floor(offset / RAM_CHUNK)]!;
  }

  /** `offset` within its chunk (pair with view()). */
  within(offset: number): number {
    return offset % RAM_CHUNK;
  }

  getU32(offset: number): number {
    return this.view(offset).getUint32(offset % RAM_CHUNK, true);
  }
  setU32(offset: number, value: number): void {
    this.view(offset).setUint32(offset % RAM_CHUNK, value, true);
  }
  getU64(offset: number): bigint {
    return this.view(offset).getBigUint64(offset % RAM_CHUNK, true);
  }
  setU64(offset: number, value: bigint): void {
    this.view(offset).setBigUint64(offset % RAM_CHUNK, value, true);
  }
  setU8(offset: number, value: number): void {
    this.chunks[Math.floor(offset / RAM_CHUNK)]![offset % RAM_CHUNK] = value;
  }
  fill(value: number, offset: number, len: number): void {
    this.bytes(offset, len).fill(value);
  }

  // Atomic read-modify-writes on guest memory: real locked instructions on
  // the mapped RAM, so they race correctly with the guest's own.
  atomicOr32(offset: number, m: number): number {
    return Atomics.or(this.u32[Math.floor(offset / RAM_CHUNK)]!, (offset % RAM_CHUNK) >>> 2, m);
  }
  atomicAnd32(offset: number, m: number): number {
    return Atomics.and(this.u32[Math.floor(offset / RAM_CHUNK)]!, (offset % RAM_CHUNK) >>> 2, m);
  }
  /** Stores `value` if the word holds `expected`; returns what it held (as Atomics.compareExchange). */
  atomicCompareExchange32(offset: number, expected: number, value: number): number {
    return Atomics.compareExchange(
      this.u32[Math.floor(offset / RAM_CHUNK)]!,
      (offset % RAM_CHUNK) >>> 2,
      expected,
      value,
    );
  }
  atomicLoad32(offset: number): number {
    return Atomics.load(this.u32[Math.floor(offset / RAM_CHUNK)]!, (offset % RAM_CHUNK) >>> 2);
  }
  atomicOr64(offset: number, m: bigint): bigint {
    return Atomics.or(this.u64[Math.floor(offset / RAM_CHUNK)]!, (offset % RAM_CHUNK) >>> 3, m);
  }
  atomicAnd64(offset: number, m: bigint): bigint {
    return Atomics.and(this.u64[Math.floor(offset / RAM_CHUNK)]!, (offset % RAM_CHUNK) >>> 3, m);
  }
  atomicLoad64(offset: number): bigint {
    return Atomics.load(this.u64[Math.floor(offset / RAM_CHUNK)]!, (offset % RAM_CHUNK) >>> 3);
  }
  atomicExchange8(offset: number, value: number): number {
    return Atomics.exchange(this.chunks[Math.floor(offset / RAM_CHUNK)]!, offset % RAM_CHUNK, value);
  }
  atomicLoad8(offset: number): number {
    return Atomics.load(this.chunks[Math.floor(offset / RAM_CHUNK)]!, offset % RAM_CHUNK);
  }
}
