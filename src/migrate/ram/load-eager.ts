// Loads RAM records of a snapshot file into guest memory.  Used with a reader
// in skipRamData mode, which hands over each record's page list and data
// offset without reading the data.
//
// An uncompressed record is read with one readv straight into its guest
// pages: its frame, head and padding and its page list go to a small buffer,
// each run of consecutive frames is one iovec of guest RAM.  The body
// checksum is then computed over those same bytes, in body order, before the
// machine may start.  Reading into a reused buffer and copying the pages out
// cost about twice as much, most of it 4 KiB page faults taken one by one
// from user space (each a trip through the nested hypervisor), where readv
// leaves only the kernel's own faults (docs/benchmarks.md).  Several reads are
// in flight at once (on libuv's thread pool), so the faults of one record
// are taken while the main thread checksums another.
//
// Records apply in stream order where it matters: a record that names a
// page seen before (a migration stream saved to a file may repeat pages; the
// later copy wins), a RAM_ZERO record and a compressed one first wait for
// every read in flight.
import { readSync, readv } from 'node:fs';
import { FormatError, IoError } from '../../errors.js';
import { addressOf } from '../../kvm/libc.js';
import { crc32, FRAME_BYTES, NATIVE_CRC32_MIN_BYTES, PAGE_SIZE, RamEncoding, readU64 } from '../stream/format.js';
import { nativeCrc32 } from '../native.js';
import { decodeRamPages } from '../stream/ram-body.js';
import type { RamPagesRecord, RamZeroRecord } from '../stream/records.js';
import { describeIoError } from '../stream/byte-sink.js';

/** chunked.ts (and the deflate code it brings) only for RAM_ZERO and compressed records, which a plain snapshot has none of. */
const ramModule = () => import('./chunked.js');

/** Guest RAM as views of at most RAM_VIEW_MAX bytes each (GuestRam.chunks). */
export interface GuestMemory {
  readonly chunks: readonly Uint8Array[];
}

export interface RamLoaderOptions {
  /** Records read at once (default 3; 1 = one at a time, still off the main thread). */
  readonly inFlight?: number;
}

/** iovecs per readv: Linux's IOV_MAX. */
const IOV_MAX = 1024;

/**
 * Reads `iov` (filled in order) from `fd` at `pos`; resolves with the bytes
 * read, fewer only at end of file.  libuv passes at most IOV_MAX iovecs per
 * call and a read may be short, so this loops.
 */
function readvAll(fd: number, iov: Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let i = 0; // first iovec not yet (completely) filled
    let total = 0;
    const step = (): void => {
      if (i >= iov.length) return resolve(total);
      readv(fd, iov.slice(i, i + IOV_MAX), pos + total, (err, n) => {
        if (err) return reject(new IoError(`read failed: ${describeIoError(err)}`, { cause: err }));
        if (n === 0) return resolve(total);
        total += n;
        while (n > 0 && i < iov.length) {
          const len = iov[i]!.length;
          if (n >= len) {
            n -= len;
            i++;
          } else {
            iov[i] = iov[i]!.subarray(n);
            n = 0;
          }
        }
        step();
      });
    };
    step();
  });
}

export class RamLoader {
  private readonly pages: number;
  private readonly inFlight: number;
  /** Pages some record wrote (or is writing): a repeat must wait for the reads in flight. */
  private readonly seen: Uint8Array;
  /** Reads in flight, oldest first; each settles after its checksum was checked. */
  private readonly queue: Array<Promise<void>> = [];
  /** Reusable metadata buffers (frame, head, padding, page list), one per read in flight. */
  private readonly spare: Uint8Array[] = [];
  private failure: unknown = null;
  private body: Uint8Array = new Uint8Array(0);
  /** Each RAM view's address, for the native checksum over pages read in place. */
  private ramAddrs: number[] | undefined;
  /** Pages per RAM view (all views but the last are full). */
  private readonly viewPages: number;

  constructor(
    private readonly fd: number,
    private readonly ram: GuestMemory,
    private readonly path: string,
    opts: RamLoaderOptions = {},
  ) {
    this.pages = ram.chunks.reduce((n, c) => n + Math.floor(c.length / PAGE_SIZE), 0);
    this.viewPages = Math.floor(ram.chunks[0]!.length / PAGE_SIZE);
    this.inFlight = Math.max(1, opts.inFlight ?? 3);
    this.seen = new Uint8Array(this.pages);
  }

  private readExactly(buf: Uint8Array, at: number, what: string): void {
    let got = 0;
    while (got < buf.length) {
      const n = readSync(this.fd, buf, got, buf.length - got, at + got);
      if (n === 0) throw new FormatError(`${this.path}: truncated inside ${what}`);
      got += n;
    }
  }

  /** Rethrows the first failure of a read in flight. */
  private check(): void {
    if (this.failure !== null) throw this.failure;
  }

  /** Waits for every read in flight; throws the first failure. */
  async drain(): Promise<void> {
    while (this.queue.length > 0) await this.queue.shift();
    this.check();
  }

  /** Waits for every read in flight and ignores failures: before guest RAM or the fd goes away after an error. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.queue.splice(0));
  }

  /**
   * Applies one RAM record (`offset` = its frame's offset in the file).  An
   * uncompressed record may still be in flight when this resolves: call
   * drain() before trusting guest memory.
   */
  async apply(rec: (RamPagesRecord | RamZeroRecord) & { readonly offset: number }): Promise<void> {
    this.check();
    const pfns = rec.pfns;
    const where = rec.kind === 'zero' ? 'RAM_ZERO record' : `RAM_PAGES record at offset ${rec.offset}`;
    let repeat = rec.kind === 'zero';
    for (let k = 0; k < pfns.length; k++) {
      const pfn = pfns[k]!;
      if (!(pfn >= 0 && pfn < this.pages))
        throw new FormatError(`${this.path}: ${where}: page frame 0x${pfn.toString(16)} lies outside guest RAM`);
      if (this.seen[pfn] !== 0) repeat = true;
      else this.seen[pfn] = 1;
    }
    if (rec.kind === 'zero') {
      await this.drain();
      (await ramModule()).applyRamRecordChunks(this.ram.chunks, rec);
      return;
    }
    if (rec.encoding !== RamEncoding.RAW) {
      await this.drain();
      this.applyCompressed(rec, where, (await ramModule()).applyRamRecordChunks);
      return;
    }
    if (rec.dataLength !== pfns.length * PAGE_SIZE)
      throw new FormatError(`${this.path}: ${where}: ${rec.dataLength} bytes of data for ${pfns.length} pages`);
    if (repeat) await this.drain();
    while (this.queue.length >= this.inFlight) await this.queue.shift();
    this.check();
    const p = this.readRaw(rec, where);
    // Failures are kept for check()/drain(); no rejection goes unhandled meanwhile.
    const settled = p.catch((e: unknown) => {
      this.failure ??= e;
    });
    this.queue.push(settled);
  }

  /** One readv of the whole record: frame, head and padding, then each run of frames into guest RAM, then the page list. */
  private async readRaw(rec: RamPagesRecord & { readonly offset: number }, where: string): Promise<void> {
    const pfns = rec.pfns;
    const headBytes = FRAME_BYTES + (rec.dataOffset - rec.offset - FRAME_BYTES);
    const tailBytes = pfns.length * 8;
    let meta = this.spare.pop();
    if (!meta || meta.length < headBytes + tailBytes) meta = new Uint8Array(headBytes + tailBytes);
    try {
      const frame = meta.subarray(0, FRAME_BYTES);
      const iov: Uint8Array[] = [frame, meta.subarray(FRAME_BYTES, headBytes)];
      const vp = this.viewPages;
      for (let k = 0; k < pfns.length;) {
        // A run of consecutive frames, cut where one RAM view ends.
        const first = pfns[k]!;
        const view = Math.floor(first / vp);
        let r = 1;
        while (k + r < pfns.length && pfns[k + r] === first + r && Math.floor((first + r) / vp) === view) r++;
        const at = first - view * vp;
        iov.push(this.ram.chunks[view]!.subarray(at * PAGE_SIZE, (at + r) * PAGE_SIZE));
        k += r;
      }
      iov.push(meta.subarray(headBytes, headBytes + tailBytes));
      const want = headBytes + rec.dataLength + tailBytes;
      // readvAll trims the views it filled partly: checksum over fresh ones.
      const views = iov.slice();
      const got = await readvAll(this.fd, iov, rec.offset);
      if (got < want) throw new FormatError(`${this.path}: truncated inside ${where}`);
      const fv = new DataView(frame.buffer, frame.byteOffset, FRAME_BYTES);
      if (crc32(frame.subarray(0, 20)) !== fv.getUint32(20, true) || readU64(fv, 8) !== want - FRAME_BYTES) {
        throw new FormatError(`${this.path}: ${where}: the record changed while it was read`);
      }
      if (this.checksum(views) !== fv.getUint32(16, true))
        throw new FormatError(`${this.path}: ${where}: body checksum mismatch (corrupt data)`);
    } finally {
      this.spare.push(meta);
    }
  }

  /** CRC-32 of views[1..] in order (views[0] is the frame): raw addresses for guest RAM runs when the native helper is there. */
  private checksum(views: Uint8Array[]): number {
    const raw = nativeCrc32()?.crc32At ?? null;
    const chunks = this.ram.chunks;
    let crc = 0;
    if (raw === null) {
      for (let i = 1; i < views.length; i++) crc = crc32(views[i]!, crc);
      return crc;
    }
    this.ramAddrs ??= chunks.map((c) => addressOf(c));
    for (let i = 1; i < views.length; i++) {
      const v = views[i]!;
      const c = v.length >= NATIVE_CRC32_MIN_BYTES ? chunks.findIndex((ch) => ch.buffer === v.buffer) : -1;
      crc = c >= 0 ? raw(crc, this.ramAddrs[c]! + (v.byteOffset - chunks[c]!.byteOffset), v.length) : crc32(v, crc);
    }
    return crc;
  }

  private applyCompressed(
    rec: RamPagesRecord & { readonly offset: number },
    where: string,
    applyRamRecord: (ram: readonly Uint8Array[], r: RamPagesRecord) => number,
  ): void {
    const frame = new Uint8Array(FRAME_BYTES);
    this.readExactly(frame, rec.offset, where);
    const fv = new DataView(frame.buffer);
    const bodyLength = readU64(fv, 8);
    const bodyCrc = fv.getUint32(16, true);
    const bodyAt = rec.offset + FRAME_BYTES;
    if (this.body.length < bodyLength) this.body = Buffer.allocUnsafeSlow(bodyLength);
    const body = this.body.subarray(0, bodyLength);
    this.readExactly(body, bodyAt, where);
    if (crc32(body) !== bodyCrc) throw new FormatError(`${this.path}: ${where}: body checksum mismatch (corrupt data)`);
    let pages: RamPagesRecord;
    try {
      // Inflated here, and no further than the batch's size (decodeRamPages).
      pages = decodeRamPages(body, bodyAt, rec.pfns.length);
    } catch (e) {
      throw e instanceof FormatError ? new FormatError(`${this.path}: ${e.message}`, { cause: e }) : e;
    }
    applyRamRecord(this.ram.chunks, pages);
  }
}
