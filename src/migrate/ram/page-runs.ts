// Where each guest page lives in an uncompressed snapshot file, as runs of
// consecutive pages: a lazy restore (load-lazy.ts) indexes them so that its
// native thread copies each page straight from the read-only mapped file
// into guest memory with UFFDIO_COPY.  Only raw batches whose data is
// page-aligned in the file can be served that way; the rest are counted so
// the caller knows to read the file eagerly instead.
import { FormatError } from '../../errors.js';
import { PAGE_SIZE, RamEncoding } from '../stream/format.js';
import type { StreamRecord } from '../stream/records.js';
import { openSnapshot } from '../stream/file.js';
import type { ReaderOptions } from '../stream/reader.js';

/** `count` pages from `gpfn` on; `fileOffset` null means "these pages are zero". */
export interface RamRun {
  gpfn: number;
  count: number;
  fileOffset: number | null;
}

export interface RamMap {
  /** In stream order: where a page appears twice, the later run wins. */
  readonly runs: RamRun[];
  /** Batches that cannot be mapped (compressed or unaligned); when non-zero, restore by copying. */
  readonly unmappableBatches: number;
}

/** Builds runs record by record; bounds every page by `guestPages` from `basePfn`. */
export class RamRunBuilder {
  readonly runs: RamRun[] = [];
  unmappableBatches = 0;
  constructor(
    readonly guestPages: number,
    readonly basePfn = 0,
  ) {}

  add(record: StreamRecord): void {
    if (record.kind !== 'ram' && record.kind !== 'zero') return;
    const mappable =
      record.kind === 'zero' || (record.encoding === RamEncoding.RAW && record.dataOffset % PAGE_SIZE === 0);
    if (!mappable) this.unmappableBatches++;
    const { pfns } = record;
    for (let k = 0; k < pfns.length; k++) {
      const pfn = pfns[k]!;
      if (!(pfn >= this.basePfn && pfn - this.basePfn < this.guestPages)) {
        throw new FormatError(
          `page frame 0x${pfn.toString(16)} in the record at offset ${record.offset} lies outside guest RAM (${this.guestPages} pages)`,
        );
      }
      if (!mappable) continue;
      const off = record.kind === 'zero' ? null : record.dataOffset + k * PAGE_SIZE;
      const last = this.runs[this.runs.length - 1];
      if (
        last &&
        last.gpfn + last.count === pfn &&
        (off === null
          ? last.fileOffset === null
          : last.fileOffset !== null && last.fileOffset + last.count * PAGE_SIZE === off)
      ) {
        last.count++;
      } else {
        this.runs.push({ gpfn: pfn, count: 1, fileOffset: off });
      }
    }
  }
}

/**
 * Lists the runs of a snapshot file without reading page data (the page
 * lists are still checksummed).  Sections are skipped; use `openSnapshot`
 * with `skipRamData` and a RamRunBuilder to get both in one pass.
 */
export async function listRamRuns(
  path: string,
  guestPages: number,
  options: ReaderOptions & { basePfn?: number } = {},
): Promise<RamMap> {
  const file = await openSnapshot(path, { ...options, skipRamData: true });
  try {
    const b = new RamRunBuilder(guestPages, options.basePfn ?? 0);
    for await (const rec of file) b.add(rec);
    return { runs: b.runs, unmappableBatches: b.unmappableBatches };
  } finally {
    await file.close();
  }
}
