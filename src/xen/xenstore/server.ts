// The xenstore daemon's request processing, in process and without I/O:
// `handle(domid, message)` applies one request from a domain's connection
// and queues the reply and any watch events on the connections they are for.
// A transport (ring.ts for a guest, direct calls for the toolstack) drains
// the queues.  Semantics and error strings follow Xen's docs/misc/xenstore.txt
// and the C xenstored; docs/xenstore.md lists what differs.
import { OutQueue } from './out-queue.js';
import { InputError } from '../../errors.js';
import { DEFAULT_QUOTAS, XS_LIMITS, type XsQuotas } from './quota.js';
import {
  XsStore,
  baseName,
  canonicalize,
  childPath,
  domainPath,
  isPrivileged,
  isUnder,
  parentOf,
  parsePerm,
  permFor,
  permToString,
  nodeSize,
  type Canonical,
  type SpecialPath,
  type XsNode,
  type XsPermEntry,
} from './store.js';
import { CommittedView, Fire, Transaction, XsFail, type NodeView } from './transaction.js';
import {
  DOMID_SELF,
  HEADER_SIZE,
  PAYLOAD_MAX,
  XS_TYPE_COUNT,
  XsPerm,
  XsType,
  bytesToString,
  nulJoin,
  oneArg,
  splitStrings,
  stringToBytes,
  type XsError,
  type XsMessage,
} from './wire.js';

export interface XsWatch {
  /** Absolute, or a special path. */
  readonly path: string;
  readonly token: string;
  /** Registered relative to the domain's home: events are reported relative too. */
  readonly relative: boolean;
}

/** One domain's connection: its watches, transactions, and what waits to be sent. */
export interface XsConnection {
  readonly domid: number;
  /** Introduced and not released (IS_DOMAIN_INTRODUCED). */
  introduced: boolean;
  watches: XsWatch[];
  transactions: Map<number, Transaction>;
  /** Next transaction id to try; ids are never 0. */
  nextTxId: number;
  /** Replies and watch events in the order they are to be sent. */
  out: OutQueue;
  /** A request received in part: its header and payload bytes so far. */
  inBuf: Uint8Array;
  /** A RingError value: not 0 once the connection broke the protocol; it is then ignored. */
  error: number;
}

export interface HandleOptions {
  /** false: return the reply without queueing it (a caller in the same process). */
  queueReply?: boolean;
}

export interface HandleResult {
  reply: XsMessage;
  /** Watch events this request queued, on any connection. */
  events: Array<{ domid: number; msg: XsMessage }>;
}

interface Ctx {
  conn: XsConnection;
  domid: number;
  msg: XsMessage;
  tx: Transaction | null;
  view: NodeView;
  /** Events for the caller that xenstored sends after the reply (a watch's first event). */
  afterReply: Array<[string, string]>;
}

type Handler = (s: XenstoreServer, c: Ctx) => Uint8Array;

const OK = nulJoin(['OK']);
const EMPTY = new Uint8Array(0);

export class XenstoreServer {
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
      c = {
        domid,
        introduced: false,
        watches: [],
        transactions: new Map(),
        nextTxId: 1,
        out: new OutQueue(),
        inBuf: EMPTY,
        error: 0,
      };
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
    const ctx: Ctx = { conn, domid, msg, tx: null, view: new CommittedView(this.store), afterReply: [] };
    let payload: Uint8Array;
    let type = msg.type;
    try {
      payload = this.dispatch(ctx);
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
    c.inBuf = EMPTY;
    c.error = error;
  }

  // ---- dispatch ----

  private dispatch(c: Ctx): Uint8Array {
    const { type, txId } = c.msg;
    const entry = type < XS_TYPE_COUNT ? HANDLERS.get(type) : undefined;
    if (!entry) throw new XsFail('ENOSYS');
    if (entry.priv && !isPrivileged(c.domid)) throw new XsFail('EACCES');
    if (!entry.noTx && txId !== 0) {
      const tx = c.conn.transactions.get(txId);
      if (!tx) throw new XsFail('ENOENT');
      c.tx = tx;
      c.view = tx;
    }
    return entry.fn(this, c);
  }

  // ---- helpers shared by the handlers ----

  canon(c: Ctx, raw: string | null, allowSpecial: boolean): Canonical {
    const r = canonicalize(raw, c.domid, allowSpecial, isPrivileged(c.domid) ? null : this.quotas.pathLength);
    if (typeof r === 'string') throw new XsFail(r);
    return r;
  }

  /**
   * The node at a canonical path if the caller holds `perm` on it.  Absent
   * (undefined) only when it does not exist and the nearest existing parent
   * grants the caller `perm`; otherwise EACCES, so that a failure tells
   * nothing about nodes the caller may not see (the daemon's rule).
   */
  lookup(c: Ctx, path: string, perm: number): XsNode | undefined {
    const node = c.view.get(path);
    if (node && (permFor(c.domid, node.perms) & perm) === perm) return node;
    const err = this.errnoFromParents(c, path, node ? 'EACCES' : 'ENOENT', perm);
    if (err === 'ENOENT') return undefined;
    throw new XsFail(err);
  }

  private errnoFromParents(c: Ctx, path: string, err: XsError, perm: number): XsError {
    let p = path;
    let node: XsNode | undefined;
    do {
      p = parentOf(p);
      node = c.view.get(p);
    } while (!node && p !== '/');
    if (node && permFor(c.domid, node.perms) & perm) return err;
    return 'EACCES';
  }

  existing(c: Ctx, raw: string | null, perm: number, allowSpecial = false): { path: string; node: XsNode } {
    const { path } = this.canon(c, raw, allowSpecial);
    const node = this.lookup(c, path, perm);
    if (!node) throw new XsFail('ENOENT');
    return { path, node };
  }

  /** Unprivileged writers may not store a node larger than the node-size quota. */
  checkSize(c: Ctx, node: Pick<XsNode, 'value' | 'children' | 'perms'>): void {
    if (!isPrivileged(c.domid) && nodeSize(node) > this.quotas.nodeSize) throw new XsFail('ENOSPC');
  }

  /**
   * Creates `path` and any missing parents (WRITE and MKDIR).  New nodes
   * take their parent's permissions; an unprivileged creator becomes their
   * owner.  Everything is checked before anything is written.
   */
  create(c: Ctx, path: string, value: Uint8Array): XsNode {
    const missing = [path];
    let top = parentOf(path);
    let parent = c.view.get(top);
    while (!parent) {
      if (top === '/') throw new XsFail('EIO');
      missing.push(top);
      top = parentOf(top);
      parent = c.view.get(top);
    }
    missing.reverse();
    const priv = isPrivileged(c.domid);
    const perms: XsPermEntry[] = parent.perms.map((p) => ({ ...p }));
    if (!priv) perms[0] = { domid: c.domid, perm: perms[0]!.perm };
    if (!priv && c.view.ownedBy(c.domid) + missing.length > this.quotas.nodes) throw new XsFail('ENOSPC');
    if (c.view.nodeCount() + missing.length > XS_LIMITS.nodes) throw new XsFail('ENOSPC');
    const newParent: XsNode = { ...parent, children: [...parent.children, baseName(missing[0]!)] };
    const made: Array<[string, XsNode]> = missing.map((p, i) => [
      p,
      {
        value: i === missing.length - 1 ? value : EMPTY,
        children: i === missing.length - 1 ? [] : [baseName(missing[i + 1]!)],
        perms,
        generation: 0,
      },
    ]);
    this.checkSize(c, newParent);
    for (const [, n] of made) this.checkSize(c, n);
    c.view.put(top, newParent);
    for (const [p, n] of made) c.view.put(p, n);
    return made[made.length - 1]![1];
  }

  /** Removes `path` and everything below it, firing watches as the daemon does. */
  removeTree(c: Ctx, path: string): void {
    // Collect first (a transaction may hit its quota while reading), then remove.
    const order: Array<[string, XsNode]> = [];
    const visit = (p: string): void => {
      const n = c.view.get(p);
      if (!n) return;
      for (const name of n.children) visit(childPath(p, name));
      order.push([p, n]);
    };
    visit(path);
    const parentPath = parentOf(path);
    const parent = c.view.get(parentPath);
    if (!parent) throw new XsFail('EINVAL');
    for (const [p, n] of order) {
      c.view.remove(p);
      // Below the removed node only exact watches fire; the node itself fires its parents' too.
      this.fire(c, p, p !== path, n, null);
    }
    const name = baseName(path);
    c.view.put(parentPath, { ...parent, children: parent.children.filter((x) => x !== name) });
  }

  /**
   * A change at `path`: queue an event for every matching watch whose
   * domain may read the node (or its parent, or the node's permissions
   * before the change).  In a transaction, remember it for the commit.
   */
  fire(
    c: Ctx | null,
    path: string,
    exact: boolean,
    node: XsNode | undefined,
    oldPerms: readonly XsPermEntry[] | null,
  ): void {
    if (c?.tx) {
      c.tx.queueFire(path, exact ? Fire.exact : Fire.tree);
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

/** The daemon parses domids with atoi(): leading digits, anything else is 0. */
function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m ? Number(m[1]) >>> 0 : 0;
}

const domidArg = (c: Ctx): number => {
  const s = oneArg(c.msg.payload);
  if (s === null) throw new XsFail('EINVAL');
  return atoi(s);
};

/** RELEASE and RESUME: a real, introduced domain other than 0. */
const introducedArg = (s: XenstoreServer, c: Ctx): number => {
  const domid = domidArg(c);
  if (domid === 0) throw new XsFail('EINVAL');
  if (!s.isIntroduced(domid)) throw new XsFail('ENOENT');
  return domid;
};

interface Entry {
  fn: Handler;
  /** Domain 0 only; others get EACCES. */
  priv?: boolean;
  /** The request's tx_id is ignored. */
  noTx?: boolean;
}

const HANDLERS = new Map<number, Entry>([
  [XsType.READ, { fn: (s, c) => s.existing(c, oneArg(c.msg.payload), XsPerm.READ).node.value }],
  [XsType.DIRECTORY, { fn: (s, c) => nulJoin(s.existing(c, oneArg(c.msg.payload), XsPerm.READ).node.children) }],
  [
    XsType.DIRECTORY_PART,
    {
      fn: (s, c) => {
        const args = splitStrings(c.msg.payload);
        if (args.length !== 2) throw new XsFail('EINVAL');
        const { node } = s.existing(c, args[0]!, XsPerm.READ);
        return directoryPart(node, atoi(args[1]!));
      },
    },
  ],
  [
    XsType.WRITE,
    {
      fn: (s, c) => {
        const p = c.msg.payload;
        const nul = p.indexOf(0);
        if (nul < 0) throw new XsFail('EINVAL');
        const { path } = s.canon(c, bytesToString(p.subarray(0, nul)), false);
        const value = p.slice(nul + 1);
        const node = s.lookup(c, path, XsPerm.WRITE);
        let written: XsNode;
        if (node) {
          written = { ...node, value };
          s.checkSize(c, written);
          c.view.put(path, written);
        } else {
          written = s.create(c, path, value);
        }
        s.fire(c, path, false, written, null);
        return OK;
      },
    },
  ],
  [
    XsType.MKDIR,
    {
      fn: (s, c) => {
        const { path } = s.canon(c, oneArg(c.msg.payload), false);
        if (!s.lookup(c, path, XsPerm.WRITE)) s.fire(c, path, false, s.create(c, path, EMPTY), null);
        return OK;
      },
    },
  ],
  [
    XsType.RM,
    {
      fn: (s, c) => {
        const { path } = s.canon(c, oneArg(c.msg.payload), false);
        if (!s.lookup(c, path, XsPerm.WRITE)) {
          // Already absent: fine if the parent exists.
          if (c.view.get(parentOf(path))) return OK;
          throw new XsFail('ENOENT');
        }
        if (path === '/') throw new XsFail('EINVAL');
        s.removeTree(c, path);
        return OK;
      },
    },
  ],
  [
    XsType.GET_PERMS,
    { fn: (s, c) => nulJoin(s.existing(c, oneArg(c.msg.payload), XsPerm.READ, true).node.perms.map(permToString)) },
  ],
  [
    XsType.SET_PERMS,
    {
      fn: (s, c) => {
        const args = splitStrings(c.msg.payload);
        if (args.length < 2) throw new XsFail('EINVAL');
        const priv = isPrivileged(c.domid);
        if (!priv && args.length - 1 > s.quotas.nodePerms) throw new XsFail('ENOSPC');
        if (args.length - 1 > XS_LIMITS.perms) throw new XsFail('ENOSPC');
        const perms = args.slice(1).map(parsePerm);
        if (perms.some((p) => p === null)) throw new XsFail('EINVAL');
        const { path, node } = s.existing(c, args[0]!, XsPerm.WRITE | XsPerm.OWNER, true);
        const next = perms as XsPermEntry[];
        if (!priv && next[0]!.domid !== node.perms[0]!.domid) throw new XsFail('EPERM');
        const written: XsNode = { ...node, perms: next };
        s.checkSize(c, written);
        c.view.put(path, written);
        s.fire(c, path, false, written, node.perms);
        return OK;
      },
    },
  ],
  [
    XsType.WATCH,
    {
      noTx: true,
      fn: (s, c) => {
        const args = splitStrings(c.msg.payload);
        if (args.length !== 2) throw new XsFail('EINVAL');
        const { path, relative } = s.canon(c, args[0]!, true);
        const token = args[1]!;
        if (c.conn.watches.some((w) => w.path === path && w.token === token)) throw new XsFail('EEXIST');
        if (!isPrivileged(c.domid) && c.conn.watches.length >= s.quotas.watches) throw new XsFail('E2BIG');
        if (s.total('watches') >= XS_LIMITS.watches) throw new XsFail('E2BIG');
        c.conn.watches.push({ path, token, relative });
        // Fired once straight away, after the reply, with the path as given.
        c.afterReply.push([relative ? args[0]! : path, token]);
        return OK;
      },
    },
  ],
  [
    XsType.UNWATCH,
    {
      noTx: true,
      fn: (s, c) => {
        const args = splitStrings(c.msg.payload);
        if (args.length !== 2) throw new XsFail('EINVAL');
        const { path } = s.canon(c, args[0]!, true);
        const i = c.conn.watches.findIndex((w) => w.path === path && w.token === args[1]);
        if (i < 0) throw new XsFail('ENOENT');
        c.conn.watches.splice(i, 1);
        return OK;
      },
    },
  ],
  [
    XsType.TRANSACTION_START,
    {
      fn: (s, c) => {
        if (c.tx) throw new XsFail('EBUSY');
        if (!isPrivileged(c.domid) && c.conn.transactions.size >= s.quotas.transactions) throw new XsFail('ENOSPC');
        if (s.total('transactions') >= XS_LIMITS.transactions) throw new XsFail('ENOSPC');
        return nulJoin([String(s.newTransaction(c).id)]);
      },
    },
  ],
  [
    XsType.TRANSACTION_END,
    {
      fn: (s, c) => {
        const arg = oneArg(c.msg.payload);
        if (arg !== 'T' && arg !== 'F') throw new XsFail('EINVAL');
        const tx = c.tx;
        if (!tx) throw new XsFail('ENOENT');
        c.conn.transactions.delete(tx.id);
        if (arg === 'F') return OK;
        if (tx.fail) throw new XsFail('ENOMEM');
        if (!isPrivileged(c.domid)) {
          const after = tx.ownedBy(c.domid);
          if (after > s.quotas.nodes && after > s.store.ownedBy(c.domid)) throw new XsFail('ENOSPC');
        }
        if (tx.nodeCount() > XS_LIMITS.nodes && tx.nodeCount() > s.store.size) throw new XsFail('ENOSPC');
        if (tx.conflict()) throw new XsFail('EAGAIN');
        s.commit(tx);
        return OK;
      },
    },
  ],
  [XsType.GET_DOMAIN_PATH, { fn: (_s, c) => nulJoin([domainPath(domidArg(c))]) }],
  [
    XsType.IS_DOMAIN_INTRODUCED,
    {
      priv: true,
      fn: (s, c) => {
        const domid = domidArg(c);
        return nulJoin([domid === DOMID_SELF || s.isIntroduced(domid) ? 'T' : 'F']);
      },
    },
  ],
  [
    XsType.RESET_WATCHES,
    {
      fn: (_s, c) => {
        c.conn.watches = [];
        c.conn.transactions.clear();
        return OK;
      },
    },
  ],
  [
    XsType.INTRODUCE,
    {
      priv: true,
      fn: (s, c) => {
        const args = splitStrings(c.msg.payload);
        if (args.length < 3) throw new XsFail('EINVAL');
        const domid = atoi(args[0]!);
        const port = atoi(args[2]!) | 0;
        // A real guest only: 0 is the toolstack itself, DOMID_SELF and above are special ids.
        if (port <= 0 || domid === 0 || domid >= DOMID_SELF) throw new XsFail('EINVAL');
        s.introduceDomain(domid);
        return OK;
      },
    },
  ],
  [
    XsType.RELEASE,
    {
      priv: true,
      fn: (s, c) => {
        s.releaseDomain(introducedArg(s, c));
        return OK;
      },
    },
  ],
  [
    XsType.RESUME,
    {
      priv: true,
      fn: (s, c) => {
        introducedArg(s, c);
        return OK;
      },
    },
  ],
  // Implementation-specific (CONTROL) or not modelled (SET_TARGET): refused for everyone.
  [
    XsType.CONTROL,
    {
      priv: true,
      fn: () => {
        throw new XsFail('ENOSYS');
      },
    },
  ],
  [
    XsType.SET_TARGET,
    {
      priv: true,
      fn: () => {
        throw new XsFail('ENOSYS');
      },
    },
  ],
]);

/**
 * DIRECTORY_PART's reply: the node's generation, then the child names from
 * byte `offset` of the NUL-separated list, as many whole names as fit; an
 * extra NUL (an empty name) marks the end of the list.
 */
function directoryPart(node: XsNode, offset: number): Uint8Array {
  const gen = `${node.generation}\0`;
  const list = node.children.map((n) => `${n}\0`).join('');
  if (offset >= list.length) return stringToBytes(`${gen}\0`);
  const room = PAYLOAD_MAX - gen.length - 1;
  let end = offset;
  while (end < list.length) {
    const next = list.indexOf('\0', end) + 1;
    if (next - offset > room) break;
    end = next;
  }
  return stringToBytes(gen + list.slice(offset, end) + (end === list.length ? '\0' : ''));
}
