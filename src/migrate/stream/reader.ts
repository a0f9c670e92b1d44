// Reads a record stream from any ByteSource.  Bad input of any kind ends in
// a FormatError whose message names the problem and the offset; failures of
// the underlying file or socket are IoError.  Nothing else escapes (the fuzz
// test in test/migrate/stream/fuzz.test.ts holds us to it).
import type { Readable } from 'node:stream';
import { Decoder } from '@msgpack/msgpack';
import { FormatError } from '../../errors.js';
import {
  crc32,
  END_BODY_BYTES,
  FORMAT_MAJOR,
  SYNC_BODY_BYTES,
  FRAME_BYTES,
  MAGIC,
  OPTIONAL_BIT,
  PREAMBLE_BYTES,
  RAM_HEAD_BYTES,
  readU64,
  RecordType,
  typeName,
} from './format.js';
import type { RamPagesRecord, ReadHeader, Section, StreamCounts, StreamRecord, StreamWarning } from './records.js';
import { decodeRamPages, decodeRamPfns, decodeRamZero, parseRamHead } from './ram-body.js';
import { type ByteSource, isByteSource, readableSource } from './byte-source.js';

export interface ReaderOptions {
  /** Largest record body accepted, HEADER excepted.  Default 64 MiB (a batch is 2 MiB). */
  readonly maxRecordBytes?: number;
  /** Largest HEADER body (machine configuration and schemas).  Default 16 MiB. */
  readonly maxHeaderBytes?: number;
  /** Most SECTION records in one stream.  Default 100 000. */
  readonly maxSections?: number;
  /** Most pages in one RAM_PAGES or RAM_ZERO record.  Default 16 384. */
  readonly maxBatchPages?: number;
  /** Most records in one stream.  Default unlimited (a migration may run long). */
  readonly maxRecords?: number;
  /** Called for each skipped unknown optional record. */
  readonly onWarning?: (warning: StreamWarning) => void;
  /** Record types to yield as `{kind: 'other'}` instead of skipping or rejecting. */
  readonly passTypes?: Iterable<number>;
  /**
   * Skip RAM page data instead of reading it (`data` is then empty): for a
   * restore that maps the file.  The page list is still checked by its own
   * checksum; the data's checksum is not, since it is not read.
   */
  readonly skipRamData?: boolean;
  /**
   * Read RAM_PAGES bodies into one buffer reused from record to record, so
   * a record's `data` is valid only until the next one is requested: for a
   * consumer that copies pages out at once (the migration destination),
   * where a fresh 2 MiB buffer per batch kept V8's major GC busy.
   */
  readonly reuseRamBuffer?: boolean;
  /** Yield SYNC records (`{kind: 'sync'}`); other readers skip them silently. */
  readonly syncRecords?: boolean;
}

interface Limits {
  maxRecordBytes: number;
  maxHeaderBytes: number;
  maxSections: number;
  maxBatchPages: number;
  maxRecords: number;
}

const KNOWN = new Set<number>(Object.values(RecordType));

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

export class StreamReader implements AsyncIterable<StreamRecord> {
  readonly header: ReadHeader;
  private readonly src: ByteSource;
  private readonly limits: Limits;
  private readonly onWarning: ((w: StreamWarning) => void) | undefined;
  private readonly passTypes: ReadonlySet<number>;
  private pos: number;
  private seen: StreamCounts = { records: 1, sections: 0, dataPages: 0, zeroPages: 0 };
  private endCounts: StreamCounts | null = null;
  private started = false;
  private readonly skipRamData: boolean;
  private ramScratch: Uint8Array | null = null;
  private readonly syncRecords: boolean;

  private constructor(src: ByteSource, header: ReadHeader, pos: number, limits: Limits, options: ReaderOptions) {
    this.src = src;
    this.header = header;
    this.pos = pos;
    this.limits = limits;
    this.onWarning = options.onWarning;
    this.passTypes = new Set(options.passTypes ?? []);
    this.skipRamData = options.skipRamData ?? false;
    if (options.reuseRamBuffer) this.ramScratch = new Uint8Array(0);
    this.syncRecords = options.syncRecords ?? false;
  }

  /** Reads and checks the preamble and HEADER record; records follow through iteration. */
  static async open(input: ByteSource | Readable, options: ReaderOptions = {}): Promise<StreamReader> {
    const src = isByteSource(input) ? input : readableSource(input);
    const limits: Limits = {
      maxRecordBytes: options.maxRecordBytes ?? 64 << 20,
      maxHeaderBytes: options.maxHeaderBytes ?? 16 << 20,
      maxSections: options.maxSections ?? 100_000,
      maxBatchPages: options.maxBatchPages ?? 16_384,
      maxRecords: options.maxRecords ?? Number.MAX_SAFE_INTEGER,
    };
    const pre = await src.read(PREAMBLE_BYTES);
    if (pre.length === 0) throw new FormatError('empty input: not a xenkvm stream');
    for (let i = 0; i < Math.min(pre.length, MAGIC.length); i++) {
      if (pre[i] !== MAGIC[i]) throw new FormatError('not a xenkvm stream (wrong magic)');
    }
    if (pre.length < PREAMBLE_BYTES)
      throw new FormatError(`truncated: the stream ends inside its ${PREAMBLE_BYTES}-byte preamble`);
    const view = new DataView(pre.buffer, pre.byteOffset, pre.length);
    if (crc32(pre.subarray(0, 12)) !== view.getUint32(12, true))
      throw new FormatError('stream preamble is corrupt (checksum mismatch)');
    const major = view.getUint16(8, true);
    const minor = view.getUint16(10, true);
    if (major > FORMAT_MAJOR)
      throw new FormatError(`file format ${major}.${minor} is newer than this xenkvm reads (${FORMAT_MAJOR}.x)`);
    if (major < FORMAT_MAJOR)
      throw new FormatError(`file format ${major}.${minor} is not supported (this xenkvm reads ${FORMAT_MAJOR}.x)`);
    const r = new StreamReader(src, null as unknown as ReadHeader, PREAMBLE_BYTES, limits, options);
    const first = await r.readFrame();
    if (first === null || first.type !== RecordType.HEADER) {
      throw new FormatError(
        first === null
          ? 'truncated: the stream ends before its HEADER record'
          : `expected a HEADER record first, found ${typeName(first.type)}`,
      );
    }
    const body = await r.readBody(first);
    (r as { header: ReadHeader }).header = decodeHeader(body, major, minor);
    return r;
  }

  /** END's totals once the iteration reached it, else null. */
  get end(): Readonly<StreamCounts> | null {
    return this.endCounts;
  }

  /** Stream offset just after the last byte consumed. */
  get position(): number {
    return this.pos;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamRecord> {
    if (this.started) throw new TypeError('a StreamReader can be iterated only once');
    this.started = true;
    for (;;) {
      const frame = await this.readFrame();
      if (frame === null)
        throw new FormatError(
          `truncated: the stream ends at offset ${this.pos} after ${this.seen.records} records, without an END record`,
        );
      const { type, at } = frame;
      if (type === RecordType.END) {
        this.checkEnd(await this.readBody(frame), at);
        return;
      }
      if (++this.seen.records > this.limits.maxRecords)
        throw new FormatError(`more than maxRecords=${this.limits.maxRecords} records`);
      if (type === RecordType.HEADER) throw new FormatError(`a second HEADER record at offset ${at}`);
      if (!KNOWN.has(type) && !this.passTypes.has(type)) {
        if ((type & OPTIONAL_BIT) === 0) {
          throw new FormatError(
            `unknown mandatory record type ${typeName(type)} at offset ${at}: written by a newer xenkvm (format ${this.header.formatMajor}.${this.header.formatMinor}); cannot load it`,
          );
        }
        await this.skipBody(frame);
        this.onWarning?.({
          code: 'W_UNKNOWN_OPTIONAL',
          message: `skipped unknown optional record type ${typeName(type)} at offset ${at} (${frame.length} bytes)`,
          type,
          offset: at,
        });
        continue;
      }
      const bodyAt = this.pos;
      if (type === RecordType.SYNC) {
        // A migration piped to a file keeps its SYNCs: they mean nothing there.
        if (!this.syncRecords) {
          await this.skipBody(frame);
          continue;
        }
        const body = await this.readBody(frame);
        if (body.length < SYNC_BODY_BYTES) throw new FormatError(`SYNC record at offset ${at} is too short`);
        const seq = readU64(new DataView(body.buffer, body.byteOffset, body.length), 0);
        yield { kind: 'sync', seq, offset: at };
        continue;
      }
      if (type === RecordType.RAM_PAGES && this.skipRamData) {
        const rec = await this.readRamSkippingData(frame);
        this.seen.dataPages += rec.pfns.length;
        yield { ...rec, offset: at };
        continue;
      }
      const body = await this.readBody(frame);
      if (type === RecordType.SECTION) {
        if (++this.seen.sections > this.limits.maxSections)
          throw new FormatError(`more than maxSections=${this.limits.maxSections} sections`);
        yield { kind: 'section', section: decodeSection(body, at), offset: at };
      } else if (type === RecordType.RAM_PAGES) {
        const rec = decodeRamPages(body, bodyAt, this.limits.maxBatchPages);
        this.seen.dataPages += rec.pfns.length;
        yield { ...rec, offset: at };
      } else if (type === RecordType.RAM_ZERO) {
        const rec = decodeRamZero(body, bodyAt, this.limits.maxBatchPages);
        this.seen.zeroPages += rec.pfns.length;
        yield { ...rec, offset: at };
      } else {
        yield { kind: 'other', type, body, offset: at };
      }
    }
  }

  private async readFrame(): Promise<{ type: number; length: number; crc: number; at: number } | null> {
    const at = this.pos;
    const f = await this.src.read(FRAME_BYTES);
    this.pos += f.length;
    if (f.length === 0) return null;
    if (f.length < FRAME_BYTES)
      throw new FormatError(`truncated: the stream ends inside a record frame at offset ${at}`);
    const view = new DataView(f.buffer, f.byteOffset, f.length);
    if (crc32(f.subarray(0, 20)) !== view.getUint32(20, true))
      throw new FormatError(`record frame at offset ${at} is corrupt (checksum mismatch)`);
    const type = view.getUint32(0, true);
    const length = readU64(view, 8);
    const limit = type === RecordType.HEADER ? this.limits.maxHeaderBytes : this.limits.maxRecordBytes;
    if (!(length <= limit)) {
      throw new FormatError(
        `${typeName(type)} record at offset ${at} has a ${length}-byte body, above the limit ${type === RecordType.HEADER ? 'maxHeaderBytes' : 'maxRecordBytes'}=${limit}`,
      );
    }
    return { type, length, crc: view.getUint32(16, true), at };
  }

  private async readBody(frame: { type: number; length: number; crc: number; at: number }): Promise<Uint8Array> {
    let scratch: Uint8Array | undefined;
    if (this.ramScratch !== null && frame.type === RecordType.RAM_PAGES) {
      // Grown to the largest batch seen; the frame length was checked against maxRecordBytes.
      if (this.ramScratch.length < frame.length) this.ramScratch = new Uint8Array(frame.length);
      scratch = this.ramScratch;
    }
    const body = await this.src.read(frame.length, scratch);
    this.pos += body.length;
    if (body.length < frame.length)
      throw new FormatError(
        `truncated: the stream ends inside the body of the ${typeName(frame.type)} record at offset ${frame.at}`,
      );
    if (crc32(body) !== frame.crc)
      throw new FormatError(
        `${typeName(frame.type)} record at offset ${frame.at}: body checksum mismatch (corrupt data)`,
      );
    return body;
  }

  private async readRamSkippingData(frame: { type: number; length: number; at: number }): Promise<RamPagesRecord> {
    const bodyAt = this.pos;
    const where = `RAM_PAGES record at offset ${frame.at}`;
    const truncated = (): FormatError =>
      new FormatError(`truncated: the stream ends inside the body of the RAM_PAGES record at offset ${frame.at}`);
    const head = await this.src.read(Math.min(RAM_HEAD_BYTES, frame.length));
    this.pos += head.length;
    if (head.length < Math.min(RAM_HEAD_BYTES, frame.length)) throw truncated();
    const h = parseRamHead(head, frame.length, where, this.limits.maxBatchPages);
    const gap = h.pfnOffset - RAM_HEAD_BYTES;
    const skipped = await this.src.skip(gap);
    this.pos += skipped;
    if (skipped < gap) throw truncated();
    const pfnBytes = await this.src.read(h.count * 8);
    this.pos += pfnBytes.length;
    if (pfnBytes.length < h.count * 8) throw truncated();
    const pfns = decodeRamPfns(head, pfnBytes, h.count, where);
    return {
      kind: 'ram',
      pfns,
      encoding: h.encoding,
      data: new Uint8Array(0),
      dataOffset: bodyAt + h.dataOffset,
      dataLength: h.dataLength,
    };
  }

  private async skipBody(frame: { type: number; length: number; at: number }): Promise<void> {
    const n = await this.src.skip(frame.length);
    this.pos += n;
    if (n < frame.length)
      throw new FormatError(
        `truncated: the stream ends inside the body of the ${typeName(frame.type)} record at offset ${frame.at}`,
      );
  }

  private checkEnd(body: Uint8Array, at: number): void {
    if (body.length < END_BODY_BYTES) throw new FormatError(`END record at offset ${at} is too short`);
    const view = new DataView(body.buffer, body.byteOffset, body.length);
    const claimed: StreamCounts = {
      records: readU64(view, 0),
      sections: readU64(view, 8),
      dataPages: readU64(view, 16),
      zeroPages: readU64(view, 24),
    };
    for (const k of ['sections', 'dataPages', 'zeroPages', 'records'] as const) {
      if (claimed[k] !== this.seen[k])
        throw new FormatError(
          `END record says ${claimed[k]} ${k} but the stream holds ${this.seen[k]}: records are missing or repeated`,
        );
    }
    this.endCounts = claimed;
  }
}

/**
 * Deepest nesting of arrays and maps a body may hold: what @msgpack/msgpack's
 * encoder writes at most, so anything read can be written again (the
 * inspector re-encodes payloads).  xenkvm's own bodies nest about ten deep.
 */
export const MAX_MSGPACK_DEPTH = 100;

function isContainer(v: unknown): v is object {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array);
}

/**
 * Whether some value inside `root` lies deeper than `max`, counted as the
 * encoder counts (the root is at depth 1); iterative, since a hostile value
 * may nest millions deep.
 */
function nestsDeeper(root: unknown, max: number): boolean {
  if (!isContainer(root)) return false;
  const stack: Array<[object, number]> = [[root, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    const children = Array.isArray(v) ? (v as unknown[]) : Object.values(v);
    if (children.length === 0) continue;
    if (depth + 1 > max) return true;
    for (const child of children) if (isContainer(child)) stack.push([child, depth + 1]);
  }
  return false;
}

function decodeBody(body: Uint8Array, what: string): unknown {
  // Every msgpack item takes at least one byte, so no length may exceed the body's.
  const n = body.length;
  const decoder = new Decoder({
    useBigInt64: true,
    maxStrLength: n,
    maxBinLength: n,
    maxArrayLength: n,
    maxMapLength: n,
    maxExtLength: n,
  });
  let value: unknown;
  try {
    value = decoder.decode(body);
  } catch (err) {
    throw new FormatError(`${what}: malformed msgpack body (${err instanceof Error ? err.message : String(err)})`, {
      cause: err,
    });
  }
  if (nestsDeeper(value, MAX_MSGPACK_DEPTH))
    throw new FormatError(`${what}: msgpack values nested more than ${MAX_MSGPACK_DEPTH} levels deep`);
  return value;
}

function decodeHeader(body: Uint8Array, major: number, minor: number): ReadHeader {
  const v = decodeBody(body, 'HEADER record');
  if (!isPlainObject(v)) throw new FormatError('HEADER record: body is not a map');
  const format = v['format'];
  if (!Array.isArray(format) || format[0] !== major || format[1] !== minor) {
    throw new FormatError(`HEADER record: format version does not match the preamble's ${major}.${minor}`);
  }
  if (typeof v['producer'] !== 'string') throw new FormatError('HEADER record: producer is not a string');
  if (!isPlainObject(v['schemas'])) throw new FormatError('HEADER record: schemas is not a map');
  return {
    formatMajor: major,
    formatMinor: minor,
    producer: v['producer'],
    machine: v['machine'] ?? null,
    schemas: v['schemas'],
  };
}

function decodeSection(body: Uint8Array, at: number): Section {
  const v = decodeBody(body, `SECTION record at offset ${at}`);
  if (!isPlainObject(v)) throw new FormatError(`SECTION record at offset ${at}: body is not a map`);
  const { name, instance, version } = v;
  if (typeof name !== 'string' || name === '')
    throw new FormatError(`SECTION record at offset ${at}: name is not a non-empty string`);
  if (!isCount(instance) || !isCount(version))
    throw new FormatError(
      `SECTION record at offset ${at} (${name}): instance and version must be non-negative integers`,
    );
  if (!('payload' in v)) throw new FormatError(`SECTION record at offset ${at} (${name}): no payload`);
  return { name, instance, version, payload: v['payload'] };
}
