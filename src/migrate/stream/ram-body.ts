// Encoding and decoding of RAM_PAGES and RAM_ZERO bodies (FORMAT.md "RAM
// records").  Decoding trusts nothing: every length and offset is checked
// against the body before a view is made.
import { inflateRawSync } from 'node:zlib';
import { FormatError } from '../../errors.js';
import type { RamPagesRecord, RamZeroRecord } from './records.js';
import { crc32, PAGE_SIZE, RAM_HEAD_BYTES, RamEncoding, readU64, writeU64, ZERO_HEAD_BYTES } from './format.js';

/** Fills the 24-byte head of a RAM_PAGES body whose pfn list is already in place. */
export function fillRamHead(
  body: Uint8Array,
  count: number,
  encoding: number,
  dataOffset: number,
  dataLength: number,
): void {
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const pfnOffset = dataOffset + dataLength;
  view.setUint32(0, count, true);
  view.setUint32(4, encoding & 0xff, true);
  view.setUint32(8, dataOffset, true);
  view.setUint32(12, dataLength, true);
  view.setUint32(16, pfnOffset, true);
  view.setUint32(20, crc32(body.subarray(pfnOffset, pfnOffset + count * 8), crc32(body.subarray(0, 20))), true);
}

export function writePfns(body: Uint8Array, at: number, pfns: ArrayLike<number>, count: number): void {
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  for (let i = 0; i < count; i++) writeU64(view, at + i * 8, pfns[i]!);
}

export function encodeZeroBody(pfns: ArrayLike<number>, count: number): Uint8Array {
  const body = new Uint8Array(ZERO_HEAD_BYTES + count * 8);
  new DataView(body.buffer).setUint32(0, count, true);
  writePfns(body, ZERO_HEAD_BYTES, pfns, count);
  return body;
}

function readPfns(view: DataView, at: number, count: number, where: string): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const pfn = readU64(view, at + i * 8);
    if (Number.isNaN(pfn)) throw new FormatError(`${where}: page frame number ${i} is too large`);
    out[i] = pfn;
  }
  return out;
}

export interface RamHead {
  readonly count: number;
  readonly encoding: number;
  readonly dataOffset: number;
  readonly dataLength: number;
  readonly pfnOffset: number;
}

/** Checks a RAM_PAGES head (first 24 bytes of `head`) against the body length. */
export function parseRamHead(head: Uint8Array, bodyLength: number, where: string, maxPages: number): RamHead {
  if (bodyLength < RAM_HEAD_BYTES || head.length < RAM_HEAD_BYTES)
    throw new FormatError(`${where}: body of ${bodyLength} bytes is shorter than its ${RAM_HEAD_BYTES}-byte head`);
  const view = new DataView(head.buffer, head.byteOffset, RAM_HEAD_BYTES);
  const count = view.getUint32(0, true);
  const encoding = view.getUint8(4);
  const dataOffset = view.getUint32(8, true);
  const dataLength = view.getUint32(12, true);
  const pfnOffset = view.getUint32(16, true);
  if (count === 0 || count > maxPages)
    throw new FormatError(`${where}: ${count} pages in one batch (limit maxBatchPages=${maxPages})`);
  if (encoding !== RamEncoding.RAW && encoding !== RamEncoding.DEFLATE)
    throw new FormatError(`${where}: unknown page encoding ${encoding}`);
  if ((view.getUint32(4, true) & 0xffffff00) !== 0) throw new FormatError(`${where}: reserved head bytes are not zero`);
  if (dataOffset < RAM_HEAD_BYTES || pfnOffset !== dataOffset + dataLength || pfnOffset + count * 8 !== bodyLength) {
    throw new FormatError(
      `${where}: inconsistent layout (data at ${dataOffset}+${dataLength}, pfns at ${pfnOffset}, body ${bodyLength} bytes)`,
    );
  }
  if (encoding === RamEncoding.RAW && dataLength !== count * PAGE_SIZE) {
    throw new FormatError(`${where}: ${dataLength} bytes of raw data for ${count} pages`);
  }
  return { count, encoding, dataOffset, dataLength, pfnOffset };
}

/** Checks the head's own checksum (head and page list) and decodes the page list. */
export function decodeRamPfns(head: Uint8Array, pfnBytes: Uint8Array, count: number, where: string): Float64Array {
  const stored = new DataView(head.buffer, head.byteOffset, RAM_HEAD_BYTES).getUint32(20, true);
  if (crc32(pfnBytes, crc32(head.subarray(0, 20))) !== stored)
    throw new FormatError(`${where}: page list checksum mismatch (corrupt data)`);
  return readPfns(new DataView(pfnBytes.buffer, pfnBytes.byteOffset, pfnBytes.length), 0, count, where);
}

/**
 * The pages of a deflated batch: `packed` must inflate to exactly
 * `pages * 4096` bytes (FORMAT.md "RAM_PAGES").  Inflating stops as soon as
 * the output passes that, so a small record that would inflate to
 * gigabytes costs no more than a good one; anything else wrong with the data
 * is a FormatError naming `where` as well.
 */
export function inflateRamData(packed: Uint8Array, pages: number, where: string): Uint8Array {
  const want = pages * PAGE_SIZE;
  let out: Buffer;
  try {
    out = inflateRawSync(packed, { maxOutputLength: want, chunkSize: INFLATE_CHUNK });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      throw new FormatError(`${where}: deflated data inflates to more than ${want} bytes (${pages} pages)`, {
        cause: err,
      });
    throw new FormatError(
      `${where}: deflated data does not inflate (${err instanceof Error ? err.message : String(err)})`,
      { cause: err },
    );
  }
  if (out.length !== want)
    throw new FormatError(`${where}: deflated data inflates to ${out.length} bytes, expected ${want} (${pages} pages)`);
  return out;
}

/** Output chunk of a bounded inflate: how far past the limit it may get before it stops. */
const INFLATE_CHUNK = 64 << 10;

/**
 * `offset` is the body's offset in the stream, for messages and `dataOffset`.
 * A deflated batch comes back inflated (checked by inflateRamData), as
 * encoding RAW: whoever reads page data gets pages.
 */
export function decodeRamPages(body: Uint8Array, offset: number, maxPages: number): RamPagesRecord {
  const where = `RAM_PAGES record at offset ${offset}`;
  const h = parseRamHead(body, body.length, where, maxPages);
  const stored = body.subarray(h.dataOffset, h.pfnOffset);
  return {
    kind: 'ram',
    pfns: decodeRamPfns(body, body.subarray(h.pfnOffset), h.count, where),
    encoding: RamEncoding.RAW,
    data: h.encoding === RamEncoding.DEFLATE ? inflateRamData(stored, h.count, where) : stored,
    dataOffset: offset + h.dataOffset,
    dataLength: h.dataLength,
  };
}

export function decodeRamZero(body: Uint8Array, offset: number, maxPages: number): RamZeroRecord {
  const where = `RAM_ZERO record at offset ${offset}`;
  if (body.length < ZERO_HEAD_BYTES) throw new FormatError(`${where}: body of ${body.length} bytes is too short`);
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const count = view.getUint32(0, true);
  if (count === 0 || count > maxPages)
    throw new FormatError(`${where}: ${count} pages in one record (limit maxBatchPages=${maxPages})`);
  if (body.length !== ZERO_HEAD_BYTES + count * 8)
    throw new FormatError(`${where}: ${body.length} bytes for ${count} page numbers`);
  return { kind: 'zero', pfns: readPfns(view, ZERO_HEAD_BYTES, count, where) };
}
