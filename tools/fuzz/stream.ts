// A stream as a list of records the fuzzer can edit, and back to bytes with
// valid checksums (FORMAT.md "Record framing"): mutations then reach the
// decoders behind the CRCs instead of stopping at them.
import { Decoder, Encoder } from '@msgpack/msgpack';
import {
  crc32,
  END_BODY_BYTES,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  FRAME_BYTES,
  PREAMBLE_BYTES,
  RAM_HEAD_BYTES,
  readU64,
  RecordType,
  writeU64,
  ZERO_HEAD_BYTES,
} from '../../src/migrate/stream/format.js';
import { encodeFrame, encodePreamble } from '../../src/migrate/stream/writer.js';

export interface RawRecord {
  type: number;
  flags: number;
  body: Uint8Array;
}

export interface ParsedStream {
  preamble: Uint8Array;
  records: RawRecord[];
}

/** Splits a well-formed stream into its records (the seeds are well-formed; no checks beyond lengths). */
export function parseStream(input: Uint8Array): ParsedStream {
  // A plain copy: Buffer#slice makes views, and mutators edit record bodies in place.
  const bytes = new Uint8Array(input);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const records: RawRecord[] = [];
  let at = PREAMBLE_BYTES;
  while (at + FRAME_BYTES <= bytes.length) {
    const len = readU64(v, at + 8);
    if (!(at + FRAME_BYTES + len <= bytes.length)) throw new Error(`seed stream: record at ${at} runs past the end`);
    records.push({
      type: v.getUint32(at, true),
      flags: v.getUint32(at + 4, true),
      body: bytes.slice(at + FRAME_BYTES, at + FRAME_BYTES + len),
    });
    at += FRAME_BYTES + len;
  }
  return { preamble: bytes.slice(0, PREAMBLE_BYTES), records };
}

/** END's totals for `records` (END itself not counted), as a reader recomputes them. */
export function endBody(records: readonly RawRecord[]): Uint8Array {
  let n = 0;
  let sections = 0;
  let dataPages = 0;
  let zeroPages = 0;
  for (const r of records) {
    if (r.type === RecordType.END) continue;
    n++;
    if (r.type === RecordType.SECTION) sections++;
    else if (r.type === RecordType.RAM_PAGES && r.body.length >= 4)
      dataPages += new DataView(r.body.buffer, r.body.byteOffset).getUint32(0, true);
    else if (r.type === RecordType.RAM_ZERO && r.body.length >= 4)
      zeroPages += new DataView(r.body.buffer, r.body.byteOffset).getUint32(0, true);
  }
  const body = new Uint8Array(END_BODY_BYTES);
  const v = new DataView(body.buffer);
  writeU64(v, 0, n);
  writeU64(v, 8, sections);
  writeU64(v, 16, dataPages);
  writeU64(v, 24, zeroPages);
  return body;
}

/**
 * The format version the stream's first HEADER states (a seed of an older
 * format keeps it), or this build's when it states none usable.
 */
function seedFormat(s: ParsedStream): [number, number] {
  const h = s.records[0];
  if (h?.type === RecordType.HEADER) {
    try {
      const f = (decodeMsgpack(h.body) as { format?: unknown }).format;
      if (Array.isArray(f) && f.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffff))
        return [f[0] as number, f[1] as number];
    } catch {
      // A damaged header is a mutation of its own: frame it with this build's version.
    }
  }
  return [FORMAT_MAJOR, FORMAT_MINOR];
}

/**
 * Frames `records` after a fresh preamble.  Unless `keepEnd`, every END
 * record's totals are recomputed so that a mutation is not caught by END's
 * counts alone.
 */
export function buildStream(s: ParsedStream, opts: { keepEnd?: boolean; preamble?: Uint8Array } = {}): Uint8Array {
  const parts: Uint8Array[] = [opts.preamble ?? encodePreamble(...seedFormat(s))];
  for (let i = 0; i < s.records.length; i++) {
    const r = s.records[i]!;
    const body = r.type === RecordType.END && !opts.keepEnd ? endBody(s.records.slice(0, i)) : r.body;
    parts.push(encodeFrame(r.type, body, r.flags), body);
  }
  return Buffer.concat(parts);
}

export const decoder = new Decoder({ useBigInt64: true });
/** Deep values are a mutation of their own: the encoder must not refuse them. */
export const encoder = new Encoder({ useBigInt64: true, maxDepth: 100_000, initialBufferSize: 8192 });

export function decodeMsgpack(body: Uint8Array): unknown {
  return decoder.decode(body);
}

export function encodeMsgpack(value: unknown): Uint8Array {
  return encoder.encode(value);
}

export interface SectionBody {
  name: unknown;
  instance: unknown;
  version: unknown;
  payload: unknown;
  [k: string]: unknown;
}

export function isSection(r: RawRecord): boolean {
  return r.type === RecordType.SECTION;
}

/** The decoded SECTION body, or null when a mutation left it something other than a map. */
export function sectionOf(r: RawRecord): SectionBody | null {
  const v = decodeMsgpack(r.body);
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
    ? (v as SectionBody)
    : null;
}

export function sectionRecord(s: Record<string, unknown>): RawRecord {
  return { type: RecordType.SECTION, flags: 0, body: encodeMsgpack(s) };
}

/** Head fields of a RAM_PAGES body. */
export interface RamHeadFields {
  count: number;
  encoding: number;
  dataOffset: number;
  dataLength: number;
  pfnOffset: number;
}

export function ramHead(body: Uint8Array): RamHeadFields {
  const v = new DataView(body.buffer, body.byteOffset, body.length);
  return {
    count: v.getUint32(0, true),
    encoding: v.getUint8(4),
    dataOffset: v.getUint32(8, true),
    dataLength: v.getUint32(12, true),
    pfnOffset: v.getUint32(16, true),
  };
}

/** The page list, as bigints: an earlier mutation may have put a frame beyond 2^53 there. */
export function ramPfns(body: Uint8Array): bigint[] {
  const h = ramHead(body);
  const v = new DataView(body.buffer, body.byteOffset, body.length);
  const out: bigint[] = [];
  for (let i = 0; i < h.count && h.pfnOffset + i * 8 + 8 <= body.length; i++)
    out.push(v.getBigUint64(h.pfnOffset + i * 8, true));
  return out;
}

/**
 * A RAM_PAGES body from parts, head CRC included (FORMAT.md "RAM_PAGES");
 * `pfns` may hold numbers beyond 2^53 as bigints.
 */
export function ramPagesBody(
  data: Uint8Array,
  pfns: ReadonlyArray<number | bigint>,
  encoding: number,
  opts: { count?: number } = {},
): Uint8Array {
  const dataOffset = RAM_HEAD_BYTES;
  const pfnOffset = dataOffset + data.length;
  const body = new Uint8Array(pfnOffset + pfns.length * 8);
  const v = new DataView(body.buffer);
  v.setUint32(0, opts.count ?? pfns.length, true);
  v.setUint8(4, encoding);
  v.setUint32(8, dataOffset, true);
  v.setUint32(12, data.length, true);
  v.setUint32(16, pfnOffset, true);
  body.set(data, dataOffset);
  pfns.forEach((p, i) => v.setBigUint64(pfnOffset + i * 8, BigInt(p), true));
  fixRamHeadCrc(body);
  return body;
}

/** Recomputes the head CRC (offset 20: bytes 0..19 and the page list) after an edit. */
export function fixRamHeadCrc(body: Uint8Array): void {
  if (body.length < RAM_HEAD_BYTES) return;
  const v = new DataView(body.buffer, body.byteOffset, body.length);
  const count = v.getUint32(0, true);
  const pfnOffset = v.getUint32(16, true);
  const list = body.subarray(Math.min(pfnOffset, body.length), Math.min(pfnOffset + count * 8, body.length));
  v.setUint32(20, crc32(list, crc32(body.subarray(0, 20))), true);
}

/** Page data of a RAM_PAGES body as stored (raw or deflated). */
export function ramData(body: Uint8Array): Uint8Array {
  const h = ramHead(body);
  return body.subarray(h.dataOffset, h.pfnOffset);
}

export function ramZeroBody(pfns: ReadonlyArray<number | bigint>, count = pfns.length): Uint8Array {
  const body = new Uint8Array(ZERO_HEAD_BYTES + pfns.length * 8);
  const v = new DataView(body.buffer);
  v.setUint32(0, count, true);
  pfns.forEach((p, i) => v.setBigUint64(ZERO_HEAD_BYTES + i * 8, BigInt(p), true));
  return body;
}
