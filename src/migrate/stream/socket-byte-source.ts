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
  const source = new RingSource();
  // A dup keeps the connection open once the accepted socket closes its own descriptor.
  // `onread` is a documented constructor option that @types/node 20 lists only for connect().
  const socket = new Socket({
    fd: dupFd(fd),
    readable: true,
    writable: true,
    allowHalfOpen: true,
    onread: {
      buffer: () => source.space(),
      callback: (n: number) => source.received(n),
    },
  } as ConstructorParameters<typeof Socket>[0]);
  accepted.destroy();
  source.watch(socket);
  return { source, socket };
}

/** The ring the kernel reads a socket into, read out as a ByteSource. */
class RingSource implements ByteSource {
  private readonly ring = new Uint8Array(RING_BYTES);
  private head = 0; // absolute offset of the next unread byte
  private tail = 0; // absolute offset one past the last byte received
  private held = 0; // start of the bytes handed out by the last read (in use until the next)
  private ended = false;
  private failure: unknown = null;
  private paused = false;
  private wake: (() => void) | null = null;
  private socket: Socket | null = null;

  /** Where the kernel reads next (onread's buffer): the free part of the ring from the tail on. */
  space(): Uint8Array {
    const at = this.tail % RING_BYTES;
    return this.ring.subarray(at, at + Math.min(RING_BYTES - at, this.free()));
  }

  /** `n` bytes arrived at the tail (onread's callback); false asks the socket to stop reading. */
  received(n: number): boolean {
    if (TRACING) mark(`read.${n}`);
    this.tail += n;
    this.notify();
    this.paused = this.free() < MIN_FREE;
    return !this.paused;
  }

  /** Listens for the end of `socket`'s input and its errors, and resumes it once there is room. */
  watch(socket: Socket): void {
    this.socket = socket;
    socket.once('end', () => {
      this.ended = true;
      this.notify();
    });
    socket.once('close', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('error', (err) => {
      this.failure ??= err;
      this.ended = true;
      this.notify();
    });
  }

  async read(n: number, scratch?: Uint8Array): Promise<Uint8Array> {
    this.release();
    // More than the ring holds cannot arrive while the caller holds nothing: read in pieces.
    if (n > RING_BYTES - RESUME) return this.readInPieces(n, scratch);
    while (this.tail - this.head < n && !this.ended) {
      this.release();
      await this.waitForData();
    }
    if (this.failure !== null && this.tail - this.head < n)
      throw new IoError(`read failed: ${describeIoError(this.failure)}`, { cause: this.failure });
    const m = Math.min(n, this.tail - this.head);
    if (m === 0) return EMPTY;
    const at = this.head % RING_BYTES;
    let out: Uint8Array;
    if (scratch !== undefined && at + m <= RING_BYTES) out = this.ring.subarray(at, at + m);
    else {
      out = scratch && scratch.length >= m ? scratch.subarray(0, m) : new Uint8Array(m);
      this.copyOut(out, this.head);
    }
    this.head += m;
    return out;
  }

  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      this.release();
      if (this.tail === this.head) {
        if (this.ended) break;
        await this.waitForData();
        continue;
      }
      const k = Math.min(left, this.tail - this.head);
      this.head += k;
      left -= k;
    }
    this.release();
    return n - left;
  }

  private async readInPieces(n: number, scratch: Uint8Array | undefined): Promise<Uint8Array> {
    const out = scratch && scratch.length >= n ? scratch.subarray(0, n) : new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const part = await this.read(Math.min(n - got, RESUME));
      if (part.length === 0) break;
      out.set(part, got);
      got += part.length;
    }
    return got === n ? out : out.subarray(0, got);
  }

  private free(): number {
    return RING_BYTES - (this.tail - this.held);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The caller is done with what the last read handed out. */
  private release(): void {
    this.held = this.head;
    if (this.paused && this.free() >= RESUME) {
      this.paused = false;
      this.socket!.resume();
    }
  }

  private async waitForData(): Promise<void> {
    if (this.failure !== null)
      throw new IoError(`read failed: ${describeIoError(this.failure)}`, { cause: this.failure });
    if (this.ended) return;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
  }

  private copyOut(out: Uint8Array, from: number): void {
    const at = from % RING_BYTES;
    const first = Math.min(out.length, RING_BYTES - at);
    out.set(this.ring.subarray(at, at + first), 0);
    if (first < out.length) out.set(this.ring.subarray(0, out.length - first), first);
  }
}
