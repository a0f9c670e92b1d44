// Guest pages of a snapshot file read on demand, where its PageIndex says
// they are: raw pages straight from the file, deflated ones by inflating
// their batch (the last one kept, as pages are mostly read in order).  The
// inspector reads this way (shared_info for the port table, memory diff,
// hexdump); a restore loads or maps whole files instead (load-eager.ts,
// load-lazy.ts).
import { inflateRamData } from '../stream/ram-body.js';
import type { FileHandle } from 'node:fs/promises';
import { FormatError } from '../../errors.js';
import { PAGE_SIZE } from '../stream/format.js';
import { ABSENT, type DeflatedBatch, type PageIndex } from './page-index.js';

export class PageReader {
  private cacheBatch = -1;
  private cache: Uint8Array = new Uint8Array(0);

  constructor(
    readonly index: PageIndex,
    private readonly fh: FileHandle,
    readonly path: string,
  ) {}

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

  /** The inflated data of deflated batch number `b` (one batch cached). */
  private async inflatedBatch(b: number, batch: DeflatedBatch): Promise<Uint8Array> {
    if (b === this.cacheBatch) return this.cache;
    const packed = new Uint8Array(batch.dataLength);
    await this.readAt(packed, 0, batch.dataLength, batch.dataOffset);
    // Exactly the batch's pages, and no further: an over-long batch is refused unread.
    const out = inflateRamData(packed, batch.pages, `${this.path}: RAM batch at offset ${batch.dataOffset}`);
    this.cacheBatch = b;
    this.cache = out;
    return out;
  }

  /** Copies page `pfn` into `out` at `at`; returns false (and writes nothing) for a zero page. */
  async readPage(pfn: number, out: Uint8Array, at = 0): Promise<boolean> {
    const { where } = this.index;
    const w = pfn >= 0 && pfn < where.length ? where[pfn]! : ABSENT;
    if (w === ABSENT) return false;
    if (w >= 0) {
      await this.readAt(out, at, PAGE_SIZE, w);
      return true;
    }
    const { batch, index, slot } = this.index.deflatedSlot(w);
    const data = await this.inflatedBatch(index, batch);
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
