// The values a stream carries, as the library sees them after decoding.
// Section payloads, machine configuration and schemas are the caller's
// opaque msgpack-ready values; this layer never looks inside them.

/** Decoded contents of the HEADER record plus the preamble's version. */
export interface StreamHeader {
  /** Version of the program that wrote the stream, e.g. "xenkvm 0.1.0". */
  readonly producer: string;
  /** Machine configuration (memory size, vCPUs, ...); opaque here. */
  readonly machine: unknown;
  /** Embedded schema of every section, keyed by section name; opaque here. */
  readonly schemas: Readonly<Record<string, unknown>>;
}

export interface ReadHeader extends StreamHeader {
  readonly formatMajor: number;
  readonly formatMinor: number;
}

/** One piece of device or vCPU state: `name`/`instance` say whose, `version` which layout. */
export interface Section {
  readonly name: string;
  readonly instance: number;
  readonly version: number;
  readonly payload: unknown;
}

/** Totals the END record carries; a reader checks them against what it saw. */
export interface StreamCounts {
  /** Records before END, HEADER included. */
  records: number;
  sections: number;
  /** Pages sent with data (RAM_PAGES), repeats included. */
  dataPages: number;
  /** Pages sent as zero (RAM_ZERO). */
  zeroPages: number;
}

/** A batch of pages with data; `data` is a view into the record body (or the pages inflated from it). */
export interface RamPagesRecord {
  readonly kind: 'ram';
  /** Page frame numbers, in the order their pages appear in `data`. */
  readonly pfns: Float64Array;
  /**
   * How `data` is encoded: 0 = raw pages, 1 = deflate (raw DEFLATE, no zlib
   * wrapper).  A reader that reads page data inflates deflated batches
   * (each must inflate to exactly count * 4096 bytes) and hands them over
   * as 0; with `skipRamData` this is how the batch is stored.
   */
  readonly encoding: number;
  /** Raw: count * 4096 bytes; deflate: the compressed bytes.  Empty when the reader skipped it (`skipRamData`). */
  readonly data: Uint8Array;
  /** Length of the data in the stream, also when it was skipped. */
  readonly dataLength: number;
  /** Offset in the stream of the first byte of the data as stored. */
  readonly dataOffset: number;
}

/** Pages that are all zero (a migration round must say so: the destination may hold old data). */
export interface RamZeroRecord {
  readonly kind: 'zero';
  readonly pfns: Float64Array;
}

export type StreamRecord =
  | { readonly kind: 'section'; readonly section: Section; readonly offset: number }
  | (RamPagesRecord & { readonly offset: number })
  | (RamZeroRecord & { readonly offset: number })
  /** A SYNC record, yielded only to a reader opened with `syncRecords` (a live destination, which acknowledges it). */
  | { readonly kind: 'sync'; readonly seq: number; readonly offset: number }
  /** A record of a type this version does not decode but the caller asked to see (optional, known to it). */
  | { readonly kind: 'other'; readonly type: number; readonly body: Uint8Array; readonly offset: number };

export interface StreamWarning {
  readonly code: 'W_UNKNOWN_OPTIONAL';
  readonly message: string;
  readonly type: number;
  readonly offset: number;
}
