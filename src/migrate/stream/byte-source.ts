// Where a stream's bytes come from: a Readable (socket, pipe) or a file read
// with positional reads.  Both hand out bytes the caller may keep: a
// Readable's chunks are fresh buffers, and file reads allocate per call.
import type { Readable } from 'node:stream';
import { read as fsRead, readSync } from 'node:fs';
import { IoError } from '../../errors.js';
import { describeIoError } from './byte-sink.js';

export interface ByteSource {
  /**
   * Exactly `n` bytes, or fewer only when the input ends first.  With
   * `scratch` (at least `n` bytes), bytes that must be gathered from several
   * chunks go there instead of into a fresh buffer: the result is then
   * valid only until the caller reuses `scratch`.
   */
  read(n: number, scratch?: Uint8Array): Promise<Uint8Array>;
  /** Skips `n` bytes; returns how many were skipped (fewer at end of input). */
  skip(n: number): Promise<number>;
}

export function isByteSource(x: unknown): x is ByteSource {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as ByteSource).read === 'function' &&
    typeof (x as ByteSource).skip === 'function'
  );
}

const EMPTY = new Uint8Array(0);
/** Bytes queued before the input is paused, and below which it is resumed. */
const HIGH_WATER = 16 << 20;
const LOW_WATER = 4 << 20;

/**
 * Reads from a Readable without ending it early: the caller still owns the
 * stream, and bytes after the END record stay buffered in this source.
 */
export function readableSource(input: Readable): ByteSource {
  return new ReadableSource(input);
}

/**
 * Flowing mode with our own queue and watermarks: the async iterator paid
 * a promise per 64 KiB chunk and, past the stream's 16 KiB highWaterMark,
 * stopped and restarted the socket's reads over and over.
 */
class ReadableSource implements ByteSource {
  private readonly queue: Uint8Array[] = [];
  private head = 0; // bytes of queue[0] already consumed
  private buffered = 0;
  private done = false;
  private failure: unknown = null;
  private wake: (() => void) | null = null;

  constructor(private readonly input: Readable) {
    input.on('data', (raw: Uint8Array | string) => this.onData(raw));
    input.once('end', () => this.onEnd());
    input.once('close', () => this.onEnd());
    input.once('error', (err: unknown) => {
      this.failure ??= err;
      this.done = true;
      this.notify();
    });
  }

  async read(n: number, scratch?: Uint8Array): Promise<Uint8Array> {
    while (this.buffered < n && !this.done) await this.pull();
    const m = Math.min(n, this.buffered);
    if (m === 0) return EMPTY;
    const first = this.queue[0]!;
    if (first.length - this.head >= m) {
      const view = first.subarray(this.head, this.head + m);
      this.take(m, null);
      return view;
    }
    const out = scratch && scratch.length >= m ? scratch.subarray(0, m) : new Uint8Array(m);
    this.take(m, out);
    return out;
  }

  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0) {
        if (this.done) break;
        await this.pull();
        continue;
      }
      const k = Math.min(left, this.buffered);
      this.take(k, null);
      left -= k;
    }
    return n - left;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private onData(raw: Uint8Array | string): void {
    // Plain Uint8Array views, not Buffers: decoded msgpack bin fields are views of these, and callers expect Uint8Array.
    const b = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
    if (b.length === 0) return;
    this.queue.push(new Uint8Array(b.buffer, b.byteOffset, b.length));
    this.buffered += b.length;
    if (this.buffered >= HIGH_WATER) this.input.pause();
    this.notify();
  }

  private onEnd(): void {
    this.done = true;
    this.notify();
  }

  private async pull(): Promise<void> {
    if (this.failure !== null)
      throw new IoError(`read failed: ${describeIoError(this.failure)}`, { cause: this.failure });
    if (this.done) return;
    if (this.input.isPaused()) this.input.resume();
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    if (this.failure !== null)
      throw new IoError(`read failed: ${describeIoError(this.failure)}`, { cause: this.failure });
  }

  /** Consumes `n` buffered bytes, copying them to `out` if given. */
  private take(n: number, out: Uint8Array | null): void {
    let off = 0;
    while (off < n) {
      const c = this.queue[0]!;
      const k = Math.min(n - off, c.length - this.head);
      if (out) out.set(c.subarray(this.head, this.head + k), off);
      off += k;
      this.head += k;
      if (this.head === c.length) {
        this.queue.shift();
        this.head = 0;
      }
    }
    this.buffered -= n;
    if (this.buffered < LOW_WATER && this.input.isPaused() && !this.done) this.input.resume();
  }
}

/**
 * Positional reads from `fd` starting at `start`; `size` is the file's
 * length.  `sync`: readSync instead of the thread pool, for the small reads
 * of headers and sections while other threads load (a pool round trip took
 * tens of µs, ms on a loaded 2-core host); the event loop waits meanwhile.
 */
export function fileSource(
  fd: number,
  size: number,
  start = 0,
  opts: { sync?: boolean } = {},
): ByteSource & { readonly position: number } {
  let pos = start;
  const failed = (err: unknown): IoError => new IoError(`read failed: ${describeIoError(err)}`, { cause: err });
  const readAt = opts.sync
    ? async (buf: Uint8Array, at: number): Promise<number> => {
        try {
          return readSync(fd, buf, 0, buf.length, at);
        } catch (err) {
          throw failed(err);
        }
      }
    : (buf: Uint8Array, at: number): Promise<number> =>
        new Promise((resolve, reject) => {
          fsRead(fd, buf, 0, buf.length, at, (err, n) => (err ? reject(failed(err)) : resolve(n)));
        });
  return {
    get position() {
      return pos;
    },
    async read(n, scratch) {
      const m = Math.max(0, Math.min(n, size - pos));
      if (m === 0) return EMPTY;
      const out = scratch && scratch.length >= m ? scratch.subarray(0, m) : new Uint8Array(m);
      let got = 0;
      while (got < m) {
        const k = await readAt(out.subarray(got), pos + got);
        if (k === 0) break; // the file shrank under us: report what we have
        got += k;
      }
      pos += got;
      return got === m ? out : out.subarray(0, got);
    },
    async skip(n) {
      const k = Math.max(0, Math.min(n, size - pos));
      pos += k;
      return k;
    },
  };
}
