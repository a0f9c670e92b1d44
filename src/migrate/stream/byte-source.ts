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
  // Flowing mode with our own queue and watermarks: the async iterator paid
  // a promise per 64 KiB chunk and, past the stream's 16 KiB highWaterMark,
  // stopped and restarted the socket's reads over and over.
  const queue: Uint8Array[] = [];
  let head = 0; // bytes of queue[0] already consumed
  let buffered = 0;
  let done = false;
  let failure: unknown = null;
  let wake: (() => void) | null = null;
  const notify = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  const onData = (raw: Uint8Array | string): void => {
    // Plain Uint8Array views, not Buffers: decoded msgpack bin fields are views of these, and callers expect Uint8Array.
    const b = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
    if (b.length === 0) return;
    queue.push(new Uint8Array(b.buffer, b.byteOffset, b.length));
    buffered += b.length;
    if (buffered >= HIGH_WATER) input.pause();
    notify();
  };
  const onEnd = (): void => {
    done = true;
    notify();
  };
  const onError = (err: unknown): void => {
    failure ??= err;
    done = true;
    notify();
  };
  input.on('data', onData);
  input.once('end', onEnd);
  input.once('close', onEnd);
  input.once('error', onError);
  const pull = async (): Promise<void> => {
    if (failure !== null) throw new IoError(`read failed: ${describeIoError(failure)}`, { cause: failure });
    if (done) return;
    if (input.isPaused()) input.resume();
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    if (failure !== null) throw new IoError(`read failed: ${describeIoError(failure)}`, { cause: failure });
  };
  const take = (n: number, out: Uint8Array | null): void => {
    let off = 0;
    while (off < n) {
      const c = queue[0]!;
      const k = Math.min(n - off, c.length - head);
      if (out) out.set(c.subarray(head, head + k), off);
      off += k;
      head += k;
      if (head === c.length) {
        queue.shift();
        head = 0;
      }
    }
    buffered -= n;
    if (buffered < LOW_WATER && input.isPaused() && !done) input.resume();
  };
  return {
    async read(n, scratch) {
      while (buffered < n && !done) await pull();
      const m = Math.min(n, buffered);
      if (m === 0) return EMPTY;
      const first = queue[0]!;
      if (first.length - head >= m) {
        const view = first.subarray(head, head + m);
        take(m, null);
        return view;
      }
      const out = scratch && scratch.length >= m ? scratch.subarray(0, m) : new Uint8Array(m);
      take(m, out);
      return out;
    },
    async skip(n) {
      let left = n;
      while (left > 0) {
        if (buffered === 0) {
          if (done) break;
          await pull();
          continue;
        }
        const k = Math.min(left, buffered);
        take(k, null);
        left -= k;
      }
      return n - left;
    },
  };
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
