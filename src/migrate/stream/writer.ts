// Writes a record stream: preamble, HEADER, any records, END.  Every record
// is framed (FORMAT.md "Record framing") and checksummed here, so the RAM
// encoder and the section writers only produce bodies.
import { Encoder } from '@msgpack/msgpack';
import { FormatError, IoError } from '../../errors.js';
import type { ByteSink } from './byte-sink.js';
import type { Section, StreamCounts, StreamHeader } from './records.js';
import {
  crc32,
  END_BODY_BYTES,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  FRAME_BYTES,
  MAGIC,
  PREAMBLE_BYTES,
  RecordType,
  SYNC_BODY_BYTES,
  typeName,
  writeU64,
} from './format.js';

export interface WriterOptions {
  /**
   * Place raw RAM page data page-aligned in the stream so a file can be
   * mapped at restore.  Costs up to 4 KiB of padding per batch; worth it for
   * files, not for sockets.  Default true.
   */
  readonly alignPages?: boolean;
}

export function encodePreamble(major = FORMAT_MAJOR, minor = FORMAT_MINOR): Uint8Array {
  const out = new Uint8Array(PREAMBLE_BYTES);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint16(8, major, true);
  view.setUint16(10, minor, true);
  view.setUint32(12, crc32(out.subarray(0, 12)), true);
  return out;
}

/** The 24-byte frame of a record whose body is `body`; tests use it to forge records. */
export function encodeFrame(type: number, body: Uint8Array, flags = 0): Uint8Array {
  const frame = new Uint8Array(FRAME_BYTES);
  const view = new DataView(frame.buffer);
  view.setUint32(0, type >>> 0, true);
  view.setUint32(4, flags >>> 0, true);
  writeU64(view, 8, body.length);
  view.setUint32(16, crc32(body), true);
  view.setUint32(20, crc32(frame.subarray(0, 20)), true);
  return frame;
}

export class StreamWriter {
  readonly alignPages: boolean;
  private readonly sink: ByteSink;
  private readonly encoder = new Encoder({ useBigInt64: true });
  private pos = 0;
  private state: 'open' | 'ended' | 'failed' = 'open';
  /** A record's frame and body must be adjacent: one write at a time, each awaited. */
  private busy = false;
  private readonly tally: StreamCounts = { records: 0, sections: 0, dataPages: 0, zeroPages: 0 };

  private constructor(sink: ByteSink, options: WriterOptions) {
    this.sink = sink;
    this.alignPages = options.alignPages ?? true;
  }

  /** Writes the preamble and HEADER record and returns a writer positioned after them. */
  static async start(sink: ByteSink, header: StreamHeader, options: WriterOptions = {}): Promise<StreamWriter> {
    if (typeof header.producer !== 'string') throw new TypeError('header.producer must be a string');
    const w = new StreamWriter(sink, options);
    const body = w.encodeValue('HEADER', {
      format: [FORMAT_MAJOR, FORMAT_MINOR],
      producer: header.producer,
      machine: header.machine,
      schemas: header.schemas,
    });
    await w.put(encodePreamble());
    await w.writeRecord(RecordType.HEADER, body);
    return w;
  }

  /** Stream offset of the next byte this writer will emit. */
  get position(): number {
    return this.pos;
  }

  /** Totals so far (what END will carry). */
  get counts(): Readonly<StreamCounts> {
    return this.tally;
  }

  async writeSection(section: Section): Promise<void> {
    const { name, instance, version, payload } = section;
    if (typeof name !== 'string' || name === '') throw new TypeError('section name must be a non-empty string');
    if (!Number.isSafeInteger(instance) || instance < 0)
      throw new TypeError(`section ${name}: instance must be a non-negative integer`);
    if (!Number.isSafeInteger(version) || version < 0)
      throw new TypeError(`section ${name}: version must be a non-negative integer`);
    await this.writeRecord(
      RecordType.SECTION,
      this.encodeValue(`section ${name}[${instance}]`, { name, instance, version, payload }),
    );
  }

  /**
   * Frames and writes one record; `body` passes to the sink and must not be
   * changed until `release` is called (if given; else never).  Use for
   * record types this module has no helper for.
   */
  async writeRecord(type: number, body: Uint8Array, flags = 0, release?: () => void): Promise<void> {
    if (this.state !== 'open')
      throw new IoError(
        `cannot write a ${typeName(type)} record: the stream is ${this.state === 'ended' ? 'already ended' : 'broken by an earlier error'}`,
      );
    if (type === RecordType.END) throw new TypeError('END is written by end()');
    if (this.busy) throw new TypeError('StreamWriter: await each write before starting the next');
    this.busy = true;
    try {
      this.count(type, body);
      await this.put(encodeFrame(type, body, flags));
      if (body.length > 0) await this.put(body, release);
      else release?.();
    } finally {
      this.busy = false;
    }
  }

  /** Writes a SYNC record: a live destination answers `ACK <seq>` once it has applied everything before it. */
  async sync(seq: number): Promise<void> {
    const body = new Uint8Array(SYNC_BODY_BYTES);
    writeU64(new DataView(body.buffer), 0, seq);
    await this.writeRecord(RecordType.SYNC, body);
  }

  /** Writes END with the totals and waits until the sink has everything; does not close the sink. */
  async end(): Promise<StreamCounts> {
    if (this.state !== 'open')
      throw new IoError(
        `cannot end the stream: it is ${this.state === 'ended' ? 'already ended' : 'broken by an earlier error'}`,
      );
    if (this.busy) throw new TypeError('StreamWriter: await each write before ending');
    const body = new Uint8Array(END_BODY_BYTES);
    const view = new DataView(body.buffer);
    writeU64(view, 0, this.tally.records);
    writeU64(view, 8, this.tally.sections);
    writeU64(view, 16, this.tally.dataPages);
    writeU64(view, 24, this.tally.zeroPages);
    await this.put(encodeFrame(RecordType.END, body));
    await this.put(body);
    try {
      await this.sink.flush();
    } catch (err) {
      this.state = 'failed';
      throw err;
    }
    this.state = 'ended';
    return { ...this.tally };
  }

  private count(type: number, body: Uint8Array): void {
    this.tally.records++;
    if (type === RecordType.SECTION) this.tally.sections++;
    else if (type === RecordType.RAM_PAGES || type === RecordType.RAM_ZERO) {
      const n = body.length >= 4 ? new DataView(body.buffer, body.byteOffset, 4).getUint32(0, true) : 0;
      if (type === RecordType.RAM_PAGES) this.tally.dataPages += n;
      else this.tally.zeroPages += n;
    }
  }

  private async put(chunk: Uint8Array, release?: () => void): Promise<void> {
    this.pos += chunk.length;
    try {
      await this.sink.write(chunk, release);
    } catch (err) {
      this.state = 'failed';
      throw err;
    }
  }

  private encodeValue(what: string, value: unknown): Uint8Array {
    try {
      return this.encoder.encode(value);
    } catch (err) {
      throw new FormatError(`cannot encode ${what}: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
  }
}
