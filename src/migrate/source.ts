// Where a stream's bytes come from: a Readable (socket, pipe) or a file read
// with positional reads.  Both hand out bytes the caller may keep: a
// Readable's chunks are fresh buffers, and file reads allocate per call.
import type { Readable } from 'node:stream';
import { read as fsRead } from 'node:fs';
import { IoError } from '../errors.js';
import { describeIoError } from './sink.js';

export interface ByteSource {
  /** Exactly `n` bytes, or fewer only when the input ends first. */
  read(n: number): Promise<Uint8Array>;
  /** Skips `n` bytes; returns how many were skipped (fewer at end of input). */
  skip(n: number): Promise<number>;
}

export function isByteSource(x: unknown): x is ByteSource {
  return typeof x === 'object' && x !== null && typeof (x as ByteSource).read === 'function' && typeof (x as ByteSource).skip === 'function';
}

const EMPTY = new Uint8Array(0);

/**
 * Reads from a Readable without ending it early: the caller still owns the
 * stream, and bytes after the END record stay buffered in this source.
 */
export function readableSource(input: Readable): ByteSource {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Uint8Array | string>;
  const queue: Uint8Array[] = [];
  let head = 0; // bytes of queue[0] already consumed
  let buffered = 0;
  let done = false;
  const pull = async (): Promise<void> => {
    let r: IteratorResult<Uint8Array | string>;
    try {
      r = await it.next();
    } catch (err) {
      throw new IoError(`read failed: ${describeIoError(err)}`, { cause: err });
    }
    if (r.done) {
      done = true;
      return;
    }
    // Plain Uint8Array views, not Buffers: decoded msgpack bin fields are views of these, and callers expect Uint8Array.
    const raw = typeof r.value === 'string' ? Buffer.from(r.value, 'latin1') : r.value;
    const chunk = new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
    if (chunk.length === 0) return;
    queue.push(chunk);
    buffered += chunk.length;
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
  };
  return {
    async read(n) {
      while (buffered < n && !done) await pull();
      const m = Math.min(n, buffered);
      if (m === 0) return EMPTY;
      const first = queue[0]!;
      if (first.length - head >= m) {
        const view = first.subarray(head, head + m);
        take(m, null);
        return view;
      }
      const out = new Uint8Array(m);
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

/** Positional reads from `fd` starting at `start`; `size` is the file's length. */
export function fileSource(fd: number, size: number, start = 0): ByteSource & { readonly position: number } {
  let pos = start;
  const readAt = (buf: Uint8Array, at: number): Promise<number> =>
    new Promise((resolve, reject) => {
      fsRead(fd, buf, 0, buf.length, at, (err, n) => (err ? reject(new IoError(`read failed: ${describeIoError(err)}`, { cause: err })) : resolve(n)));
    });
  return {
    get position() {
      return pos;
    },
    async read(n) {
      const m = Math.max(0, Math.min(n, size - pos));
      if (m === 0) return EMPTY;
      const out = new Uint8Array(m);
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
