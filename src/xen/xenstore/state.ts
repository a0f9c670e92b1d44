// The xenstore section: everything the daemon holds that a restored guest
// must find again.  The tree (values, permissions, generations), each
// connection's watches, open transactions with their private nodes and the
// generations they saw, replies and watch events not yet sent, the bytes of
// a request received in part, a stopped ring's error, and the node count
// per owner (quota use).
//
// Layout: flat lists that name their connection (and transaction) rather
// than lists nested in lists, and byte strings cut into 128-byte chunks
// (the state DSL has no variable-length bytes kind).  A schema read back
// from a snapshot may only expand to a bounded number of elements, each
// chunk counting one; nesting would multiply the bounds and a byte per
// element would exceed them.  XS_LIMITS keeps every list within its bound.
// `check` validates a decoded state before `restore` trusts it.
import { FormatError } from '../../errors.js';
import {
  bool,
  bytes,
  defineState,
  enumOf,
  struct,
  u16,
  u32,
  u64,
  u8,
  varArray,
  type IntSpec,
  type StateOf,
  type Typed,
  type VarArraySpec,
} from '../../vmstate/index.js';
import { OutQueue } from './out-queue.js';
import { DEFAULT_QUOTAS, XS_LIMITS, type XsQuotas } from './quota.js';
import { XenstoreServer, type XsConnection } from './server.js';
import {
  NO_GENERATION,
  SPECIAL_PATHS,
  XsStore,
  baseName,
  canonicalize,
  childPath,
  domainPath,
  isPrivileged,
  parentOf,
  type XsNode,
  type XsPermEntry,
} from './store.js';
import { Fire, Transaction, type TxEntry } from './transaction.js';
import {
  ABS_PATH_MAX,
  HEADER_SIZE,
  PAYLOAD_MAX,
  RingError,
  XS_TYPE_COUNT,
  bytesToString,
  decodeHeader,
  stringToBytes,
  type XsMessage,
} from './wire.js';

/** Bytes per chunk of a byte string in the state. */
export const CHUNK = 128;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

type Blob<N extends string> = { [K in `${N}_len` | `${N}_chunks`]: IntSpec & Typed<number> } & {
  [K in N]: VarArraySpec & Typed<Uint8Array[]>;
};

/** A byte string of at most `max` bytes: its length, its chunk count, its chunks (the last zero-padded). */
function blob<const N extends string>(name: N, max: number): Blob<N> {
  return {
    [`${name}_len`]: u16(),
    [`${name}_chunks`]: u8(),
    [name]: varArray(bytes(CHUNK), { lengthField: `${name}_chunks`, max: Math.ceil(max / CHUNK) }),
  } as Blob<N>;
}

const perm = struct({ perm: enumOf(u8, { n: 0, r: 1, w: 2, b: 3 }), domid: u16() });

/** A committed node; the list is in tree order (parents first), so child lists are rebuilt from it. */
const node = struct({
  ...blob('path', ABS_PATH_MAX),
  ...blob('value', PAYLOAD_MAX),
  nr_perms: u8(),
  perms: varArray(perm, { lengthField: 'nr_perms', max: XS_LIMITS.perms }),
  generation: u64(),
});

const connection = struct({
  domid: u16(),
  introduced: bool(),
  /** RingError: not NONE once the guest broke the protocol (the connection is then ignored). */
  error: enumOf(u8, RingError),
  next_tx_id: u32(),
  /** Bytes of this connection's first queued message already on the ring. */
  out_used: u16(),
  /** A request received in part. */
  ...blob('in', HEADER_SIZE + PAYLOAD_MAX),
});

/** Watches, in each connection's registration order. */
const watch = struct({
  domid: u16(),
  ...blob('path', ABS_PATH_MAX),
  ...blob('token', PAYLOAD_MAX),
  relative: bool(),
});

const transaction = struct({ domid: u16(), id: u32(), generation: u64(), fail: bool() });

/** A path a transaction touched: its private node (child names NUL-separated) and what it saw. */
const txEntry = struct({
  domid: u16(),
  tx_id: u32(),
  ...blob('path', ABS_PATH_MAX),
  exists: bool(),
  ...blob('value', PAYLOAD_MAX),
  nr_perms: u8(),
  perms: varArray(perm, { lengthField: 'nr_perms', max: XS_LIMITS.perms }),
  ...blob('children', XS_LIMITS.transactionChildBytes),
  generation: u64(),
  /** Generation of the committed node when first seen; all ones when it did not exist. */
  observed: u64(),
  check: bool(),
  modified: bool(),
  fire: enumOf(u8, Fire),
});

/** Replies and events not yet sent, in each connection's order. */
const queued = struct({
  domid: u16(),
  type: u32(),
  req_id: u32(),
  tx_id: u32(),
  ...blob('payload', PAYLOAD_MAX),
});

export const xenstoreState = defineState({
  name: 'xenstore',
  version: 1,
  fields: {
    generation: u64(),
    nr_nodes: u32(),
    nodes: varArray(node, { lengthField: 'nr_nodes', max: XS_LIMITS.nodes }),
    /** Nodes per owning domain: the figure the nodes quota compares. */
    nr_owners: u32(),
    owners: varArray(struct({ domid: u16(), nodes: u32() }), { lengthField: 'nr_owners', max: XS_LIMITS.nodes }),
    nr_connections: u32(),
    connections: varArray(connection, { lengthField: 'nr_connections', max: XS_LIMITS.connections }),
    nr_watches: u32(),
    watches: varArray(watch, { lengthField: 'nr_watches', max: XS_LIMITS.watches }),
    nr_transactions: u32(),
    transactions: varArray(transaction, { lengthField: 'nr_transactions', max: XS_LIMITS.transactions }),
    nr_tx_entries: u32(),
    tx_entries: varArray(txEntry, { lengthField: 'nr_tx_entries', max: XS_LIMITS.transactionEntries }),
    nr_queued: u32(),
    queued: varArray(queued, { lengthField: 'nr_queued', max: XS_LIMITS.queued }),
  },
});

export type XenstoreState = StateOf<typeof xenstoreState>;
type NodeState = XenstoreState['nodes'][number];
type PermState = NodeState['perms'][number];
type ConnState = XenstoreState['connections'][number];
type TxEntryState = XenstoreState['tx_entries'][number];

/** Cuts `b` into chunks; spreads as the three fields of a blob named `name`. */
type BlobValue<N extends string> = { [K in `${N}_len` | `${N}_chunks`]: number } & { [K in N]: Uint8Array[] };

function chunked<const N extends string>(name: N, b: Uint8Array): BlobValue<N> {
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < b.length; at += CHUNK) {
    const c = new Uint8Array(CHUNK);
    c.set(b.subarray(at, at + CHUNK));
    chunks.push(c);
  }
  return { [`${name}_len`]: b.length, [`${name}_chunks`]: chunks.length, [name]: chunks } as BlobValue<N>;
}

function joined(len: number, chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.length * CHUNK);
  chunks.forEach((c, i) => out.set(c, i * CHUNK));
  return out.slice(0, len);
}
const text = (len: number, chunks: readonly Uint8Array[]): string => bytesToString(joined(len, chunks));

const gen = (g: number): bigint => (g === NO_GENERATION ? U64_MAX : BigInt(g));
const ungen = (g: bigint): number => (g === U64_MAX ? NO_GENERATION : Number(g));
const permsOut = (p: readonly XsPermEntry[]): PermState[] =>
  p.map((x) => ({ perm: x.perm as PermState['perm'], domid: x.domid }));
const permsIn = (p: readonly PermState[]): XsPermEntry[] => p.map((x) => ({ domid: x.domid, perm: x.perm }));

export function save(server: XenstoreServer): XenstoreState {
  const nodes: XenstoreState['nodes'] = [];
  for (const [path, n] of server.store.walk()) {
    nodes.push({
      ...chunked('path', stringToBytes(path)),
      ...chunked('value', n.value),
      nr_perms: n.perms.length,
      perms: permsOut(n.perms),
      generation: gen(n.generation),
    });
  }
  const owners = [...server.store.ownerCounts()]
    .sort(([a], [b]) => a - b)
    .map(([domid, count]) => ({ domid, nodes: count }));
  const st: XenstoreState = {
    generation: BigInt(server.store.generation),
    nr_nodes: nodes.length,
    nodes,
    nr_owners: owners.length,
    owners,
    nr_connections: 0,
    connections: [],
    nr_watches: 0,
    watches: [],
    nr_transactions: 0,
    transactions: [],
    nr_tx_entries: 0,
    tx_entries: [],
    nr_queued: 0,
    queued: [],
  };
  for (const c of server.connections()) {
    const domid = c.domid;
    st.connections.push({
      domid,
      introduced: c.introduced,
      error: c.error as ConnState['error'],
      next_tx_id: c.nextTxId,
      out_used: c.out.used,
      ...chunked('in', c.inBuf),
    });
    for (const w of c.watches) {
      st.watches.push({
        domid,
        ...chunked('path', stringToBytes(w.path)),
        ...chunked('token', stringToBytes(w.token)),
        relative: w.relative,
      });
    }
    for (const t of c.transactions.values()) {
      st.transactions.push({ domid, id: t.id, generation: BigInt(t.generation), fail: t.fail });
      for (const [path, e] of t.entries) st.tx_entries.push(saveEntry(domid, t.id, path, e));
    }
    for (const m of c.out.toArray()) {
      st.queued.push({ domid, type: m.type, req_id: m.reqId, tx_id: m.txId, ...chunked('payload', m.payload) });
    }
  }
  st.nr_connections = st.connections.length;
  st.nr_watches = st.watches.length;
  st.nr_transactions = st.transactions.length;
  st.nr_tx_entries = st.tx_entries.length;
  st.nr_queued = st.queued.length;
  return st;
}

function saveEntry(domid: number, txId: number, path: string, e: TxEntry): TxEntryState {
  const n = e.node;
  return {
    domid,
    tx_id: txId,
    ...chunked('path', stringToBytes(path)),
    exists: n !== null,
    ...chunked('value', n ? n.value : new Uint8Array(0)),
    nr_perms: n ? n.perms.length : 0,
    perms: n ? permsOut(n.perms) : [],
    ...chunked('children', stringToBytes(n ? n.children.map((x) => `${x}\0`).join('') : '')),
    generation: n ? gen(n.generation) : 0n,
    observed: gen(e.observed),
    check: e.check,
    modified: e.modified,
    fire: e.fire,
  };
}

/** A fresh server holding `state`; run `check` on untrusted input first. */
export function restore(state: XenstoreState, opts: { quotas?: Partial<XsQuotas> } = {}): XenstoreServer {
  const store = new XsStore();
  // Nodes come parents first: each is appended to its parent's child list in order.
  const children = new Map<string, string[]>();
  const made: Array<[string, Omit<XsNode, 'children'>]> = [];
  for (const n of state.nodes) {
    const path = text(n.path_len, n.path);
    children.set(path, []);
    if (path !== '/' && !path.startsWith('@')) children.get(parentOf(path))?.push(baseName(path));
    made.push([
      path,
      { value: joined(n.value_len, n.value), perms: permsIn(n.perms), generation: ungen(n.generation) },
    ]);
  }
  for (const [path, n] of made) store.set(path, { ...n, children: children.get(path)! });
  store.generation = Number(state.generation);

  const quotas = { ...DEFAULT_QUOTAS, ...opts.quotas };
  const server = new XenstoreServer({ quotas, store });
  const conns = new Map<number, XsConnection>();
  const queuedBy = new Map<number, XsMessage[]>();
  for (const q of state.queued) {
    const list = queuedBy.get(q.domid) ?? [];
    list.push({ type: q.type, reqId: q.req_id, txId: q.tx_id, payload: joined(q.payload_len, q.payload) });
    queuedBy.set(q.domid, list);
  }
  for (const c of state.connections) {
    const conn: XsConnection = {
      domid: c.domid,
      introduced: c.introduced,
      watches: [],
      transactions: new Map(),
      nextTxId: c.next_tx_id,
      out: OutQueue.of(queuedBy.get(c.domid) ?? [], c.out_used),
      inBuf: joined(c.in_len, c.in),
      error: c.error,
    };
    conns.set(c.domid, conn);
    server.adoptConnection(conn);
  }
  for (const w of state.watches) {
    conns.get(w.domid)!.watches.push({
      path: text(w.path_len, w.path),
      token: text(w.token_len, w.token),
      relative: w.relative,
    });
  }
  for (const t of state.transactions) {
    const limit = isPrivileged(t.domid) ? null : quotas.transactionNodes;
    const tx = new Transaction(store, t.id, t.domid, Number(t.generation), limit, server.countTxEntries);
    tx.fail = t.fail;
    conns.get(t.domid)!.transactions.set(t.id, tx);
  }
  for (const e of state.tx_entries) {
    const tx = conns.get(e.domid)!.transactions.get(e.tx_id)!;
    tx.entries.set(text(e.path_len, e.path), restoreEntry(e));
  }
  return server;
}

function restoreEntry(e: TxEntryState): TxEntry {
  const names = text(e.children_len, e.children).split('\0');
  names.pop();
  return {
    node: e.exists
      ? {
          value: joined(e.value_len, e.value),
          children: names,
          perms: permsIn(e.perms),
          generation: ungen(e.generation),
        }
      : null,
    observed: ungen(e.observed),
    check: e.check,
    modified: e.modified,
    fire: e.fire,
  };
}

// ---- validation ----

class Bad extends Error {
  constructor(
    readonly at: string,
    reason: string,
  ) {
    super(reason);
  }
}

const fail = (at: string, reason: string): never => {
  throw new Bad(at, reason);
};

function checkCount(at: string, count: number, list: readonly unknown[]): void {
  if (count !== list.length) fail(at, `count ${count} but ${list.length} entries`);
}

/** A blob's length, chunk count and zero padding agree; returns its bytes. */
function checkBlob(at: string, name: string, len: number, count: number, chunks: readonly Uint8Array[]): Uint8Array {
  checkCount(`${at}.${name}_chunks`, count, chunks);
  if (chunks.length !== Math.ceil(len / CHUNK))
    fail(`${at}.${name}_len`, `${len} bytes do not fill ${chunks.length} chunks of ${CHUNK}`);
  const last = chunks[chunks.length - 1];
  if (last)
    for (let i = len - (chunks.length - 1) * CHUNK; i < CHUNK; i++)
      if (last[i] !== 0) fail(`${at}.${name}`, 'padding is not zero');
  return joined(len, chunks);
}

/** An absolute node path as the daemon would have canonicalized it, or a special path. */
function checkPath(at: string, path: string): string {
  if (path.startsWith('@')) {
    if (!/^[A-Za-z0-9\-/_@]+$/.test(path)) fail(at, `bad special path ${JSON.stringify(path)}`);
    return path;
  }
  if (!path.startsWith('/') || typeof canonicalize(path, 0, false, null) === 'string')
    fail(at, `bad path ${JSON.stringify(path)}`);
  return path;
}

function checkPerms(at: string, count: number, perms: readonly PermState[]): void {
  checkCount(`${at}.nr_perms`, count, perms);
  if (perms.length === 0) fail(`${at}.perms`, 'a node needs at least its owner');
}

function checkGeneration(at: string, g: bigint, global: bigint, absentOk: boolean): void {
  if (absentOk && g === U64_MAX) return;
  if (g > global) fail(at, `generation ${g} is beyond the global count ${global}`);
}

/**
 * Refuses a state `restore` could not serve from: counts that disagree,
 * paths a request could not have made, a tree with a missing parent or a
 * duplicate, quota use that does not match the tree, a watch, transaction
 * or queued message of no connection, a message that cannot exist.
 * Throws FormatError naming the field.
 */
export function check(state: XenstoreState, where = 'xenstore'): void {
  try {
    checkState(state);
  } catch (e) {
    if (e instanceof Bad) throw new FormatError(`${where}.${e.at}: ${e.message}`);
    throw e;
  }
}

function checkState(s: XenstoreState): void {
  checkCount('nr_nodes', s.nr_nodes, s.nodes);
  const seen = new Set<string>();
  const owned = new Map<number, number>();
  s.nodes.forEach((n, i) => {
    const at = `nodes[${i}]`;
    const path = checkPath(`${at}.path`, bytesToString(checkBlob(at, 'path', n.path_len, n.path_chunks, n.path)));
    checkBlob(at, 'value', n.value_len, n.value_chunks, n.value);
    if (i === 0 && path !== '/') fail(`${at}.path`, 'the first node must be the root');
    if (seen.has(path)) fail(`${at}.path`, `${path} appears twice`);
    if (path !== '/' && !path.startsWith('@') && !seen.has(parentOf(path)))
      fail(`${at}.path`, `${path} comes before its parent`);
    seen.add(path);
    checkPerms(at, n.nr_perms, n.perms);
    checkGeneration(`${at}.generation`, n.generation, s.generation, false);
    const owner = n.perms[0]!.domid;
    owned.set(owner, (owned.get(owner) ?? 0) + 1);
  });
  for (const p of SPECIAL_PATHS) if (!seen.has(p)) fail('nodes', `the special node ${p} is missing`);

  checkCount('nr_owners', s.nr_owners, s.owners);
  const listed = new Set<number>();
  s.owners.forEach((o, i) => {
    if (listed.has(o.domid)) fail(`owners[${i}].domid`, `domain ${o.domid} listed twice`);
    listed.add(o.domid);
    const real = owned.get(o.domid) ?? 0;
    if (o.nodes !== real) fail(`owners[${i}].nodes`, `domain ${o.domid} owns ${real} nodes, not ${o.nodes}`);
  });
  for (const [domid] of owned) if (!listed.has(domid)) fail('owners', `domain ${domid} owns nodes but is not listed`);

  checkCount('nr_connections', s.nr_connections, s.connections);
  const conns = new Map<number, ConnState>();
  s.connections.forEach((c, i) => {
    const at = `connections[${i}]`;
    if (conns.has(c.domid)) fail(`${at}.domid`, `domain ${c.domid} has two connections`);
    conns.set(c.domid, c);
    const input = checkBlob(at, 'in', c.in_len, c.in_chunks, c.in);
    if (input.length >= HEADER_SIZE) {
      const len = decodeHeader(input).len;
      if (len > PAYLOAD_MAX) fail(`${at}.in`, `a partial request claims ${len} payload bytes`);
      if (input.length >= HEADER_SIZE + len) fail(`${at}.in`, 'a complete request was left unprocessed');
    }
  });
  const connOf = (at: string, domid: number): ConnState =>
    conns.get(domid) ?? fail(`${at}.domid`, `domain ${domid} has no connection`);

  checkCount('nr_watches', s.nr_watches, s.watches);
  const watches = new Set<string>();
  s.watches.forEach((w, i) => {
    const at = `watches[${i}]`;
    connOf(at, w.domid);
    const path = checkPath(`${at}.path`, bytesToString(checkBlob(at, 'path', w.path_len, w.path_chunks, w.path)));
    const token = checkBlob(at, 'token', w.token_len, w.token_chunks, w.token);
    if (token.includes(0)) fail(`${at}.token`, 'a token cannot hold a NUL');
    if (w.relative && !path.startsWith(`${domainPath(w.domid)}/`))
      fail(`${at}.relative`, `${path} is not below domain ${w.domid}'s home`);
    const key = `${w.domid}\0${path}\0${bytesToString(token)}`;
    if (watches.has(key)) fail(at, 'the same watch twice');
    watches.add(key);
  });

  checkCount('nr_transactions', s.nr_transactions, s.transactions);
  const txs = new Set<string>();
  s.transactions.forEach((t, i) => {
    const at = `transactions[${i}]`;
    connOf(at, t.domid);
    if (t.id === 0) fail(`${at}.id`, 'transaction id 0 means "none"');
    if (txs.has(`${t.domid}:${t.id}`)) fail(`${at}.id`, `transaction ${t.id} of domain ${t.domid} twice`);
    txs.add(`${t.domid}:${t.id}`);
    checkGeneration(`${at}.generation`, t.generation, s.generation, false);
  });

  checkCount('nr_tx_entries', s.nr_tx_entries, s.tx_entries);
  const entries = new Set<string>();
  s.tx_entries.forEach((e, i) => {
    const at = `tx_entries[${i}]`;
    if (!txs.has(`${e.domid}:${e.tx_id}`)) fail(`${at}.tx_id`, `domain ${e.domid} has no transaction ${e.tx_id}`);
    const path = checkPath(`${at}.path`, bytesToString(checkBlob(at, 'path', e.path_len, e.path_chunks, e.path)));
    const key = `${e.domid}:${e.tx_id}:${path}`;
    if (entries.has(key)) fail(`${at}.path`, `${path} twice in one transaction`);
    entries.add(key);
    checkEntry(at, e, path, s.generation);
  });

  checkCount('nr_queued', s.nr_queued, s.queued);
  const firstOf = new Map<number, number>();
  s.queued.forEach((m, i) => {
    const at = `queued[${i}]`;
    connOf(at, m.domid);
    checkBlob(at, 'payload', m.payload_len, m.payload_chunks, m.payload);
    if (m.type >= XS_TYPE_COUNT) fail(`${at}.type`, `unknown message type ${m.type}`);
    if (!firstOf.has(m.domid)) firstOf.set(m.domid, HEADER_SIZE + m.payload_len);
  });
  s.connections.forEach((c, i) => {
    const size = firstOf.get(c.domid);
    if (size === undefined ? c.out_used !== 0 : c.out_used >= size)
      fail(`connections[${i}].out_used`, `${c.out_used} bytes sent of a message that is not that long`);
  });
}

function checkEntry(at: string, e: TxEntryState, path: string, global: bigint): void {
  const value = checkBlob(at, 'value', e.value_len, e.value_chunks, e.value);
  const list = checkBlob(at, 'children', e.children_len, e.children_chunks, e.children);
  checkGeneration(`${at}.observed`, e.observed, global, true);
  if (!e.exists) {
    if (value.length || e.perms.length || list.length) fail(at, 'an absent node with contents');
    return;
  }
  checkPerms(at, e.nr_perms, e.perms);
  checkGeneration(`${at}.generation`, e.generation, global, false);
  if (list.length > 0 && list[list.length - 1] !== 0) fail(`${at}.children`, 'the child list must end with a NUL');
  const names = bytesToString(list).split('\0');
  names.pop();
  const unique = new Set<string>();
  for (const name of names) {
    const bad =
      name === '' ||
      name.includes('/') ||
      name.startsWith('@') ||
      typeof canonicalize(childPath(path, name), 0, false, null) === 'string';
    if (bad) fail(`${at}.children`, `bad child name ${JSON.stringify(name)}`);
    if (unique.has(name)) fail(`${at}.children`, `child ${name} twice`);
    unique.add(name);
  }
}
