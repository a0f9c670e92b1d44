// Where a stream's bytes go.  The writer hands a sink whole chunks and never
// touches a chunk again, so a sink may hold it until the bytes are out; the
// returned promise is the backpressure: it settles when the sink can take
// more, not necessarily when the bytes reached the disk or the wire.
import type { Writable } from 'node:stream';
import { write as fsWrite } from 'node:fs';
import { IoError } from '../../errors.js';

export interface ByteSink {
  /**
   * Queues `chunk` (ownership passes to the sink); resolves when more may be
   * queued.  `release`, if given, is called once the sink is done with the
   * chunk (written or failed), so the caller may reuse it.
   */
  write(chunk: Uint8Array, release?: () => void): Promise<void>;
  /** Waits until every queued byte is written; reports the first write error. */
  flush(): Promise<void>;
}

/** A short one-line description of a Node I/O error for an IoError message. */
export function describeIoError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : '';
  const known: Record<string, string> = {
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    EIO: 'input/output error',
    EROFS: 'read-only file system',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EPIPE: 'connection closed by the peer',
    ECONNRESET: 'connection reset by the peer',
    ENOENT: 'no such file or directory',
  };
  const text = known[code] ?? (e instanceof Error ? e.message : String(err));
  return code ? `${text} (${code})` : text;
}

/**
 * Positional writes into an open file descriptor from `start` on.  Several
 * writes are in flight at once (libuv runs them on its thread pool) until
 * `highWater` bytes are pending; 8 MiB keeps two cores busy encoding while
 * the disk writes (benchRam, "encode to file").
 */
export function fileSink(fd: number, start = 0, highWater = 8 << 20): ByteSink {
  let position = start;
  let pending = 0;
  let failure: unknown = null;
  let waiters: Array<() => void> = [];
  const wake = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const writeAll = (chunk: Uint8Array, at: number, done: (err: unknown) => void): void => {
    fsWrite(fd, chunk, 0, chunk.length, at, (err, n) => {
      if (err) return done(err);
      if (n < chunk.length) return writeAll(chunk.subarray(n), at + n, done);
      done(null);
    });
  };
  const check = (): void => {
    if (failure !== null) throw new IoError(`write failed: ${describeIoError(failure)}`, { cause: failure });
  };
  return {
    async write(chunk, release) {
      check();
      const at = position;
      position += chunk.length;
      pending += chunk.length;
      writeAll(chunk, at, (err) => {
        if (err && failure === null) failure = err;
        pending -= chunk.length;
        release?.();
        wake();
      });
      while (pending > highWater && failure === null) await new Promise<void>((r) => waiters.push(r));
      check();
    },
    async flush() {
      while (pending > 0) await new Promise<void>((r) => waiters.push(r));
      check();
    },
  };
}

/**
 * A `stream.Writable` (socket, pipe, file stream), honouring its 'drain'.
 * The sink does not end `out`: the caller owns it and may keep using it
 * (a migration reads the peer's answer on the same socket).
 */
const WRITE_WINDOW = 8 << 20;

export function writableSink(out: Writable): ByteSink {
  let failure: unknown = null;
  let last: Promise<void> = Promise.resolve();
  const onError = (err: unknown): void => {
    if (failure === null) failure = err;
  };
  out.on('error', onError);
  const check = (): void => {
    if (failure !== null) throw new IoError(`write failed: ${describeIoError(failure)}`, { cause: failure });
    if (out.destroyed) throw new IoError('write failed: the output was closed');
  };
  const drained = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        out.off('drain', done);
        out.off('close', done);
        out.off('error', done);
        resolve();
      };
      out.on('drain', done);
      out.on('close', done);
      out.on('error', done);
    });
  return {
    async write(chunk, release) {
      check();
      // Callbacks run in write order, so the last one settling means all did.
      last = new Promise<void>((resolve) =>
        out.write(chunk, (err) => {
          if (err) onError(err);
          release?.();
          resolve();
        }),
      );
      // Up to WRITE_WINDOW queued: the caller prepares the next batch while
      // the kernel still has this one to send (waiting for each 'drain' left
      // the socket idle while a batch was copied and checksummed).
      if (out.writableLength > WRITE_WINDOW) await drained();
      check();
    },
    async flush() {
      check();
      await last;
      check();
    },
  };
}

/** Keeps every chunk in memory (tests, and rehearsing the state path); `bytes()` joins them. */
export function memorySink(): ByteSink & { bytes(): Uint8Array } {
  const chunks: Uint8Array[] = [];
  return {
    async write(chunk) {
      chunks.push(chunk);
    },
    async flush() {},
    bytes: () => Buffer.concat(chunks),
  };
}
