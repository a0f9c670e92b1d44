// The backend end of one guest's xenstore ring (struct xenstore_domain_interface
// in a page the guest shares): reads requests from req[], hands them to the
// server, and writes replies and watch events into rsp[] as space allows.
// The guest is untrusted: indexes are re-read and checked on every pass, a
// request may arrive a byte at a time across the ring's wrap, and a protocol
// violation stops the connection with the reason in the page's error field,
// as xenstored does.  All partial bytes live in the server's connection, so a
// snapshot of the server carries them; the page itself is guest RAM.
import type { XenstoreServer } from './server.js';
import { isPrivileged } from './store.js';
import {
  HEADER_SIZE,
  PAYLOAD_MAX,
  RING_INTERFACE_SIZE,
  RING_SIZE,
  RingConnection,
  RingError,
  RingOffset,
  ServerFeature,
  decodeHeader,
  encodeMessage,
  type XsMessage,
} from './wire.js';

const MASK = RING_SIZE - 1;
/** Bytes moved per direction in one `kick`: a guest that keeps writing cannot hold the caller forever. */
const MAX_BYTES_PER_KICK = 16 * RING_SIZE;
const EMPTY = new Uint8Array(0);

/** The features this backend offers; once advertised, never withdrawn. */
export const SERVER_FEATURES = ServerFeature.RECONNECTION | ServerFeature.ERROR;

export class XenstoreRing {
  private readonly words: Int32Array | null;
  private readonly dv: DataView;
  private readonly encoded = new WeakMap<XsMessage, Uint8Array>();

  /**
   * @param page the shared page (at least RING_INTERFACE_SIZE bytes)
   * @param notify signals the guest's event channel
   */
  constructor(
    private readonly server: XenstoreServer,
    readonly domid: number,
    private readonly page: Uint8Array,
    private readonly notify: () => void,
  ) {
    if (page.length < RING_INTERFACE_SIZE)
      throw new RangeError(`a xenstore ring page needs ${RING_INTERFACE_SIZE} bytes`);
    // Index words go through Atomics (sequentially consistent) when aligned: the
    // producer index is read before the data it covers, and data is written
    // before the producer index that publishes it.
    this.words =
      page.byteOffset % 4 === 0 ? new Int32Array(page.buffer, page.byteOffset, RING_INTERFACE_SIZE / 4) : null;
    this.dv = new DataView(page.buffer, page.byteOffset, RING_INTERFACE_SIZE);
  }

  /**
   * Sets up the page of a freshly built guest: empty queues, connected, no
   * error, features advertised before any byte moves.  Not for a restored
   * guest, whose page arrives with its RAM.
   */
  initialise(): void {
    for (const f of ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod'] as const) this.store(RingOffset[f], 0);
    this.store(RingOffset.connection, RingConnection.CONNECTED);
    this.store(RingOffset.error, RingError.NONE);
    this.store(RingOffset.server_features, SERVER_FEATURES);
  }

  /**
   * Does all the work there is: a reconnect request, replies and events that
   * now fit, requests that have arrived.  Call it when the guest signals and
   * when the server queues output for this domain.  Returns true when it
   * stopped at its per-call budget with work left (call again later).
   */
  kick(): boolean {
    const conn = this.server.connection(this.domid);
    if (this.load(RingOffset.connection) === RingConnection.RECONNECT) {
      this.reconnect();
      return false;
    }
    if (conn.error !== 0) return false;
    let moved = false;
    let budget = MAX_BYTES_PER_KICK;
    for (;;) {
      const wrote = this.writeOut();
      if (wrote < 0) return false;
      const read = this.readIn(budget);
      if (read < 0) return false;
      budget -= read;
      if (wrote > 0 || read > 0) moved = true;
      if (read === 0 && (wrote === 0 || conn.out.length === 0)) break;
      if (budget <= 0) {
        this.writeOut();
        this.notify();
        return true;
      }
    }
    if (moved) this.notify();
    return false;
  }

  /** Writes what fits of the queued output and signals the guest if anything moved. */
  flush(): void {
    if (this.server.connection(this.domid).error !== 0) return;
    if (this.writeOut() > 0) this.notify();
  }

  /** The guest asked to start over (ring reconnection): forget everything, empty both queues. */
  private reconnect(): void {
    this.server.resetConnection(this.domid);
    for (const f of ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod'] as const) this.store(RingOffset[f], 0);
    this.store(RingOffset.error, RingError.NONE);
    this.store(RingOffset.connection, RingConnection.CONNECTED);
    this.notify();
  }

  /** Stops serving the guest: the reason goes in the page, the connection's state is dropped. */
  private fail(reason: number): void {
    this.server.resetConnection(this.domid, reason);
    this.store(RingOffset.error, reason);
  }

  /** Bytes of requests consumed (processing each complete one), or -1 after a violation. */
  private readIn(budget: number): number {
    const conn = this.server.connection(this.domid);
    const limit = isPrivileged(this.domid) ? Infinity : this.server.quotas.outstanding;
    let total = 0;
    while (total < budget && conn.error === 0) {
      // Replies the guest has not taken yet: stop reading until it takes some.
      if (this.server.pendingReplies(this.domid) >= limit) break;
      const cons = this.load(RingOffset.req_cons);
      const prod = this.load(RingOffset.req_prod);
      const avail = (prod - cons) >>> 0;
      if (avail > RING_SIZE) {
        this.fail(RingError.RINGIDX);
        return -1;
      }
      if (avail === 0) break;
      const have = conn.inBuf.length;
      const want = have < HEADER_SIZE ? HEADER_SIZE - have : HEADER_SIZE + decodeHeader(conn.inBuf).len - have;
      const at = cons & MASK;
      const n = Math.min(avail, want, RING_SIZE - at);
      const next = new Uint8Array(have + n);
      next.set(conn.inBuf);
      next.set(this.page.subarray(RingOffset.req + at, RingOffset.req + at + n), have);
      conn.inBuf = next;
      this.store(RingOffset.req_cons, (cons + n) >>> 0);
      total += n;
      if (next.length < HEADER_SIZE) continue;
      const h = decodeHeader(next);
      if (h.len > PAYLOAD_MAX) {
        this.fail(RingError.PROTO);
        return -1;
      }
      if (next.length < HEADER_SIZE + h.len) continue;
      conn.inBuf = EMPTY;
      this.server.handle(this.domid, { type: h.type, reqId: h.reqId, txId: h.txId, payload: next.slice(HEADER_SIZE) });
    }
    return total;
  }

  /** Bytes of output written, or -1 after a violation. */
  private writeOut(): number {
    const conn = this.server.connection(this.domid);
    let total = 0;
    while (conn.out.length > 0 && total < MAX_BYTES_PER_KICK) {
      const cons = this.load(RingOffset.rsp_cons);
      const prod = this.load(RingOffset.rsp_prod);
      const used = (prod - cons) >>> 0;
      if (used > RING_SIZE) {
        this.fail(RingError.RINGIDX);
        return -1;
      }
      if (used === RING_SIZE) break;
      const msg = conn.out.first()!;
      let bytes = this.encoded.get(msg);
      if (!bytes) this.encoded.set(msg, (bytes = encodeMessage(msg)));
      const at = prod & MASK;
      const q = conn.out;
      const n = Math.min(RING_SIZE - used, bytes.length - q.used, RING_SIZE - at);
      this.page.set(bytes.subarray(q.used, q.used + n), RingOffset.rsp + at);
      this.store(RingOffset.rsp_prod, (prod + n) >>> 0);
      total += n;
      q.used += n;
      if (q.used === bytes.length) q.shift();
    }
    return total;
  }

  private load(off: number): number {
    return this.words ? Atomics.load(this.words, off / 4) >>> 0 : this.dv.getUint32(off, true);
  }

  private store(off: number, v: number): void {
    if (this.words) Atomics.store(this.words, off / 4, v | 0);
    else this.dv.setUint32(off, v >>> 0, true);
  }
}
