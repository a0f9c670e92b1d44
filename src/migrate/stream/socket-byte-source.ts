// A ByteSource that the kernel reads into directly: an accepted plain socket
// re-opened with Node's `onread`, whose buffer is the free part of a ring.
// Streams allocate a fresh Buffer per 64 KiB read, and the external memory
// kept V8's major GC busy: receiving cost about 2.5 times the CPU with
// 'data' events (docs/benchmarks.md).
//
// Lifetime: like every ByteSource, read() without `scratch` returns bytes
// the caller may keep (a copy).  With `scratch` it may return a view of the
// ring, valid until the next read() or skip(): the RAM path copies pages out
// before asking for more.
import { Socket } from 'node:net';
import { dupFd } from '../../kvm/libc.js';
import { IoError } from '../../errors.js';
import type { ByteSource } from './byte-source.js';
import { describeIoError } from './byte-sink.js';
import { mark, TRACING } from '../../trace.js';

const RING_BYTES = 16 << 20;
/** Stop reading below this much free ring space; start again above RESUME. */
const MIN_FREE = 256 << 10;
const RESUME = 4 << 20;
const EMPTY = new Uint8Array(0);

export interface SocketSource {
  readonly source: ByteSource;
  /** The socket to write answers on (and to destroy); the accepted one is closed. */
  readonly socket: Socket;
}

/**
 * Takes over `accepted` (a plain TCP or unix socket from a server with
 * pauseOnConnect, so nothing was read yet), or returns null when its
 * descriptor is not reachable and the caller should read it as a stream.
 */
export function socketSource(accepted: Socket): SocketSource | null {
  const fd = (accepted as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  const ring = new Uint8Array(RING_BYTES);
  let head = 0; // absolute offset of the next unread byte
  let tail = 0; // absolute offset one past the last byte received
  let held = 0; // start of the bytes handed out by the last read (in use until the next)
  let ended = false;
  let failure: unknown = null;
  let paused = false;
  let wake: (() => void) | null = null;
  const notify = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  const free = (): number => RING_BYTES - (tail - held);
  // A dup keeps the connection open once the accepted socket closes its own descriptor.
  // `onread` is a documented constructor option that @types/node 20 lists only for connect().
  const socket = new Socket({
    fd: dupFd(fd),
    readable: true,
    writable: true,
    allowHalfOpen: true,
    onread: {
      buffer: () => {
        const at = tail % RING_BYTES;
        return ring.subarray(at, at + Math.min(RING_BYTES - at, free()));
      },
      callback: (n: number) => {
        if (TRACING) mark(`read.${n}`);
        tail += n;
        notify();
        paused = free() < MIN_FREE;
        return !paused;
      },
    },
  } as ConstructorParameters<typeof Socket>[0]);
  accepted.destroy();
  socket.once('end', () => {
    ended = true;
    notify();
  });
  socket.once('close', () => {
    ended = true;
    notify();
  });
  socket.on('error', (err) => {
    failure ??= err;
    ended = true;
    notify();
  });
  const release = (): void => {
    held = head;
    if (paused && free() >= RESUME) {
      paused = false;
      socket.resume();
    }
  };
  const waitForData = async (): Promise<void> => {
    if (failure !== null) throw new IoError(`read failed: ${describeIoError(failure)}`, { cause: failure });
    if (ended) return;
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
  };
  const copyOut = (out: Uint8Array, from: number): void => {
    const at = from % RING_BYTES;
    const first = Math.min(out.length, RING_BYTES - at);
    out.set(ring.subarray(at, at + first), 0);
    if (first < out.length) out.set(ring.subarray(0, out.length - first), first);
  };
  const source: ByteSource = {
    async read(n, scratch) {
      release();
      // More than the ring holds cannot arrive while the caller holds nothing: read in pieces.
      if (n > RING_BYTES - RESUME) {
        const out = scratch && scratch.length >= n ? scratch.subarray(0, n) : new Uint8Array(n);
        let got = 0;
        while (got < n) {
          const part = await source.read(Math.min(n - got, RESUME));
          if (part.length === 0) break;
          out.set(part, got);
          got += part.length;
        }
        return got === n ? out : out.subarray(0, got);
      }
      while (tail - head < n && !ended) {
        release();
        await waitForData();
      }
      if (failure !== null && tail - head < n)
        throw new IoError(`read failed: ${describeIoError(failure)}`, { cause: failure });
      const m = Math.min(n, tail - head);
      if (m === 0) return EMPTY;
      const at = head % RING_BYTES;
      let out: Uint8Array;
      if (scratch !== undefined && at + m <= RING_BYTES) out = ring.subarray(at, at + m);
      else {
        out = scratch && scratch.length >= m ? scratch.subarray(0, m) : new Uint8Array(m);
        copyOut(out, head);
      }
      head += m;
      return out;
    },
    async skip(n) {
      let left = n;
      while (left > 0) {
        release();
        if (tail === head) {
          if (ended) break;
          await waitForData();
          continue;
        }
        const k = Math.min(left, tail - head);
        head += k;
        left -= k;
      }
      release();
      return n - left;
    },
  };
  return { source, socket };
}
