// Where each guest page of a snapshot lives, built from the RAM records'
// page lists alone (the reader skips page data), so a 1 GiB image costs
// 8 bytes per guest page here and page data is read only when asked for.
//
// One Float64 per guest page says where the page is:
//   ABSENT (-1)        not stored: zero (FORMAT.md "Zero pages")
//   >= 0               raw page data at this file offset
//   <= -2              slot `s` of deflated batch `b`: -(2 + b * MAX_BATCH + s)
// The later record wins, as a loader applies them.
import type { FileHandle } from 'node:fs/promises';
import { inflateSync } from 'fflate';
import { FormatError } from '../errors.js';
import { PAGE_SIZE, RamEncoding } from '../migrate/index.js';
import type { RamPagesRecord, RamZeroRecord } from '../migrate/index.js';

export const ABSENT = -1;
/** FORMAT.md's cap on pages per batch; slot numbers fit below it. */
const MAX_BATCH = 16384;

interface DeflatedBatch {
  readonly dataOffset: number;
  readonly dataLength: number;
  readonly pages: number;
}

type RamRecord = (RamPagesRecord | RamZeroRecord) & { readonly offset: number };

export interface RamStats {
  /** Guest pages (from the machine configuration, else the highest stored page + 1). */
  guestPages: number;
  /** Distinct pages stored with data (the last copy of each counts). */
  storedPages: number;
  /** Page records in the file, repeats included. */
  dataPageRecords: number;
  /** Pages named in RAM_ZERO records. */
  zeroListed: number;
  /** Page data bytes as stored (compressed size for deflated batches). */
  storedBytes: number;
  /** Bytes those pages hold uncompressed (4096 per page record). */
  rawBytes: number;
  batches: number;
  deflatedBatches: number;
  /** Raw batches whose data is page-aligned in the file (mappable at restore). */
  alignedBatches: number;
}

/** Collects RAM records during the one pass over a file, then indexes them. */
export class PageIndexBuilder {
  private readonly records: RamRecord[] = [];
  private maxPfn = -1;

  add(rec: RamRecord): void {
    this.records.push(rec);
    for (let k = 0; k < rec.pfns.length; k++) if (rec.pfns[k]! > this.maxPfn) this.maxPfn = rec.pfns[k]!;
  }

  /** `guestPages` from the machine configuration, or null to size by the highest page stored. */
  build(guestPages: number | null, fh: FileHandle, path: string): PageIndex {
    const n = guestPages ?? this.maxPfn + 1;
    if (this.maxPfn >= n)
      throw new FormatError(`${path}: page frame 0x${this.maxPfn.toString(16)} lies outside guest RAM (${n} pages)`);
    // Without a machine configuration the size comes from the file: bound it before allocating.
    if (n > 1 << 28)
      throw new FormatError(`${path}: guest RAM of ${n} pages is beyond what the inspector indexes (1 TiB)`);
    const where = new Float64Array(n).fill(ABSENT);
    const deflated: DeflatedBatch[] = [];
    const stats: RamStats = {
      guestPages: n,
      storedPages: 0,
      dataPageRecords: 0,
      zeroListed: 0,
      storedBytes: 0,
      rawBytes: 0,
      batches: 0,
      deflatedBatches: 0,
      alignedBatches: 0,
    };
    for (const rec of this.records) {
      const { pfns } = rec;
      if (rec.kind === 'zero') {
        stats.zeroListed += pfns.length;
        for (let k = 0; k < pfns.length; k++) where[pfns[k]!] = ABSENT;
        continue;
      }
      stats.batches++;
      stats.dataPageRecords += pfns.length;
      stats.storedBytes += rec.dataLength;
      stats.rawBytes += pfns.length * PAGE_SIZE;
      if (rec.encoding === RamEncoding.DEFLATE) {
        const b = deflated.length;
        deflated.push({ dataOffset: rec.dataOffset, dataLength: rec.dataLength, pages: pfns.length });
        stats.deflatedBatches++;
        for (let k = 0; k < pfns.length; k++) where[pfns[k]!] = -(2 + b * MAX_BATCH + k);
      } else if (rec.encoding === RamEncoding.RAW) {
        if (rec.dataLength !== pfns.length * PAGE_SIZE)
          throw new FormatError(
            `${path}: RAM batch at offset ${rec.offset} holds ${rec.dataLength} bytes for ${pfns.length} pages`,
          );
        if (rec.dataOffset % PAGE_SIZE === 0) stats.alignedBatches++;
        for (let k = 0; k < pfns.length; k++) where[pfns[k]!] = rec.dataOffset + k * PAGE_SIZE;
      } else {
        throw new FormatError(`${path}: RAM batch at offset ${rec.offset} has unknown encoding ${rec.encoding}`);
      }
    }
    for (let p = 0; p < n; p++) if (where[p] !== ABSENT) stats.storedPages++;
    this.records.length = 0;
    return new PageIndex(fh, path, where, deflated, stats);
  }
}

export class PageIndex {
  private cacheBatch = -1;
  private cache: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    /** See the file comment; read-only for callers. */
    readonly where: Float64Array,
    private readonly deflated: readonly DeflatedBatch[],
    readonly stats: RamStats,
  ) {}

  get guestPages(): number {
    return this.where.length;
  }

  /** Reads `length` bytes at `position` of the file into `out` at `at`; short files are a FormatError. */
  async readAt(out: Uint8Array, at: number, length: number, position: number): Promise<void> {
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.fh.read(out, at + got, length - got, position + got);
      if (bytesRead === 0)
        throw new FormatError(`${this.path}: truncated: page data at offset ${position + got} is missing`);
      got += bytesRead;
    }
  }

  /** The inflated data of deflated batch `b` (one batch cached: pages are read in order). */
  async inflatedBatch(b: number): Promise<Uint8Array> {
    if (b === this.cacheBatch) return this.cache;
    const batch = this.deflated[b]!;
    const packed = new Uint8Array(batch.dataLength);
    await this.readAt(packed, 0, batch.dataLength, batch.dataOffset);
    const want = batch.pages * PAGE_SIZE;
    let out: Uint8Array;
    try {
      out = inflateSync(packed, { out: new Uint8Array(want) });
    } catch (err) {
      throw new FormatError(
        `${this.path}: RAM batch at offset ${batch.dataOffset} does not inflate (${err instanceof Error ? err.message : String(err)})`,
        { cause: err },
      );
    }
    if (out.length !== want)
      throw new FormatError(
        `${this.path}: RAM batch at offset ${batch.dataOffset} inflates to ${out.length} bytes, expected ${want}`,
      );
    this.cacheBatch = b;
    this.cache = out;
    return out;
  }

  /** Copies page `pfn` into `out` at `at`; returns false (and writes nothing) for a zero page. */
  async readPage(pfn: number, out: Uint8Array, at = 0): Promise<boolean> {
    const w = pfn >= 0 && pfn < this.where.length ? this.where[pfn]! : ABSENT;
    if (w === ABSENT) return false;
    if (w >= 0) {
      await this.readAt(out, at, PAGE_SIZE, w);
      return true;
    }
    const code = -w - 2;
    const b = Math.floor(code / MAX_BATCH);
    const slot = code - b * MAX_BATCH;
    const data = await this.inflatedBatch(b);
    out.set(data.subarray(slot * PAGE_SIZE, (slot + 1) * PAGE_SIZE), at);
    return true;
  }

  /** Guest bytes `gpa .. gpa+length` (zero where no page is stored). */
  async readGuest(gpa: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    const page = new Uint8Array(PAGE_SIZE);
    for (let off = 0; off < length;) {
      const addr = gpa + off;
      const pfn = Math.floor(addr / PAGE_SIZE);
      const inPage = addr - pfn * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, length - off);
      if (await this.readPage(pfn, page)) out.set(page.subarray(inPage, inPage + n), off);
      off += n;
    }
    return out;
  }
}
