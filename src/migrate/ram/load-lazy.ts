// Lazy restore of guest RAM from an uncompressed snapshot file: the guest
// starts before its memory is filled, and native/lazy-ram.c (userfaultfd)
// copies each stored page in from the file as a thread touches it, and,
// once the guest runs, the rest in guest order behind them.
//
// Why: under nested KVM 4 KiB page faults are dear, so filling every stored
// page of a large guest was most of a restore's time, all of it before the
// guest could run (docs/benchmarks.md, "RAM encoding").  The file is still checked
// whole before the guest runs: every record's checksum is computed over the
// file read with pread on libuv's thread pool while the machine is built;
// until then only the emulator's own writes (restoring state) fault pages
// in, and a mismatch destroys it all.
import { FormatError, IoError } from '../../errors.js';
import type { GuestRam } from '../../kvm/guest-ram.js';
import { addressOf, MAP_PRIVATE, mmap, munmap, PROT_READ } from '../../kvm/libc.js';
import { nativeLibrary } from '../native.js';
import { crc32, FRAME_BYTES, PAGE_SIZE, readU64 } from '../stream/format.js';
import { PageIndex, type RamRecord } from './page-index.js';
import { fileSource } from '../stream/byte-source.js';
import type { RamPagesRecord } from '../stream/records.js';

/** Not stored: the page is zero. */
const NONE = 0xffff_ffff;

interface LazyLib {
  start: (ram: number, size: number, src: number, index: number) => number;
  prefetch: (h: number) => void;
  wait: { async: (h: number, cb: (err: unknown, r: number) => void) => void };
  cancel: (h: number) => void;
  free: (h: number) => void;
}

let bound: LazyLib | null | undefined;

function lib(): LazyLib | null {
  if (bound !== undefined) return bound;
  bound = null;
  const l = nativeLibrary();
  if (!l) return null;
  try {
    if (l.func('int xk_lazy_available(void)')() !== 1) return null;
    bound = {
      start: l.func('uintptr_t xk_lazy_start(uintptr_t ram, uint64_t size, uintptr_t src, uintptr_t index)'),
      prefetch: l.func('void xk_lazy_prefetch(uintptr_t h)'),
      wait: l.func('int xk_lazy_wait(uintptr_t h)'),
      cancel: l.func('void xk_lazy_cancel(uintptr_t h)'),
      free: l.func('void xk_lazy_free(uintptr_t h)'),
    };
  } catch {
    bound = null; // a library built before lazy-ram.c, or no userfaultfd: restores fill memory first
  }
  return bound;
}

/** Whether a restore can start the guest before its memory is in (native helper and userfaultfd). */
export function lazyRestoreAvailable(): boolean {
  return lib() !== null;
}

/**
 * Where each guest page of `records` is in the file, if a lazy restore can
 * serve every one of them (raw, page-aligned data: FORMAT.md "Alignment
 * rule"), else null.  Page numbers are checked against guest RAM here.
 */
export function lazyRuns(records: readonly RamRecord[], guestPages: number, path: string): PageIndex | null {
  const index = PageIndex.of(records, guestPages, path);
  return index.unmappableBatches === 0 ? index : null;
}

export interface LazyRam {
  /**
   * Every RAM record's checksum, over the file: rejects with a FormatError
   * naming the first record that differs.  The guest must not run before.
   */
  readonly checked: Promise<void>;
  /** Copy the pages nobody touched yet, behind the faults (call once the guest runs). */
  prefetch(): void;
  /** Resolves once every stored page is in guest memory; the file is let go then. */
  readonly done: Promise<void>;
}

/**
 * Registers `ram` (fresh, untouched) so that the native thread fills it from
 * the file mapped read-only, each page from where `pages` (lazyRuns: every
 * stored page raw and page-aligned) puts it, and starts checking `records`
 * (`checked`).  `ram.destroy()` stops the filling first.
 */
export function startLazyRam(
  fd: number,
  fileSize: number,
  pages: PageIndex,
  records: readonly RamRecord[],
  ram: GuestRam,
  path: string,
): LazyRam {
  const l = lib();
  if (!l) throw new Error('startLazyRam: lazyRestoreAvailable() is false');
  // The native side's index: the file page of each guest page, NONE for zero.
  const index = new Uint32Array(ram.size / PAGE_SIZE).fill(NONE);
  const { where } = pages;
  for (let p = 0; p < where.length; p++) {
    const w = where[p]!;
    if (w >= 0) index[p] = w / PAGE_SIZE;
  }
  const mapBytes = Math.ceil(fileSize / PAGE_SIZE) * PAGE_SIZE;
  const map = mmap(mapBytes, PROT_READ, MAP_PRIVATE, fd, 0);
  const base = Number(map);
  const h = l.start(Number(ram.hostAddr), ram.size, base, addressOf(new Uint8Array(index.buffer)));
  if (!h) {
    munmap(map, mapBytes);
    throw new Error('cannot register guest memory with userfaultfd');
  }
  {
    let finished = false;
    const done = new Promise<void>((resolve, reject) => {
      l.wait.async(h, (err, r) => {
        finished = true;
        l.free(h);
        munmap(map, mapBytes);
        if (err) reject(err);
        else if (r !== 0 && r !== -125 /* ECANCELED: the machine went away first */)
          reject(new Error(`filling guest memory failed (${r})`));
        else resolve();
      });
    });
    done.catch(() => undefined); // a caller may never look; failures end the process in the native thread
    ram.onDestroy(() => {
      if (!finished) l.cancel(h);
    });
    const checked = checkRecords(
      fd,
      fileSize,
      records.filter((r): r is RamPagesRecord & { offset: number } => r.kind === 'ram'),
      path,
    );
    checked.catch(() => undefined); // the caller awaits it before the guest may run
    let prefetching = false;
    return {
      checked,
      prefetch: () => {
        if (prefetching || finished) return;
        prefetching = true;
        l.prefetch(h);
      },
      done,
    };
  }
}

/**
 * Each record's frame and body read with pread, two at a time on libuv's
 * thread pool (the main thread builds the machine meanwhile), and checked
 * against the frame's CRC; the first mismatch is reported as the eager
 * loader reports it.  Not through the mapping: a file truncated meanwhile
 * would raise SIGBUS there, where a read just comes back short.
 */
async function checkRecords(
  fd: number,
  fileSize: number,
  records: ReadonlyArray<RamPagesRecord & { offset: number }>,
  path: string,
): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const readAt = async (n: number, at: number, scratch?: Uint8Array): Promise<Uint8Array> => {
    let got: Uint8Array;
    try {
      got = await fileSource(fd, fileSize, at).read(n, scratch);
    } catch (e) {
      throw e instanceof IoError ? new IoError(`cannot read ${path}: ${e.message}`, { cause: e }) : e;
    }
    if (got.length < n) throw new FormatError(`${path}: truncated at offset ${at + got.length}`);
    return got;
  };
  const one = async (): Promise<void> => {
    let buf = new Uint8Array(0);
    while (next < records.length && failure === null) {
      const r = records[next++]!;
      try {
        const frame = await readAt(FRAME_BYTES, r.offset);
        const fv = new DataView(frame.buffer, frame.byteOffset, frame.length);
        // Checked again: the file may have changed since the reader went past it.
        if (crc32(frame.subarray(0, 20)) !== fv.getUint32(20, true))
          throw new FormatError(`${path}: record frame at offset ${r.offset} is corrupt (checksum mismatch)`);
        const length = readU64(fv, 8);
        if (!(r.offset + FRAME_BYTES + length <= fileSize))
          throw new FormatError(`${path}: truncated inside the RAM_PAGES record at offset ${r.offset}`);
        if (buf.length < length) buf = new Uint8Array(length);
        const body = await readAt(length, r.offset + FRAME_BYTES, buf);
        if (crc32(body) !== fv.getUint32(16, true))
          throw new FormatError(
            `${path}: RAM_PAGES record at offset ${r.offset}: body checksum mismatch (corrupt data)`,
          );
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all([one(), one()]);
  if (failure !== null) throw failure;
}
