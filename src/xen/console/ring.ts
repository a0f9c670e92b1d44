// The backend end of a guest's PV console ring: Xen's public io/console.h,
// struct xencons_interface { char in[1024]; char out[2048]; uint32 in_cons,
// in_prod, out_cons, out_prod; } at the start of the console page.  The
// guest produces into `out` and consumes from `in`; the backend does the
// opposite.  Indexes are free-running 32-bit counters, reduced modulo the
// ring size (MASK_XENCONS_IDX) only to address a byte.
//
// The guest is untrusted and writes the page while we read it: both indexes
// are read once per pass, and a pair that claims more than a ring's worth
// (prod - cons > size, which covers cons "ahead" of prod too) is not served,
// as Xen's xenconsoled does ("ring is screwed: ignore it"): no byte outside
// the ring is read or written, no index is moved, and the caller is told so
// it can log.  The guest may repair its indexes and the ring works again.
// docs/xen-abi.md, "PV console".

export const CONSOLE_IN_OFFSET = 0;
export const CONSOLE_IN_SIZE = 1024;
export const CONSOLE_OUT_OFFSET = 1024;
export const CONSOLE_OUT_SIZE = 2048;
/** Byte offsets of the four index words in the page. */
export const ConsoleIndex = { in_cons: 3072, in_prod: 3076, out_cons: 3080, out_prod: 3084 } as const;
/** sizeof(struct xencons_interface). */
export const CONSOLE_INTERFACE_SIZE = 3088;

/** Why a direction of the ring was not served on this pass. */
export interface RingFault {
  readonly direction: 'in' | 'out';
  /** prod - cons as the guest left them (mod 2^32). */
  readonly used: number;
}

export class ConsoleRing {
  private readonly words: Int32Array | null;
  private readonly dv: DataView;

  /** @param page the console page (at least CONSOLE_INTERFACE_SIZE bytes), shared with the guest */
  constructor(private readonly page: Uint8Array) {
    if (page.length < CONSOLE_INTERFACE_SIZE)
      throw new RangeError(`a console ring page needs ${CONSOLE_INTERFACE_SIZE} bytes`);
    // Index words through Atomics when aligned (sequentially consistent): a
    // producer index is read before the bytes it covers, and bytes are
    // written before the index that publishes them.
    this.words =
      page.byteOffset % 4 === 0 ? new Int32Array(page.buffer, page.byteOffset, CONSOLE_INTERFACE_SIZE / 4) : null;
    this.dv = new DataView(page.buffer, page.byteOffset, CONSOLE_INTERFACE_SIZE);
  }

  /** An empty ring (a freshly built guest's page): all four indexes 0. */
  reset(): void {
    for (const off of Object.values(ConsoleIndex)) this.store(off, 0);
  }

  /**
   * Takes up to `max` bytes the guest has written (oldest first) and frees
   * their space.  Returns the bytes, or a fault when the indexes are
   * inconsistent (nothing is taken then).
   */
  takeOutput(max: number): Uint8Array | RingFault {
    const cons = this.load(ConsoleIndex.out_cons);
    const prod = this.load(ConsoleIndex.out_prod);
    const used = (prod - cons) >>> 0;
    if (used > CONSOLE_OUT_SIZE) return { direction: 'out', used };
    const n = Math.min(used, Math.max(0, Math.floor(max)));
    const out = new Uint8Array(n);
    const at = cons & (CONSOLE_OUT_SIZE - 1);
    const first = Math.min(n, CONSOLE_OUT_SIZE - at);
    out.set(this.page.subarray(CONSOLE_OUT_OFFSET + at, CONSOLE_OUT_OFFSET + at + first));
    if (n > first) out.set(this.page.subarray(CONSOLE_OUT_OFFSET, CONSOLE_OUT_OFFSET + n - first), first);
    if (n > 0) this.store(ConsoleIndex.out_cons, (cons + n) >>> 0);
    return out;
  }

  /**
   * Puts as many of `bytes` as there is room for into the guest's input
   * ring.  Returns how many went in (0 when it is full), or a fault when the
   * indexes are inconsistent (nothing is written then).
   */
  putInput(bytes: Uint8Array): number | RingFault {
    const cons = this.load(ConsoleIndex.in_cons);
    const prod = this.load(ConsoleIndex.in_prod);
    const used = (prod - cons) >>> 0;
    if (used > CONSOLE_IN_SIZE) return { direction: 'in', used };
    const n = Math.min(CONSOLE_IN_SIZE - used, bytes.length);
    const at = prod & (CONSOLE_IN_SIZE - 1);
    const first = Math.min(n, CONSOLE_IN_SIZE - at);
    this.page.set(bytes.subarray(0, first), CONSOLE_IN_OFFSET + at);
    if (n > first) this.page.set(bytes.subarray(first, n), CONSOLE_IN_OFFSET);
    if (n > 0) this.store(ConsoleIndex.in_prod, (prod + n) >>> 0);
    return n;
  }

  /** The four indexes as the guest sees them now (inspect, tests). */
  indexes(): Record<keyof typeof ConsoleIndex, number> {
    return {
      in_cons: this.load(ConsoleIndex.in_cons),
      in_prod: this.load(ConsoleIndex.in_prod),
      out_cons: this.load(ConsoleIndex.out_cons),
      out_prod: this.load(ConsoleIndex.out_prod),
    };
  }

  private load(off: number): number {
    return this.words ? Atomics.load(this.words, off / 4) >>> 0 : this.dv.getUint32(off, true);
  }

  private store(off: number, v: number): void {
    if (this.words) Atomics.store(this.words, off / 4, v | 0);
    else this.dv.setUint32(off, v >>> 0, true);
  }
}

export function isRingFault(r: unknown): r is RingFault {
  return typeof r === 'object' && r !== null && 'direction' in r;
}
