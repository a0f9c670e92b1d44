// Guest RAM as records: scan pages (all, or those set in a dirty bitmap),
// leave zero pages out, and send the rest in batches.  Page data is copied
// into the record before it is checksummed, so a vCPU writing the page in the
// meantime (live migration) cannot make a record lie: the page is dirty again
// and goes in a later round.
import { deflateSync } from 'fflate';
import { FormatError } from '../../errors.js';
import { FRAME_BYTES, PAGE_SIZE, RAM_HEAD_BYTES, RamEncoding, RecordType } from '../stream/format.js';
import { encodeZeroBody, fillRamHead, inflateRamData, writePfns } from '../stream/ram-body.js';
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

/** RamWriteOptions checked, with their defaults. */
interface RamPlan {
  readonly batchPages: number;
  readonly base: number;
  readonly compress: boolean;
  readonly level: DeflateLevel;
  readonly listZeros: boolean;
  readonly bitmap: Uint8Array | undefined;
  readonly pages: number;
}

function planRam(ram: Uint8Array, options: RamWriteOptions): RamPlan {
  if (ram.length % PAGE_SIZE !== 0)
    throw new RangeError(`guest RAM size ${ram.length} is not a multiple of ${PAGE_SIZE}`);
  const batchPages = options.batchPages ?? DEFAULT_BATCH_PAGES;
  if (!Number.isInteger(batchPages) || batchPages < 1 || batchPages > 16_384)
    throw new RangeError(`batchPages must be 1..16384, got ${batchPages}`);
  const bitmap = options.bitmap;
  const pages = ram.length / PAGE_SIZE;
  if (bitmap && bitmap.length * 8 < pages)
    throw new RangeError(`bitmap covers ${bitmap.length * 8} pages, RAM has ${pages}`);
  return {
    batchPages,
    base: options.basePfn ?? 0,
    compress: options.compress ?? false,
    level: options.level ?? DEFAULT_DEFLATE_LEVEL,
    listZeros: (options.zeroPages ?? (bitmap ? 'list' : 'omit')) === 'list',
    bitmap,
    pages,
  };
}

export async function writeRam(
  writer: StreamWriter,
  ram: Uint8Array,
  options: RamWriteOptions = {},
): Promise<RamWriteStats> {
  const plan = planRam(ram, options);
  const { bitmap, pages } = plan;
  const batch = new RamBatch(writer, ram, plan, options.buffers ?? new BatchBuffers());
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
        if (batch.visit(i)) await batch.flushFull();
      }
    }
  } else {
    const progress = options.onProgress;
    for (let i = 0; i < pages; i++) {
      if (i >= rangeEnd) enterRange(i);
      if (batch.visit(i)) await batch.flushFull();
      if (progress && (i & 0xffff) === 0xffff) progress(i + 1, pages);
    }
  }
  await batch.finish();
  const stats = batch.stats;
  options.onProgress?.(stats.scanned, bitmap ? stats.scanned : pages);
  return stats;
}

/**
 * The records one writeRam call fills as it scans: a batch of data pages
 * for RAM_PAGES and a list of zero pages for RAM_ZERO, each written when
 * full.  visit() is synchronous per page: an await per page would cost
 * more than the scan (benchRam).
 */
class RamBatch {
  readonly stats: RamWriteStats = { scanned: 0, dataPages: 0, zeroPages: 0, dataBytes: 0 };
  private readonly isZero: (page: number) => boolean;
  private readonly batchPages: number;
  private readonly base: number;
  private readonly listZeros: boolean;
  private readonly pfns: Float64Array;
  private readonly zeros = new Float64Array(ZERO_BATCH);
  private nData = 0;
  private nZero = 0;
  private readonly rawBytes: number;
  // Raw mode fills the record buffer in place; compress mode fills a scratch it deflates from.
  // Raw batch buffers come back through the sink's release callback and are reused: fresh 2 MiB
  // allocations cost a page fault per 4 KiB under nested KVM and doubled encode time (benchRam).
  private buf: Uint8Array;
  private bufData: number;
  private readonly ramAddr: number;
  // Consecutive data pages (a dirty round's usual shape) are copied with one memcpy per run.
  private runFrom = 0; // guest page of the run's first page
  private runAt = 0; // batch slot of the run's first page
  private runLen = 0;

  constructor(
    private readonly writer: StreamWriter,
    ram: Uint8Array,
    private readonly plan: RamPlan,
    private readonly pool: BatchBuffers,
  ) {
    this.isZero = zeroTest(ram);
    this.batchPages = plan.batchPages;
    this.base = plan.base;
    this.listZeros = plan.listZeros;
    this.pfns = new Float64Array(plan.batchPages);
    this.rawBytes = SLACK + plan.batchPages * (PAGE_SIZE + 8);
    this.buf = plan.compress ? new Uint8Array(plan.batchPages * PAGE_SIZE) : pool.take(this.rawBytes);
    this.bufData = pool.addressOf(this.buf) + (plan.compress ? 0 : SLACK);
    this.ramAddr = addressOf(ram);
  }

  /** Takes page `i` into a batch; true when a batch is full (flushFull). */
  visit(i: number): boolean {
    this.stats.scanned++;
    if (this.isZero(i)) {
      this.stats.zeroPages++;
      if (!this.listZeros) return false;
      this.zeros[this.nZero++] = this.base + i;
      return this.nZero === ZERO_BATCH;
    }
    if (this.runLen > 0 && i === this.runFrom + this.runLen) this.runLen++;
    else {
      this.copyRun();
      this.runFrom = i;
      this.runAt = this.nData;
      this.runLen = 1;
    }
    this.pfns[this.nData++] = this.base + i;
    this.stats.dataPages++;
    return this.nData === this.batchPages;
  }

  async flushFull(): Promise<void> {
    if (this.nData === this.batchPages) await this.flushData();
    if (this.nZero === ZERO_BATCH) await this.flushZero();
  }

  /** Writes what is left and gives the batch buffer back. */
  async finish(): Promise<void> {
    if (this.nData > 0) await this.flushData();
    if (this.nZero > 0) await this.flushZero();
    if (!this.plan.compress) this.pool.give(this.buf);
  }

  private copyRun(): void {
    // In bounds: the run's pages are < pages, its slots < batchPages, and `buf` holds SLACK + batchPages pages.
    if (this.runLen > 0)
      copyBytes(
        this.bufData + this.runAt * PAGE_SIZE,
        this.ramAddr + this.runFrom * PAGE_SIZE,
        this.runLen * PAGE_SIZE,
      );
    this.runLen = 0;
  }

  private async flushData(): Promise<void> {
    this.copyRun();
    const n = this.nData;
    this.nData = 0;
    if (this.plan.compress) {
      const { body, dataBytes } = deflatedBody(this.buf, n, this.pfns, this.plan.level);
      this.stats.dataBytes += dataBytes;
      await this.writer.writeRecord(RecordType.RAM_PAGES, body);
      return;
    }
    const body = rawBody(this.buf, n, this.pfns, this.writer);
    this.stats.dataBytes += n * PAGE_SIZE;
    const sent = this.buf;
    this.buf = this.pool.take(this.rawBytes); // the sink owns `sent` until it releases it
    this.bufData = this.pool.addressOf(this.buf) + SLACK;
    await this.writer.writeRecord(RecordType.RAM_PAGES, body, 0, () => this.pool.give(sent));
  }

  private async flushZero(): Promise<void> {
    const body = encodeZeroBody(this.zeros, this.nZero);
    this.nZero = 0;
    await this.writer.writeRecord(RecordType.RAM_ZERO, body);
  }
}

/** A RAM_PAGES body for the first `n` pages of `plain`, deflated unless that does not pay. */
function deflatedBody(
  plain: Uint8Array,
  n: number,
  pfns: Float64Array,
  level: DeflateLevel,
): { body: Uint8Array; dataBytes: number } {
  const pagesData = plain.subarray(0, n * PAGE_SIZE);
  const packed = worthDeflating(pagesData, n, level) ? deflateSync(pagesData, { level }) : pagesData;
  const raw = packed.length >= pagesData.length; // incompressible: store as is rather than grow
  const data = raw ? pagesData : packed;
  const body = new Uint8Array(RAM_HEAD_BYTES + data.length + n * 8);
  body.set(data, RAM_HEAD_BYTES);
  writePfns(body, RAM_HEAD_BYTES + data.length, pfns, n);
  fillRamHead(body, n, raw ? RamEncoding.RAW : RamEncoding.DEFLATE, RAM_HEAD_BYTES, data.length);
  return { body, dataBytes: data.length };
}

/**
 * The RAM_PAGES body around the `n` pages at SLACK in `buf`, in place: its
 * start is chosen so that the data lands on a page boundary of the stream.
 */
function rawBody(buf: Uint8Array, n: number, pfns: Float64Array, writer: StreamWriter): Uint8Array {
  const bodyPos = writer.position + FRAME_BYTES;
  const dataOffset = writer.alignPages
    ? RAM_HEAD_BYTES + ((PAGE_SIZE - ((bodyPos + RAM_HEAD_BYTES) % PAGE_SIZE)) % PAGE_SIZE)
    : RAM_HEAD_BYTES;
  const start = SLACK - dataOffset;
  const pfnOffset = dataOffset + n * PAGE_SIZE;
  const body = buf.subarray(start, start + pfnOffset + n * 8);
  body.fill(0, 0, dataOffset);
  writePfns(body, pfnOffset, pfns, n);
  fillRamHead(body, n, RamEncoding.RAW, dataOffset, n * PAGE_SIZE);
  return body;
}

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
    // Exactly the batch's pages, and no further (FORMAT.md).
    data = inflateRamData(record.data, pfns.length, 'RAM batch');
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
