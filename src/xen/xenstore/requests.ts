// The requests of Xen's docs/misc/xenstore.txt, one handler each, with the
// checks and errors of the C xenstored, and the tree operations they share
// (path checks, permission lookups, creating and removing nodes).  A
// handler reads and writes through the request's view (the committed tree
// or its transaction) and returns the reply payload or throws XsFail.
import { XS_LIMITS, type XsQuotas } from './quota.js';
import type { XsConnection } from './connection.js';
import {
  baseName,
  canonicalize,
  childPath,
  domainPath,
  isPrivileged,
  nodeSize,
  parentOf,
  parsePerm,
  permFor,
  permToString,
  type Canonical,
  type XsNode,
  type XsPermEntry,
  type XsStore,
} from './store.js';
import { XsFail, type NodeView, type Transaction } from './transaction.js';
import {
  DOMID_SELF,
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

/** What the handlers need of the daemon beyond the request itself. */
export interface Daemon {
  readonly quotas: Readonly<XsQuotas>;
  readonly store: XsStore;
  /** A change at `path` (see XenstoreServer.fire); held back when `tx` is given. */
  fire(
    tx: Transaction | null,
    path: string,
    exact: boolean,
    node: XsNode | undefined,
    oldPerms: readonly XsPermEntry[] | null,
  ): void;
  commit(tx: Transaction): void;
  newTransaction(c: Ctx): Transaction;
  isIntroduced(domid: number): boolean;
  introduceDomain(domid: number): void;
  releaseDomain(domid: number): void;
  /** Watches or open transactions over all connections. */
  total(what: 'watches' | 'transactions'): number;
}

/** One request being handled. */
export interface Ctx {
  d: Daemon;
  conn: XsConnection;
  domid: number;
  msg: XsMessage;
  tx: Transaction | null;
  view: NodeView;
  /** Events for the caller that xenstored sends after the reply (a watch's first event). */
  afterReply: Array<[string, string]>;
}

type Handler = (s: Daemon, c: Ctx) => Uint8Array;

const OK = nulJoin(['OK']);
const EMPTY = new Uint8Array(0);

/** Applies the request in `c`; throws XsFail with the error to reply. */
export function dispatch(c: Ctx): Uint8Array {
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
  return entry.fn(c.d, c);
}

/** The request's path made absolute, or EINVAL (bad characters, slashes, length; @ where not allowed). */
export function canon(c: Ctx, raw: string | null, allowSpecial: boolean): Canonical {
  const r = canonicalize(raw, c.domid, allowSpecial, isPrivileged(c.domid) ? null : c.d.quotas.pathLength);
  if (typeof r === 'string') throw new XsFail(r);
  return r;
}

/**
 * The node at a canonical path if the caller holds `perm` on it.  Absent
 * (undefined) only when it does not exist and the nearest existing parent
 * grants the caller `perm`; otherwise EACCES, so that a failure tells
 * nothing about nodes the caller may not see (the daemon's rule).
 */
export function lookup(c: Ctx, path: string, perm: number): XsNode | undefined {
  const node = c.view.get(path);
  if (node && (permFor(c.domid, node.perms) & perm) === perm) return node;
  const err = errnoFromParents(c, path, node ? 'EACCES' : 'ENOENT', perm);
  if (err === 'ENOENT') return undefined;
  throw new XsFail(err);
}

function errnoFromParents(c: Ctx, path: string, err: XsError, perm: number): XsError {
  let p = path;
  let node: XsNode | undefined;
  do {
    p = parentOf(p);
    node = c.view.get(p);
  } while (!node && p !== '/');
  if (node && permFor(c.domid, node.perms) & perm) return err;
  return 'EACCES';
}

/** An existing node the caller holds `perm` on, or the error (ENOENT, EACCES, EINVAL). */
export function existing(
  c: Ctx,
  raw: string | null,
  perm: number,
  allowSpecial = false,
): { path: string; node: XsNode } {
  const { path } = canon(c, raw, allowSpecial);
  const node = lookup(c, path, perm);
  if (!node) throw new XsFail('ENOENT');
  return { path, node };
}

/** Unprivileged writers may not store a node larger than the node-size quota. */
export function checkSize(c: Ctx, node: Pick<XsNode, 'value' | 'children' | 'perms'>): void {
  if (!isPrivileged(c.domid) && nodeSize(node) > c.d.quotas.nodeSize) throw new XsFail('ENOSPC');
}

/**
 * Creates `path` and any missing parents (WRITE and MKDIR).  New nodes
 * take their parent's permissions; an unprivileged creator becomes their
 * owner.  Everything is checked before anything is written.
 */
export function create(c: Ctx, path: string, value: Uint8Array): XsNode {
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
  if (!priv && c.view.ownedBy(c.domid) + missing.length > c.d.quotas.nodes) throw new XsFail('ENOSPC');
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
  checkSize(c, newParent);
  for (const [, n] of made) checkSize(c, n);
  c.view.put(top, newParent);
  for (const [p, n] of made) c.view.put(p, n);
  return made[made.length - 1]![1];
}

/** Removes `path` and everything below it, firing watches as the daemon does. */
export function removeTree(c: Ctx, path: string): void {
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
    c.d.fire(c.tx, p, p !== path, n, null);
  }
  const name = baseName(path);
  c.view.put(parentPath, { ...parent, children: parent.children.filter((x) => x !== name) });
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
const introducedArg = (s: Daemon, c: Ctx): number => {
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
  [XsType.READ, { fn: (_s, c) => existing(c, oneArg(c.msg.payload), XsPerm.READ).node.value }],
  [XsType.DIRECTORY, { fn: (_s, c) => nulJoin(existing(c, oneArg(c.msg.payload), XsPerm.READ).node.children) }],
  [
    XsType.DIRECTORY_PART,
    {
      fn: (_s, c) => {
        const args = splitStrings(c.msg.payload);
        if (args.length !== 2) throw new XsFail('EINVAL');
        const { node } = existing(c, args[0]!, XsPerm.READ);
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
        const { path } = canon(c, bytesToString(p.subarray(0, nul)), false);
        const value = p.slice(nul + 1);
        const node = lookup(c, path, XsPerm.WRITE);
        let written: XsNode;
        if (node) {
          written = { ...node, value };
          checkSize(c, written);
          c.view.put(path, written);
        } else {
          written = create(c, path, value);
        }
        s.fire(c.tx, path, false, written, null);
        return OK;
      },
    },
  ],
  [
    XsType.MKDIR,
    {
      fn: (s, c) => {
        const { path } = canon(c, oneArg(c.msg.payload), false);
        if (!lookup(c, path, XsPerm.WRITE)) s.fire(c.tx, path, false, create(c, path, EMPTY), null);
        return OK;
      },
    },
  ],
  [
    XsType.RM,
    {
      fn: (_s, c) => {
        const { path } = canon(c, oneArg(c.msg.payload), false);
        if (!lookup(c, path, XsPerm.WRITE)) {
          // Already absent: fine if the parent exists.
          if (c.view.get(parentOf(path))) return OK;
          throw new XsFail('ENOENT');
        }
        if (path === '/') throw new XsFail('EINVAL');
        removeTree(c, path);
        return OK;
      },
    },
  ],
  [
    XsType.GET_PERMS,
    { fn: (_s, c) => nulJoin(existing(c, oneArg(c.msg.payload), XsPerm.READ, true).node.perms.map(permToString)) },
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
        const { path, node } = existing(c, args[0]!, XsPerm.WRITE | XsPerm.OWNER, true);
        const next = perms as XsPermEntry[];
        if (!priv && next[0]!.domid !== node.perms[0]!.domid) throw new XsFail('EPERM');
        const written: XsNode = { ...node, perms: next };
        checkSize(c, written);
        c.view.put(path, written);
        s.fire(c.tx, path, false, written, node.perms);
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
        const { path, relative } = canon(c, args[0]!, true);
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
      fn: (_s, c) => {
        const args = splitStrings(c.msg.payload);
        if (args.length !== 2) throw new XsFail('EINVAL');
        const { path } = canon(c, args[0]!, true);
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
