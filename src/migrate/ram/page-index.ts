// Where each guest page of a snapshot file lives, built from the RAM
// records' page lists alone (the reader skips page data), so a 1 GiB image
// costs 8 bytes per guest page here.  The one index of a snapshot's pages:
// the inspector looks pages up in it and reads their data on demand
// (page-reader.ts); a lazy restore maps the file's pages into guest memory
// from it (load-lazy.ts), which it can where every stored page is raw data
// at a page-aligned file offset (FORMAT.md "Alignment rule").
//
// One Float64 per guest page says where the page is:
//   ABSENT (-1)        not stored: zero (FORMAT.md "Zero pages")
//   >= 0               raw page data at this file offset
//   <= -2              slot `s` of deflated batch `b`: -(2 + b * MAX_BATCH + s)
// The later record wins, as a loader applies them.
import { FormatError } from '../../errors.js';
import { PAGE_SIZE, RamEncoding } from '../stream/format.js';
import type { RamPagesRecord, RamZeroRecord } from '../stream/records.js';
import { openSnapshot } from '../stream/file.js';
import type { ReaderOptions } from '../stream/reader.js';

export const ABSENT = -1;
/** FORMAT.md's cap on pages per batch; slot numbers fit below it. */
const MAX_BATCH = 16384;

export type RamRecord = (RamPagesRecord | RamZeroRecord) & { readonly offset: number };

export interface DeflatedBatch {
  readonly dataOffset: number;
  readonly dataLength: number;
  readonly pages: number;
}

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

/** `count` stored pages from `gpfn` on, whose data lies back to back from `fileOffset`. */
export interface RamRun {
  gpfn: number;
  count: number;
  fileOffset: number;
}

/** Collects RAM records during the one pass over a file, then indexes them. */
export class PageIndexBuilder {
  private readonly records: RamRecord[] = [];
  private maxPfn = -1;

  add(rec: RamRecord): void {
    this.records.push(rec);
    for (let k = 0; k < rec.pfns.length; k++) if (rec.pfns[k]! > this.maxPfn) this.maxPfn = rec.pfns[k]!;
  }

  /**
   * `guestPages` from the machine configuration, or null to size by the
   * highest page stored; an index of more than `maxPages` is refused.
   */
  build(guestPages: number | null, path: string, maxPages = Infinity): PageIndex {
    const index = buildIndex(this.records, guestPages ?? this.maxPfn + 1, this.maxPfn, path, maxPages);
    this.records.length = 0;
    return index;
  }
}

function outside(records: readonly RamRecord[], n: number, path: string): FormatError {
  for (const rec of records)
    for (let k = 0; k < rec.pfns.length; k++)
      if (rec.pfns[k]! >= n)
        return new FormatError(
          `${path}: page frame 0x${rec.pfns[k]!.toString(16)} in the record at offset ${rec.offset} lies outside guest RAM (${n} pages)`,
        );
  return new FormatError(`${path}: a page frame lies outside guest RAM (${n} pages)`);
}

function buildIndex(
  records: readonly RamRecord[],
  n: number,
  maxPfn: number,
  path: string,
  maxPages: number,
): PageIndex {
  if (maxPfn >= n) throw outside(records, n, path);
  if (n > maxPages)
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
  let stored = 0;
  for (const rec of records) {
    const { pfns } = rec;
    if (rec.kind === 'zero') {
      stats.zeroListed += pfns.length;
      for (let k = 0; k < pfns.length; k++) {
        const p = pfns[k]!;
        if (where[p] !== ABSENT) stored--;
        where[p] = ABSENT;
      }
      continue;
    }
    stats.batches++;
    stats.dataPageRecords += pfns.length;
    stats.storedBytes += rec.dataLength;
    stats.rawBytes += pfns.length * PAGE_SIZE;
    let code: number;
    let step: number;
    if (rec.encoding === RamEncoding.DEFLATE) {
      const b = deflated.length;
      deflated.push({ dataOffset: rec.dataOffset, dataLength: rec.dataLength, pages: pfns.length });
      stats.deflatedBatches++;
      code = -(2 + b * MAX_BATCH);
      step = -1;
    } else if (rec.encoding === RamEncoding.RAW) {
      if (rec.dataLength !== pfns.length * PAGE_SIZE)
        throw new FormatError(
          `${path}: RAM batch at offset ${rec.offset} holds ${rec.dataLength} bytes for ${pfns.length} pages`,
        );
      if (rec.dataOffset % PAGE_SIZE === 0) stats.alignedBatches++;
      code = rec.dataOffset;
      step = PAGE_SIZE;
    } else {
      throw new FormatError(`${path}: RAM batch at offset ${rec.offset} has unknown encoding ${rec.encoding}`);
    }
    for (let k = 0; k < pfns.length; k++) {
      const p = pfns[k]!;
      if (where[p] === ABSENT) stored++;
      where[p] = code + k * step;
    }
  }
  stats.storedPages = stored;
  return new PageIndex(where, deflated, stats);
}

export class PageIndex {
  constructor(
    /** See the file comment; read-only for callers. */
    readonly where: Float64Array,
    private readonly deflated: readonly DeflatedBatch[],
    readonly stats: RamStats,
  ) {}

  /** Indexes `records` (a file's RAM records in stream order) for a guest of `guestPages` pages. */
  static of(records: readonly RamRecord[], guestPages: number, path: string): PageIndex {
    const b = new PageIndexBuilder();
    for (const r of records) b.add(r);
    return b.build(guestPages, path);
  }

  get guestPages(): number {
    return this.where.length;
  }

  /** Batches a restore cannot map (compressed, or raw data not page-aligned); when non-zero, it copies instead. */
  get unmappableBatches(): number {
    return this.stats.batches - this.stats.alignedBatches;
  }

  /** Where a `where` entry below ABSENT points: deflated batch and slot. */
  deflatedSlot(w: number): { batch: DeflatedBatch; index: number; slot: number } {
    const code = -w - 2;
    const index = Math.floor(code / MAX_BATCH);
    return { batch: this.deflated[index]!, index, slot: code - index * MAX_BATCH };
  }

  /** The stored raw pages as runs of consecutive pages whose data is consecutive in the file, in page order. */
  runs(): RamRun[] {
    const runs: RamRun[] = [];
    const { where } = this;
    let last: RamRun | null = null;
    for (let p = 0; p < where.length; p++) {
      const w = where[p]!;
      if (w < 0) continue;
      if (last && last.gpfn + last.count === p && last.fileOffset + last.count * PAGE_SIZE === w) last.count++;
      else runs.push((last = { gpfn: p, count: 1, fileOffset: w }));
    }
    return runs;
  }
}

export interface RamMap {
  /** In page order, stored pages only (the rest are zero). */
  readonly runs: RamRun[];
  /** Batches that cannot be mapped (compressed or unaligned); when non-zero, restore by copying. */
  readonly unmappableBatches: number;
}

/** Lists the runs of a snapshot file without reading page data (the page lists are still checksummed). */
export async function listRamRuns(path: string, guestPages: number, options: ReaderOptions = {}): Promise<RamMap> {
  const file = await openSnapshot(path, { ...options, skipRamData: true });
  try {
    const b = new PageIndexBuilder();
    for await (const rec of file) if (rec.kind === 'ram' || rec.kind === 'zero') b.add(rec);
    const index = b.build(guestPages, path);
    return { runs: index.runs(), unmappableBatches: index.unmappableBatches };
  } finally {
    await file.close();
  }
}
