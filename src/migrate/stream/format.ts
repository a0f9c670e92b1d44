// Byte-level constants of the xenkvm stream format, version 1.  FORMAT.md at
// the repository root is the specification; this file is its executable
// half.  Anything here that changes the bytes on disk needs a FORMAT.md edit
// and, unless it only adds optional records, a major version bump.
import { crc32 as zlibCrc32 } from 'node:zlib';
import { nativeCrc32 } from '../native.js';

/** "XENKVM", NUL, 0x01: the 0x01 is part of the magic, not a version. */
export const MAGIC = Uint8Array.of(0x58, 0x45, 0x4e, 0x4b, 0x56, 0x4d, 0x00, 0x01);
export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 1;

/** magic(8) | major u16 | minor u16 | crc32 of bytes 0..11 (u32). */
export const PREAMBLE_BYTES = 16;

/** type u32 | flags u32 | body length u64 | body crc32 u32 | frame crc32 u32 (of bytes 0..19). */
export const FRAME_BYTES = 24;

/** Bit 31 of a record type: a reader that does not know the type may skip it. */
export const OPTIONAL_BIT = 0x8000_0000;

export const RecordType = {
  HEADER: 0x0000_0001,
  SECTION: 0x0000_0002,
  RAM_PAGES: 0x0000_0003,
  RAM_ZERO: 0x0000_0004,
  END: 0x0000_000f,
  /** Live migration only: "answer ACK <seq> once you have applied everything before this". */
  SYNC: 0x8000_0010,
} as const;
export type KnownRecordType = (typeof RecordType)[keyof typeof RecordType];

const TYPE_NAMES: Readonly<Record<number, string>> = {
  [RecordType.HEADER]: 'HEADER',
  [RecordType.SECTION]: 'SECTION',
  [RecordType.RAM_PAGES]: 'RAM_PAGES',
  [RecordType.RAM_ZERO]: 'RAM_ZERO',
  [RecordType.END]: 'END',
  [RecordType.SYNC]: 'SYNC',
};

/** SYNC body: sequence number u64. */
export const SYNC_BODY_BYTES = 8;

export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `0x${(type >>> 0).toString(16).padStart(8, '0')}`;
}

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;

/**
 * RAM_PAGES body: count u32 | encoding u8 | 3 reserved | dataOffset u32 |
 * dataLength u32 | pfnOffset u32 | metaCrc u32, then padding, page data, and
 * `count` u64 page frame numbers.  Data before the pfn list lets the writer
 * place the data page-aligned before it knows how many pages the batch holds.
 */
export const RAM_HEAD_BYTES = 24;
export const RamEncoding = { RAW: 0, DEFLATE: 1 } as const;
export type RamEncodingValue = (typeof RamEncoding)[keyof typeof RamEncoding];

/** RAM_ZERO body: count u32 | reserved u32 | `count` u64 page frame numbers. */
export const ZERO_HEAD_BYTES = 8;

/** END body: records, sections, data pages, zero pages; each u64. */
export const END_BODY_BYTES = 32;

/**
 * Below this many bytes node:zlib is as fast: a koffi call has a fixed cost
 * whatever the length, and the two break even below 64 bytes (benchRam,
 * "crc32 ns per call"; docs/benchmarks.md).  Frame and preamble CRCs (20 and
 * 12 bytes) stay in zlib.
 */
export const NATIVE_CRC32_MIN_BYTES = 64;

/**
 * CRC-32 (IEEE, as zlib and gzip) over `bytes`, continuing from `prev`: the
 * one entry point for every checksum of the format.  From 64 bytes up it runs
 * in the native helper (native/crc32.c, carry-less multiplication: several
 * times node:zlib's speed; `benchRam` prints both, docs/benchmarks.md has
 * the figures); without it, or for short inputs, node:zlib.  Both give the
 * same values.
 */
export function crc32(bytes: Uint8Array, prev = 0): number {
  if (bytes.length >= NATIVE_CRC32_MIN_BYTES) {
    const native = nativeCrc32();
    if (native !== null) return native.crc32(prev >>> 0, bytes, bytes.length);
  }
  return zlibCrc32(bytes, prev) >>> 0;
}

/** Reads a little-endian u64; NaN when it exceeds 2^53 so callers reject it as too large. */
export function readU64(view: DataView, offset: number): number {
  const lo = view.getUint32(offset, true);
  const hi = view.getUint32(offset + 4, true);
  if (hi > 0x1f_ffff) return Number.NaN;
  return hi * 0x1_0000_0000 + lo;
}

export function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value >>> 0, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}
