// Snapshot files: a stream written atomically (temporary file in the same
// directory, fsync, rename, fsync of the directory) so a crash or a full disk
// leaves either the old file or the new one at `path`, never a mix.
import { randomBytes } from 'node:crypto';
import {
  close,
  closeSync,
  fstat,
  fstatSync,
  fsync,
  lstatSync,
  open,
  openSync,
  rename,
  type Stats,
  unlink,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { FormatError, IoError } from '../../errors.js';
import type { ReadHeader, StreamCounts, StreamHeader, StreamRecord } from './records.js';
import { type ByteSink, describeIoError, fileSink } from './byte-sink.js';
import { fileSource } from './byte-source.js';
import { type ReaderOptions, StreamReader } from './reader.js';
import { StreamWriter, type WriterOptions } from './writer.js';

const openP = promisify(open);
const closeP = promisify(close);
const fsyncP = promisify(fsync);
const renameP = promisify(rename);
const unlinkP = promisify(unlink);
const fstatP = promisify(fstat);

export interface SnapshotWriteResult {
  readonly counts: StreamCounts;
  /** File size in bytes. */
  readonly bytes: number;
}

function isErrno(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string';
}

/** Node errno errors and sink failures become one-line IoErrors naming `path`; other errors pass. */
function asIoError(err: unknown, what: string): unknown {
  const cause = err instanceof IoError && err.cause !== undefined ? err.cause : err;
  if (isErrno(cause) || err instanceof IoError)
    return new IoError(`${what}: ${describeIoError(cause)}`, { cause: err });
  return err;
}

/**
 * Writes a stream to `path` atomically: `produce` writes sections and RAM
 * through the writer it is given; the header and END are written here.  On
 * any failure the temporary file is removed, a previous file at `path` is
 * left as it was, and the error is rethrown (I/O failures as IoError).
 */
export interface SnapshotWriteOptions extends WriterOptions {
  /**
   * fsync the file and its directory (default true).  Without it the rename
   * still never exposes a partial file, but a power loss may leave an empty
   * or old one; the fsync is a large share of the save time (benchRam;
   * docs/benchmarks.md).
   */
  readonly sync?: boolean;
  /**
   * Called once every byte has been handed to the kernel, before the fsync:
   * whatever the file was made from (a paused guest) may change from here on.
   * The fsync is a large share of a save (`npm run bench -- snapshot`).
   */
  readonly onWritten?: () => void;
}

/** What a non-regular file is, for the message that refuses it. */
function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symbolic link (name the file it points to)';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Refuses a snapshot target that is not a regular file or absent: the file
 * is written beside it and renamed over it, which would replace a device
 * node, a FIFO or a symbolic link (not write through it) and fails on a
 * directory.  A symbolic link is refused rather than followed: renaming
 * over its target would need the target's directory to be writable and
 * the same file system, and the user may not know where it points.
 */
export function checkSnapshotTarget(path: string): void {
  const what = `cannot write snapshot ${path === '' ? "''" : path}`;
  if (path === '') throw new IoError(`${what}: empty path`);
  if (path.endsWith('/')) throw new IoError(`${what}: the name ends in '/' (a directory)`);
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (isErrno(err) && err.code === 'ENOENT') return;
    throw asIoError(err, what);
  }
  if (!st.isFile())
    throw new IoError(`${what}: it is ${fileKind(st)}, not a snapshot file${st.isDirectory() ? ' (EISDIR)' : ''}`);
}

export async function writeSnapshotFile(
  path: string,
  header: StreamHeader,
  produce: (writer: StreamWriter) => Promise<void>,
  options: SnapshotWriteOptions = {},
): Promise<SnapshotWriteResult> {
  checkSnapshotTarget(path);
  const sync = options.sync ?? true;
  const what = `cannot write snapshot ${path}`;
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${randomBytes(4).toString('hex')}`);
  let fd = -1;
  let renamed = false;
  let sink: ByteSink | null = null;
  try {
    fd = await openP(tmp, 'wx', 0o644);
    sink = fileSink(fd);
    const writer = await StreamWriter.start(sink, header, options);
    await produce(writer);
    const counts = await writer.end();
    const bytes = writer.position;
    options.onWritten?.();
    if (sync) await fsyncP(fd);
    const f = fd;
    fd = -1;
    await closeP(f);
    // Again: something may have taken the name while the file was written.
    checkSnapshotTarget(path);
    await renameP(tmp, path);
    renamed = true;
    if (sync) await fsyncDir(dirname(path));
    return { counts, bytes };
  } catch (err) {
    if (fd >= 0) {
      // Writes still in flight would land on whatever file reuses the fd number: wait for them first.
      await (sink as ByteSink | null)?.flush().catch(() => undefined);
      await closeP(fd).catch(() => undefined);
    }
    if (!renamed) await unlinkP(tmp).catch(() => undefined);
    throw asIoError(err, what);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await openP(dir, 'r');
  try {
    await fsyncP(fd);
  } finally {
    await closeP(fd);
  }
}

export interface SnapshotFile extends AsyncIterable<StreamRecord> {
  readonly path: string;
  readonly header: ReadHeader;
  /** File size in bytes. */
  readonly size: number;
  /** END's totals once iteration reached it. */
  readonly end: Readonly<StreamCounts> | null;
  /** Closes the file; idempotent. */
  close(): Promise<void>;
}

export interface SnapshotOpenOptions extends ReaderOptions {
  /**
   * Open, read and close with synchronous calls instead of libuv's thread
   * pool: for a reader that wants record heads and page lists only
   * (skipRamData), whose reads are a few bytes each and whose every await of
   * a pool round trip (tens of µs, ms on a loaded 2-core machine) would
   * stall the consumer.  Not for reading page data: the event loop waits
   * meanwhile.
   */
  readonly syncReads?: boolean;
}

/**
 * Opens a snapshot and checks its preamble and HEADER before returning; the
 * records follow through (one) iteration, which also rejects bytes after END.
 * Errors name the file.
 */
export async function openSnapshot(path: string, options: SnapshotOpenOptions = {}): Promise<SnapshotFile> {
  // With syncReads the open, fstat and close are synchronous too: each pool
  // round trip waits for a thread on a machine busy loading the emulator.
  const sync = options.syncReads ?? false;
  let fd: number;
  try {
    fd = sync ? openSync(path, 'r') : await openP(path, 'r');
  } catch (err) {
    throw asIoError(err, `cannot open snapshot ${path}`);
  }
  let closed = false;
  const closeOnce = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (sync) closeSync(fd);
    else await closeP(fd);
  };
  const named = (err: unknown): unknown =>
    err instanceof FormatError
      ? new FormatError(`${path}: ${err.message}`, { cause: err })
      : asIoError(err, `cannot read snapshot ${path}`);
  try {
    const size = (sync ? fstatSync(fd) : await fstatP(fd)).size;
    const src = fileSource(fd, size, 0, { sync });
    const reader = await StreamReader.open(src, options);
    return {
      path,
      header: reader.header,
      size,
      get end() {
        return reader.end;
      },
      close: closeOnce,
      async *[Symbol.asyncIterator]() {
        try {
          yield* reader;
          if (src.position < size)
            throw new FormatError(`${size - src.position} unexpected bytes after the END record`);
        } catch (err) {
          throw named(err);
        }
      },
    };
  } catch (err) {
    await closeOnce().catch(() => undefined);
    throw named(err);
  }
}
