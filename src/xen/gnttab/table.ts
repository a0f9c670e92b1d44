// The grant table's bookkeeping, shared by every thread: the version in
// force, how many frames the table has, and the guest frame (gpfn) each
// grant frame is mapped at.  The entries themselves live in the frames, which
// are emulator pages (memory/layout.ts "Xen pages"); this table is what lets
// every thread's MemoryLayout find a frame the guest mapped outside RAM
// (docs/xen-abi.md, "Grant tables").  Words are read and written whole; the
// lock serialises changes (grow, map, restore) between vCPU threads.
import { MAX_GRANT_FRAMES, NR_SPECIAL_PAGES, xenPageOffset, type MappedFrames } from '../memory/layout.js';

/** Entries of 8 bytes (grant_entry_v1) per 4 KiB frame. */
export const GRANT_ENTRIES_PER_FRAME = 512;
export const GRANT_ENTRY_V1_SIZE = 8;
/** Highest gpfn a frame may be mapped at: stored as gpfn + 1 in an Int32 word (guest-physical below 8 TiB). */
export const MAX_FRAME_GPFN = 0x7fff_fffe;
/** The only grant table version this platform offers (Xen built or configured with max version 1). */
export const GNTTAB_MAX_VERSION = 1;
/** A fresh table's frames: Xen's INITIAL_NR_GRANT_FRAMES. */
export const INITIAL_NR_GRANT_FRAMES = 1;

const W = { version: 0, nrFrames: 1, lock: 2, gpfn: 8 } as const;
const WORDS = W.gpfn + MAX_GRANT_FRAMES;

/** The RAM offset (GuestPhys) of grant frame `frame`. */
export const grantFrameOffset = (frame: number): number => xenPageOffset(NR_SPECIAL_PAGES + frame);

export class GrantTable implements MappedFrames {
  readonly sab: SharedArrayBuffer;
  private readonly w: Int32Array;

  constructor(sab?: SharedArrayBuffer) {
    this.sab = sab ?? new SharedArrayBuffer(WORDS * 4);
    this.w = new Int32Array(this.sab);
    if (!sab) this.reset();
  }

  /** A fresh domain's table: version 1, one frame, nothing mapped. */
  reset(): void {
    Atomics.store(this.w, W.version, 1);
    Atomics.store(this.w, W.nrFrames, INITIAL_NR_GRANT_FRAMES);
    for (let f = 0; f < MAX_GRANT_FRAMES; f++) Atomics.store(this.w, W.gpfn + f, 0);
  }

  get version(): number {
    return Atomics.load(this.w, W.version);
  }
  set version(v: number) {
    Atomics.store(this.w, W.version, v);
  }
  /** Frames the table has (Xen's nr_grant_frames): entries 0 .. nrFrames*512-1 exist. */
  get nrFrames(): number {
    return Atomics.load(this.w, W.nrFrames);
  }
  set nrFrames(n: number) {
    Atomics.store(this.w, W.nrFrames, n);
  }
  get nrEntries(): number {
    return this.nrFrames * GRANT_ENTRIES_PER_FRAME;
  }

  /** The gpfn frame `frame` is mapped at, or -1. */
  gpfnOf(frame: number): number {
    return Atomics.load(this.w, W.gpfn + frame) - 1;
  }
  setGpfn(frame: number, gpfn: number): void {
    Atomics.store(this.w, W.gpfn + frame, gpfn + 1);
  }

  /** The frame mapped at `gpfn`, or -1. */
  frameAt(gpfn: number): number {
    const want = gpfn + 1;
    for (let f = 0; f < MAX_GRANT_FRAMES; f++) if (Atomics.load(this.w, W.gpfn + f) === want) return f;
    return -1;
  }

  /** MemoryLayout's hook: the offset of guest-physical [g, g+len) when it lies in one mapped frame, else -1. */
  offsetOf(g: number, len: number): number {
    const within = g % 4096;
    if (within + len > 4096) return -1;
    const frame = this.frameAt(Math.floor(g / 4096));
    return frame < 0 ? -1 : grantFrameOffset(frame) + within;
  }

  /** Serialises table changes between threads (they are rare: setup, map, restore). */
  withLock<T>(fn: () => T): T {
    while (Atomics.compareExchange(this.w, W.lock, 0, 1) !== 0) Atomics.wait(this.w, W.lock, 1, 1);
    try {
      return fn();
    } finally {
      Atomics.store(this.w, W.lock, 0);
      Atomics.notify(this.w, W.lock, 1);
    }
  }
}
