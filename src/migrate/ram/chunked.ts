// Guest RAM of any size, written and loaded a view at a time.  A typed array
// spans at most 4 GiB here, so a bigger guest's RAM is several views
// (GuestRam.chunks); pages keep one numbering across them (RAM offset / 4096),
// so a stream does not show where one view ends.  A guest within one view
// takes the single-view code path unchanged.
import { FormatError } from '../../errors.js';
import { PAGE_SIZE, RamEncoding } from '../stream/format.js';
import { inflateRamData } from '../stream/ram-body.js';
import type { RamPagesRecord, RamZeroRecord } from '../stream/records.js';
import type { StreamWriter } from '../stream/writer.js';
import { applyRamRecord, writeRam, type RamWriteOptions, type RamWriteStats } from './write.js';

/** writeRam over every view in turn: `options` speak of the whole of RAM (bitmap, ranges, progress). */
export async function writeRamChunks(
  writer: StreamWriter,
  chunks: readonly Uint8Array[],
  options: RamWriteOptions = {},
): Promise<RamWriteStats> {
  if (chunks.length === 1) return writeRam(writer, chunks[0]!, options);
  const total: RamWriteStats = { scanned: 0, dataPages: 0, zeroPages: 0, dataBytes: 0 };
  const allPages = chunks.reduce((n, c) => n + c.length / PAGE_SIZE, 0);
  const { bitmap, beforeRange, onProgress } = options;
  let base = (options.basePfn ?? 0) as number;
  let before = 0;
  for (const chunk of chunks) {
    const pages = chunk.length / PAGE_SIZE;
    // A view holds a whole number of bytes of the bitmap (views are multiples of 2 MiB).
    const first = base - (options.basePfn ?? 0);
    const stats = await writeRam(writer, chunk, {
      ...options,
      basePfn: base,
      ...(bitmap ? { bitmap: bitmap.subarray(first / 8, (first + pages) / 8) } : {}),
      ...(beforeRange
        ? { beforeRange: { rangePages: beforeRange.rangePages, call: (f, n) => beforeRange.call(first + f, n) } }
        : {}),
      ...(onProgress
        ? { onProgress: (done: number) => onProgress(before + done, bitmap ? before + done : allPages) }
        : {}),
    });
    total.scanned += stats.scanned;
    total.dataPages += stats.dataPages;
    total.zeroPages += stats.zeroPages;
    total.dataBytes += stats.dataBytes;
    before += stats.scanned;
    base += pages;
  }
  return total;
}

/** The view holding page `pfn`, for views of equal size `viewPages` (all but the last). */
const viewOf = (pfn: number, viewPages: number): number => Math.floor(pfn / viewPages);

/**
 * applyRamRecord for RAM in several views: each page goes to its view.
 * Checks every page number first, as applyRamRecord does; returns the pages applied.
 */
export function applyRamRecordChunks(chunks: readonly Uint8Array[], record: RamPagesRecord | RamZeroRecord): number {
  if (chunks.length === 1) return applyRamRecord(chunks[0]!, record);
  const viewPages = chunks[0]!.length / PAGE_SIZE;
  const totalPages = chunks.reduce((n, c) => n + c.length / PAGE_SIZE, 0);
  const { pfns } = record;
  for (let k = 0; k < pfns.length; k++) {
    const p = pfns[k]!;
    if (!(p >= 0 && p < totalPages && Number.isInteger(p)))
      throw new FormatError(
        `page frame 0x${p.toString(16)} lies outside guest RAM (frames 0..0x${(totalPages - 1).toString(16)})`,
      );
  }
  let data: Uint8Array | null = null;
  if (record.kind === 'ram') {
    const want = pfns.length * PAGE_SIZE;
    if (record.encoding === RamEncoding.DEFLATE) {
      // Exactly the batch's pages, and no further (FORMAT.md).
      data = inflateRamData(record.data, pfns.length, 'RAM batch');
    } else if (record.encoding === RamEncoding.RAW && record.data.length === want) data = record.data;
    else
      throw new FormatError(
        `RAM batch has ${record.data.length} bytes in encoding ${record.encoding} for ${pfns.length} pages`,
      );
  }
  for (let k = 0; k < pfns.length; k++) {
    const p = pfns[k]!;
    const v = viewOf(p, viewPages);
    const at = (p - v * viewPages) * PAGE_SIZE;
    const page = chunks[v]!.subarray(at, at + PAGE_SIZE);
    if (data) page.set(data.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE));
    else page.fill(0);
  }
  return pfns.length;
}
