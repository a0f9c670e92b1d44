// The xenstore daemon, in process and without I/O: `handle(domid, message)`
// applies one request from a domain's connection (requests.ts has the
// handlers) and queues the reply and any watch events on the connections
// they are for; this file keeps the connections, fires watches and commits
// transactions.  A transport (ring.ts for a guest, direct calls for the
// toolstack) drains the queues.  Semantics and error strings follow Xen's
// docs/misc/xenstore.txt and the C xenstored; docs/xenstore.md lists what
// differs.
import { InputError } from '../../errors.js';
import { newConnection, type XsConnection } from './connection.js';
import { DEFAULT_QUOTAS, XS_LIMITS, type XsQuotas } from './quota.js';
import { dispatch, type Ctx, type Daemon } from './requests.js';
import {
  XsStore,
  domainPath,
  isPrivileged,
  isUnder,
  parentOf,
  permFor,
  type SpecialPath,
  type XsNode,
  type XsPermEntry,
} from './store.js';
import { CommittedView, Fire, Transaction, XsFail } from './transaction.js';
import { HEADER_SIZE, PAYLOAD_MAX, XsPerm, XsType, nulJoin, type XsMessage } from './wire.js';

export type { XsConnection, XsWatch } from './connection.js';

export interface HandleOptions {
  /** false: return the reply without queueing it (a caller in the same process). */
  queueReply?: boolean;
}

export interface HandleResult {
  reply: XsMessage;
  /** Watch events this request queued, on any connection. */
  events: Array<{ domid: number; msg: XsMessage }>;
}

export class XenstoreServer implements Daemon {
  readonly store: XsStore;
  readonly quotas: Readonly<XsQuotas>;
  private readonly conns = new Map<number, XsConnection>();
  private collected: Array<{ domid: number; msg: XsMessage }> | null = null;
  /** The last error that escaped a handler (a bug); requests still get EIO. */
  internalError: unknown = null;
  /**
   * Called whenever a message is queued for `domid`, so its transport can
   * flush.  It runs in the middle of a request: schedule the flush, do not
   * do it here.
   */
  onQueued: ((domid: number) => void) | null = null;

  constructor(opts: { quotas?: Partial<XsQuotas>; store?: XsStore } = {}) {
    this.store = opts.store ?? XsStore.initial();
    this.quotas = { ...DEFAULT_QUOTAS, ...opts.quotas };
    this.connection(0).introduced = true;
  }

  /** The connection of `domid`, created on first use. */
  connection(domid: number): XsConnection {
    let c = this.conns.get(domid);
    if (!c) {
      if (this.conns.size >= XS_LIMITS.connections)
        throw new InputError(`xenstore serves at most ${XS_LIMITS.connections} domains`);
      c = newConnection(domid);
      this.conns.set(domid, c);
    }
    return c;
  }

  connections(): IterableIterator<XsConnection> {
    return this.conns.values();
  }

  /** Replaces a connection wholesale (restore). */
  adoptConnection(c: XsConnection): void {
    this.conns.set(c.domid, c);
  }

  /** Applies one request from `domid`; never throws for anything the request holds. */
  handle(domid: number, msg: XsMessage, opts: HandleOptions = {}): HandleResult {
    const conn = this.connection(domid);
    const events: HandleResult['events'] = [];
    this.collected = events;
    const ctx: Ctx = { d: this, conn, domid, msg, tx: null, view: new CommittedView(this.store), afterReply: [] };
    let payload: Uint8Array;
    let type = msg.type;
    try {
      payload = dispatch(ctx);
      if (payload.length > PAYLOAD_MAX) throw new XsFail('E2BIG');
    } catch (e) {
      // A bug must not take the VMM down with it: the guest sees EIO, the host keeps the error.
      if (!(e instanceof XsFail)) this.internalError = e;
      type = XsType.ERROR;
      payload = nulJoin([e instanceof XsFail ? e.error : 'EIO']);
      ctx.afterReply.length = 0;
    }
    const reply: XsMessage = { type, reqId: msg.reqId, txId: msg.txId, payload };
    if (opts.queueReply !== false) this.queue(conn, reply);
    for (const [path, token] of ctx.afterReply) this.queueEvent(conn, path, token);
    this.collected = null;
    return { reply, events };
  }

  /** Removes and returns everything queued for `domid` (a transport that is not a ring). */
  take(domid: number): XsMessage[] {
    return this.connection(domid).out.drain();
  }

  /** Replies queued for `domid` and not yet fully sent: the flow-control figure. */
  pendingReplies(domid: number): number {
    return this.conns.get(domid)?.out.replies ?? 0;
  }

  isIntroduced(domid: number): boolean {
    return this.conns.get(domid)?.introduced ?? false;
  }

  /**
   * The toolstack introduces a domain to the daemon: its connection starts
   * afresh and, the first time, watchers of @introduceDomain hear of it.
   */
  introduceDomain(domid: number): void {
    const c = this.connection(domid);
    const fresh = !c.introduced;
    this.resetConnection(domid);
    c.introduced = true;
    if (fresh && domid !== 0) this.fireSpecial('@introduceDomain');
  }

  /** The domain is gone: its watches, transactions and queued output go, @releaseDomain fires. */
  releaseDomain(domid: number): void {
    const c = this.conns.get(domid);
    if (!c || !c.introduced) return;
    this.resetConnection(domid);
    c.introduced = false;
    this.fireSpecial('@releaseDomain');
  }

  /** Paths touched by all open transactions (their shared limit). */
  readonly countTxEntries = (): number => {
    let n = 0;
    for (const c of this.conns.values()) for (const t of c.transactions.values()) n += t.entries.size;
    return n;
  };

  /** Watches or open transactions over all connections (their shared limits). */
  total(what: 'watches' | 'transactions'): number {
    let n = 0;
    for (const c of this.conns.values()) n += what === 'watches' ? c.watches.length : c.transactions.size;
    return n;
  }

  /** Drops a connection's watches, transactions, queued output and partial input. */
  resetConnection(domid: number, error = 0): void {
    const c = this.connection(domid);
    c.watches = [];
    c.transactions.clear();
    c.out.drain();
    c.inBuf = new Uint8Array(0);
    c.error = error;
  }

  /**
   * A change at `path`: queue an event for every matching watch whose
   * domain may read the node (or its parent, or the node's permissions
   * before the change).  In a transaction, remember it for the commit.
   */
  fire(
    tx: Transaction | null,
    path: string,
    exact: boolean,
    node: XsNode | undefined,
    oldPerms: readonly XsPermEntry[] | null,
  ): void {
    if (tx) {
      tx.queueFire(path, exact ? Fire.exact : Fire.tree);
      return;
    }
    for (const conn of this.conns.values()) {
      if (conn.watches.length === 0 || !this.watchPermitted(conn.domid, path, node, oldPerms)) continue;
      for (const w of conn.watches) {
        if (exact ? path !== w.path : !isUnder(path, w.path)) continue;
        const home = `${domainPath(conn.domid)}/`;
        this.queueEvent(conn, w.relative && path.startsWith(home) ? path.slice(home.length) : path, w.token);
      }
    }
  }

  private watchPermitted(
    domid: number,
    path: string,
    node: XsNode | undefined,
    oldPerms: readonly XsPermEntry[] | null,
  ): boolean {
    if (oldPerms && permFor(domid, oldPerms) & XsPerm.READ) return true;
    const n = node ?? this.store.get(path);
    if (!n) return false;
    if (permFor(domid, n.perms) & XsPerm.READ) return true;
    const parent = this.store.get(parentOf(path));
    return parent !== undefined && (permFor(domid, parent.perms) & XsPerm.READ) !== 0;
  }

  fireSpecial(path: SpecialPath): void {
    this.fire(null, path, true, this.store.get(path), null);
  }

  /** Commits a transaction's changes and fires the watches it held back. */
  commit(tx: Transaction): void {
    const fired: Array<[string, boolean, XsNode | undefined, readonly XsPermEntry[] | null]> = [];
    for (const [path, e] of tx.entries) {
      const before = this.store.get(path);
      if (e.modified) {
        if (e.node) this.store.set(path, { ...e.node, generation: this.store.nextGeneration() });
        else this.store.delete(path);
      }
      if (e.fire !== Fire.none) fired.push([path, e.fire === Fire.exact, e.node ?? before, before?.perms ?? null]);
    }
    for (const [path, exact, node, old] of fired) this.fire(null, path, exact, node, old);
  }

  queueEvent(conn: XsConnection, path: string, token: string): void {
    const payload = nulJoin([path, token]);
    if (payload.length > PAYLOAD_MAX) return;
    // An identical event not yet read says nothing new (special events are always kept).
    if (!path.startsWith('@') && conn.out.hasEvent(payload)) return;
    if (conn.out.length - conn.out.replies >= XS_LIMITS.queuedEvents) return;
    const size = HEADER_SIZE + payload.length;
    if (!isPrivileged(conn.domid) && conn.out.bytes + size > this.quotas.outputBytes) return;
    const msg: XsMessage = { type: XsType.WATCH_EVENT, reqId: 0, txId: 0, payload };
    this.queue(conn, msg);
    this.collected?.push({ domid: conn.domid, msg });
  }

  private queue(conn: XsConnection, msg: XsMessage): void {
    conn.out.push(msg);
    this.onQueued?.(conn.domid);
  }

  newTransaction(c: Ctx): Transaction {
    const conn = c.conn;
    let id = conn.nextTxId;
    while (id === 0 || conn.transactions.has(id)) id = (id + 1) >>> 0;
    conn.nextTxId = (id + 1) >>> 0;
    const limit = isPrivileged(c.domid) ? null : this.quotas.transactionNodes;
    const tx = new Transaction(this.store, id, c.domid, this.store.nextGeneration(), limit, this.countTxEntries);
    conn.transactions.set(id, tx);
    return tx;
  }
}
