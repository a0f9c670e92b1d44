// Guest RAM as records: scan pages (all, or those set in a dirty bitmap),
// leave zero pages out, and send the rest in batches.  Page data is copied
// into the record before it is checksummed, so a vCPU writing the page in the
// meantime (live migration) cannot make a record lie: the page is dirty again
// and goes in a later round.
import { deflateSync, inflateSync } from 'fflate';
import { FormatError } from '../../errors.js';
import { FRAME_BYTES, PAGE_SIZE, RAM_HEAD_BYTES, RamEncoding, RecordType } from '../stream/format.js';
import { encodeZeroBody, fillRamHead, writePfns } from '../stream/ram-body.js';
import type { RamPagesRecord, RamZeroRecord } from '../stream/records.js';
import type { StreamWriter } from '../stream/writer.js';
import { zeroTest } from './zero.js';
import { addressOf, copyBytes } from '../../kvm/libc.js';

/** 512 pages = 2 MiB per batch: large enough that framing costs nothing, small enough to pipeline (benchRam). */
export const DEFAULT_BATCH_PAGES = 512;
/** 4096 page numbers (32 KiB) per RAM_ZERO record. */
const ZERO_BATCH = 4096;
/** fflate level 1: benchRam "deflate level" shows higher levels cost more time than they save bytes. */
export const DEFAULT_DEFLATE_LEVEL = 1;
/**
 * Before deflating a batch, deflate SAMPLE_PAGES of its pages; if they shrink
 * by less than 10%, store the batch raw.  Random pages do not compress at all
 * and deflating them is slow (benchRam "encode to file deflate";
 * docs/benchmarks.md).
 */
const SAMPLE_PAGES = 4;
const SAMPLE_WORTH = 0.9;

function worthDeflating(data: Uint8Array, pages: number, level: DeflateLevel): boolean {
  if (pages <= SAMPLE_PAGES * 2) return true;
  const step = Math.floor(pages / SAMPLE_PAGES);
  let packed = 0;
  for (let k = 0; k < SAMPLE_PAGES; k++) {
    const at = k * step * PAGE_SIZE;
    packed += deflateSync(data.subarray(at, at + PAGE_SIZE), { level }).length;
  }
  return packed < SAMPLE_WORTH * SAMPLE_PAGES * PAGE_SIZE;
}

type DeflateLevel = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;

export interface RamWriteOptions {
  /** Pages to send, bit i of byte i>>3 for page i (KVM's dirty log layout).  Absent: every page. */
  readonly bitmap?: Uint8Array;
  /** Deflate each batch with fflate; the data is then not page-aligned. */
  readonly compress?: boolean;
  readonly level?: DeflateLevel;
  /**
   * 'omit': zero pages are not written at all (a snapshot: absent pages are
   * zero).  'list': they are named in RAM_ZERO records (a migration round,
   * where the destination may hold an older copy).  Default: 'omit' without
   * a bitmap, 'list' with one.
   */
  readonly zeroPages?: 'omit' | 'list';
  readonly batchPages?: number;
  /** Page frame number of `ram[0]`.  Default 0. */
  readonly basePfn?: number;
  /** Called now and then (every 64 Ki pages scanned and at the end) with pages scanned and pages to scan. */
  readonly onProgress?: (scanned: number, total: number) => void;
  /**
   * Raw batch buffers to take from and give back, kept across calls (a live
   * migration's rounds).  Default: a pool for this call only.
   */
  readonly buffers?: BatchBuffers;
  /**
   * Called with (first page, rangePages) before the scan looks at any page
   * of each aligned range of `rangePages` pages it visits: a live migration
   * re-arms dirty tracking of those pages there (DirtyLog.clear), so that a
   * write after the call makes the page go again and a write before it is
   * in the copy.
   */
  readonly beforeRange?: { readonly rangePages: number; readonly call: (first: number, count: number) => void };
}

/**
 * Raw batch buffers that outlive one writeRam call.  A live migration writes
 * RAM many times; with a pool per call, every round allocated fresh 2 MiB
 * buffers, which costs a page fault per 4 KiB on first touch (nested KVM)
 * and grows V8's external memory until it collects garbage, and the last
 * round runs with the guest paused.
 */
export class BatchBuffers {
  private readonly free: Uint8Array[] = [];
  private readonly addrs = new WeakMap<Uint8Array, number>();
  private bytes = 0;

  /** A buffer of at least `bytes`, and its address (valid while the buffer lives: Buffer.allocUnsafeSlow memory does not move). */
  take(bytes: number): Uint8Array {
    if (bytes !== this.bytes) {
      this.free.length = 0;
      this.bytes = bytes;
    }
    const b = this.free.pop();
    if (b) return b;
    const fresh = Buffer.allocUnsafeSlow(bytes);
    this.addrs.set(fresh, addressOf(fresh));
    return fresh;
  }

  addressOf(b: Uint8Array): number {
    return this.addrs.get(b) ?? addressOf(b);
  }

  give(b: Uint8Array): void {
    if (b.length === this.bytes) this.free.push(b);
  }
}

export interface RamWriteStats {
  /** Pages looked at (selected by the bitmap, or all). */
  scanned: number;
  dataPages: number;
  zeroPages: number;
  /** Bytes of page data after compression, as written. */
  dataBytes: number;
}

/** Data starts this far into the batch buffer: room for the head and up to a page of padding before it. */
const SLACK = 2 * PAGE_SIZE;

export async function writeRam(
  writer: StreamWriter,
  ram: Uint8Array,
  options: RamWriteOptions = {},
): Promise<RamWriteStats> {
  if (ram.length % PAGE_SIZE !== 0)
    throw new RangeError(`guest RAM size ${ram.length} is not a multiple of ${PAGE_SIZE}`);
  const batchPages = options.batchPages ?? DEFAULT_BATCH_PAGES;
  if (!Number.isInteger(batchPages) || batchPages < 1 || batchPages > 16_384)
    throw new RangeError(`batchPages must be 1..16384, got ${batchPages}`);
  const base = options.basePfn ?? 0;
  const compress = options.compress ?? false;
  const listZeros = (options.zeroPages ?? (options.bitmap ? 'list' : 'omit')) === 'list';
  const bitmap = options.bitmap;
  const pages = ram.length / PAGE_SIZE;
  if (bitmap && bitmap.length * 8 < pages)
    throw new RangeError(`bitmap covers ${bitmap.length * 8} pages, RAM has ${pages}`);
  const isZero = zeroTest(ram);
  const stats: RamWriteStats = { scanned: 0, dataPages: 0, zeroPages: 0, dataBytes: 0 };

  const pfns = new Float64Array(batchPages);
  const zeros = new Float64Array(ZERO_BATCH);
  let nData = 0;
  let nZero = 0;
  // Raw mode fills the record buffer in place; compress mode fills a scratch it deflates from.
  // Raw batch buffers come back through the sink's release callback and are reused: fresh 2 MiB
  // allocations cost a page fault per 4 KiB under nested KVM and doubled encode time (benchRam).
  const rawBytes = SLACK + batchPages * (PAGE_SIZE + 8);
  const pool = options.buffers ?? new BatchBuffers();
  const takeRaw = (): Uint8Array => pool.take(rawBytes);
  let buf = compress ? new Uint8Array(batchPages * PAGE_SIZE) : takeRaw();
  let bufData = pool.addressOf(buf) + (compress ? 0 : SLACK);
  const ramAddr = addressOf(ram);

  // Consecutive data pages (a dirty round's usual shape) are copied with one memcpy per run.
  let runFrom = 0; // guest page of the run's first page
  let runAt = 0; // batch slot of the run's first page
  let runLen = 0;
  const copyRun = (): void => {
    // In bounds: the run's pages are < pages, its slots < batchPages, and `buf` holds SLACK + batchPages pages.
    if (runLen > 0) copyBytes(bufData + runAt * PAGE_SIZE, ramAddr + runFrom * PAGE_SIZE, runLen * PAGE_SIZE);
    runLen = 0;
  };

  const flushData = async (): Promise<void> => {
    copyRun();
    const n = nData;
    nData = 0;
    let body: Uint8Array;
    if (compress) {
      const level = options.level ?? DEFAULT_DEFLATE_LEVEL;
      const plain = buf.subarray(0, n * PAGE_SIZE);
      const packed = worthDeflating(plain, n, level) ? deflateSync(plain, { level }) : plain;
      const raw = packed.length >= plain.length; // incompressible: store as is rather than grow
      const data = raw ? plain : packed;
      body = new Uint8Array(RAM_HEAD_BYTES + data.length + n * 8);
      body.set(data, RAM_HEAD_BYTES);
      writePfns(body, RAM_HEAD_BYTES + data.length, pfns, n);
      fillRamHead(body, n, raw ? RamEncoding.RAW : RamEncoding.DEFLATE, RAM_HEAD_BYTES, data.length);
      stats.dataBytes += data.length;
    } else {
      // Choose the body's start in `buf` so that the data, fixed at SLACK, lands on a page boundary of the stream.
      const bodyPos = writer.position + FRAME_BYTES;
      const dataOffset = writer.alignPages
        ? RAM_HEAD_BYTES + ((PAGE_SIZE - ((bodyPos + RAM_HEAD_BYTES) % PAGE_SIZE)) % PAGE_SIZE)
        : RAM_HEAD_BYTES;
      const start = SLACK - dataOffset;
      const pfnOffset = dataOffset + n * PAGE_SIZE;
      body = buf.subarray(start, start + pfnOffset + n * 8);
      body.fill(0, 0, dataOffset);
      writePfns(body, pfnOffset, pfns, n);
      fillRamHead(body, n, RamEncoding.RAW, dataOffset, n * PAGE_SIZE);
      stats.dataBytes += n * PAGE_SIZE;
      const sent = buf;
      buf = takeRaw(); // the sink owns `sent` until it releases it
      bufData = pool.addressOf(buf) + SLACK;
      await writer.writeRecord(RecordType.RAM_PAGES, body, 0, () => pool.give(sent));
      return;
    }
    await writer.writeRecord(RecordType.RAM_PAGES, body);
  };
  const flushZero = async (): Promise<void> => {
    const body = encodeZeroBody(zeros, nZero);
    nZero = 0;
    await writer.writeRecord(RecordType.RAM_ZERO, body);
  };

  // Synchronous per page; an await per page would cost more than the scan (benchRam).
  const visit = (i: number): boolean => {
    stats.scanned++;
    if (isZero(i)) {
      stats.zeroPages++;
      if (!listZeros) return false;
      zeros[nZero++] = base + i;
      return nZero === ZERO_BATCH;
    }
    if (runLen > 0 && i === runFrom + runLen) runLen++;
    else {
      copyRun();
      runFrom = i;
      runAt = nData;
      runLen = 1;
    }
    pfns[nData++] = base + i;
    stats.dataPages++;
    return nData === batchPages;
  };
  const flushFull = async (): Promise<void> => {
    if (nData === batchPages) await flushData();
    if (nZero === ZERO_BATCH) await flushZero();
  };

  const ranges = options.beforeRange;
  const rangePages = ranges?.rangePages ?? Infinity;
  let rangeEnd = ranges ? 0 : Infinity; // first page past the range last announced
  const enterRange = (i: number): void => {
    const first = i - (i % rangePages);
    ranges!.call(first, rangePages);
    rangeEnd = first + rangePages;
  };

  if (bitmap) {
    for (let byte = 0; byte < bitmap.length; byte++) {
      for (let bits = bitmap[byte]!; bits !== 0; bits &= bits - 1) {
        const i = byte * 8 + (31 - Math.clz32(bits & -bits));
        if (i >= pages) continue;
        if (i >= rangeEnd) enterRange(i);
        if (visit(i)) await flushFull();
      }
    }
  } else {
    const progress = options.onProgress;
    for (let i = 0; i < pages; i++) {
      if (i >= rangeEnd) enterRange(i);
      if (visit(i)) await flushFull();
      if (progress && (i & 0xffff) === 0xffff) progress(i + 1, pages);
    }
  }
  if (nData > 0) await flushData();
  if (nZero > 0) await flushZero();
  if (!compress) pool.give(buf);
  options.onProgress?.(stats.scanned, bitmap ? stats.scanned : pages);
  return stats;
}

let scratch = new Uint8Array(0);

/**
 * Copies (or inflates) one RAM record into `ram`, whose first page is
 * `basePfn`.  Every page number is checked before the first byte is
 * written, so a hostile record changes nothing and throws FormatError.
 * Returns the number of pages written.
 */
export function applyRamRecord(ram: Uint8Array, record: RamPagesRecord | RamZeroRecord, basePfn = 0): number {
  const pages = Math.floor(ram.length / PAGE_SIZE);
  const { pfns } = record;
  for (let k = 0; k < pfns.length; k++) {
    const idx = pfns[k]! - basePfn;
    if (!(idx >= 0 && idx < pages)) {
      throw new FormatError(
        `page frame 0x${pfns[k]!.toString(16)} lies outside guest RAM (frames 0x${basePfn.toString(16)}..0x${(basePfn + pages - 1).toString(16)})`,
      );
    }
  }
  if (record.kind === 'zero') {
    for (let k = 0; k < pfns.length; k++)
      ram.fill(0, (pfns[k]! - basePfn) * PAGE_SIZE, (pfns[k]! - basePfn + 1) * PAGE_SIZE);
    return pfns.length;
  }
  const want = pfns.length * PAGE_SIZE;
  let data = record.data;
  if (record.encoding === RamEncoding.DEFLATE) {
    if (scratch.length < want) scratch = new Uint8Array(want);
    let out: Uint8Array;
    try {
      out = inflateSync(record.data, { out: scratch.subarray(0, want) });
    } catch (err) {
      throw new FormatError(`RAM batch does not inflate: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
    if (out.length !== want)
      throw new FormatError(`RAM batch inflates to ${out.length} bytes, expected ${want} for ${pfns.length} pages`);
    data = out;
  } else if (record.encoding !== RamEncoding.RAW || data.length !== want) {
    throw new FormatError(`RAM batch has ${data.length} bytes in encoding ${record.encoding} for ${pfns.length} pages`);
  }
  copyPages(ram, data, pfns, basePfn);
  return pfns.length;
}

/**
 * Copies page k of `data` to frame pfns[k] of `ram`, a run of consecutive
 * frames at a time.  The caller has checked every frame against `ram` and
 * that `data` holds pfns.length pages.
 */
export function copyPages(ram: Uint8Array, data: Uint8Array, pfns: Float64Array, basePfn = 0): void {
  if (data.length < pfns.length * PAGE_SIZE)
    throw new RangeError(`copyPages: ${data.length} bytes of data for ${pfns.length} pages`);
  const ramAddr = addressOf(ram);
  const dataAddr = addressOf(data);
  for (let k = 0; k < pfns.length;) {
    let r = 1;
    while (k + r < pfns.length && pfns[k + r] === pfns[k]! + r) r++;
    copyBytes(ramAddr + (pfns[k]! - basePfn) * PAGE_SIZE, dataAddr + k * PAGE_SIZE, r * PAGE_SIZE);
    k += r;
  }
}
