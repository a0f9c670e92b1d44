// The xenstore section: everything the daemon holds that a restored guest
// must find again.  The tree (values, permissions, generations), each
// connection's watches, open transactions with their private nodes and the
// generations they saw, replies and watch events not yet sent, the bytes of
// a request received in part, and the node count per owner (quota use).
// Strings and values are byte arrays (the state DSL has no variable-length
// bytes kind).  `check` validates a decoded state before `restore` trusts it.
import { FormatError } from '../../errors.js';
import { bool, defineState, enumOf, struct, u16, u32, u64, u8, varArray, type StateOf } from '../../vmstate/index.js';
import { OutQueue } from './out-queue.js';
import { DEFAULT_QUOTAS, type XsQuotas } from './quota.js';
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

/** Upper bounds of the section's arrays: generous, since domain 0 has no quota. */
export const XS_STATE_LIMITS = {
  nodes: 1 << 20,
  perms: 2048,
  children: 1 << 20,
  connections: 1 << 16,
  watches: 1 << 16,
  transactions: 1 << 16,
  txEntries: 1 << 20,
  queued: 1 << 18,
} as const;

const U64_MAX = 0xffff_ffff_ffff_ffffn;

const perm = struct({ perm: enumOf(u8, { n: 0, r: 1, w: 2, b: 3 }), domid: u16() });

/** A committed node; the list is in tree order (parents first), so child lists are rebuilt from it. */
const node = struct({
  path_len: u16(),
  path: varArray(u8(), { lengthField: 'path_len', max: ABS_PATH_MAX }),
  value_len: u16(),
  value: varArray(u8(), { lengthField: 'value_len', max: PAYLOAD_MAX }),
  nr_perms: u16(),
  perms: varArray(perm, { lengthField: 'nr_perms', max: XS_STATE_LIMITS.perms }),
  generation: u64(),
});

/** A path a transaction touched: its private node (children listed, NUL-separated) and what it saw. */
const txEntry = struct({
  path_len: u16(),
  path: varArray(u8(), { lengthField: 'path_len', max: ABS_PATH_MAX }),
  exists: bool(),
  value_len: u16(),
  value: varArray(u8(), { lengthField: 'value_len', max: PAYLOAD_MAX }),
  nr_perms: u16(),
  perms: varArray(perm, { lengthField: 'nr_perms', max: XS_STATE_LIMITS.perms }),
  children_len: u32(),
  children: varArray(u8(), { lengthField: 'children_len', max: XS_STATE_LIMITS.children }),
  generation: u64(),
  /** Generation of the committed node when first seen; all ones when it did not exist. */
  observed: u64(),
  check: bool(),
  modified: bool(),
  fire: enumOf(u8, Fire),
});

const transaction = struct({
  id: u32(),
  generation: u64(),
  fail: bool(),
  nr_entries: u32(),
  entries: varArray(txEntry, { lengthField: 'nr_entries', max: XS_STATE_LIMITS.txEntries }),
});

const watch = struct({
  path_len: u16(),
  path: varArray(u8(), { lengthField: 'path_len', max: ABS_PATH_MAX }),
  token_len: u16(),
  token: varArray(u8(), { lengthField: 'token_len', max: PAYLOAD_MAX }),
  relative: bool(),
});

const message = struct({
  type: u32(),
  req_id: u32(),
  tx_id: u32(),
  len: u16(),
  payload: varArray(u8(), { lengthField: 'len', max: PAYLOAD_MAX }),
});

const connection = struct({
  domid: u16(),
  introduced: bool(),
  /** RingError: not NONE once the guest broke the protocol (the connection is then ignored). */
  error: enumOf(u8, RingError),
  next_tx_id: u32(),
  nr_watches: u32(),
  watches: varArray(watch, { lengthField: 'nr_watches', max: XS_STATE_LIMITS.watches }),
  nr_transactions: u32(),
  transactions: varArray(transaction, { lengthField: 'nr_transactions', max: XS_STATE_LIMITS.transactions }),
  nr_out: u32(),
  out: varArray(message, { lengthField: 'nr_out', max: XS_STATE_LIMITS.queued }),
  /** Bytes of out[0] already on the ring. */
  out_used: u16(),
  in_len: u16(),
  in: varArray(u8(), { lengthField: 'in_len', max: HEADER_SIZE + PAYLOAD_MAX }),
});

export const xenstoreState = defineState({
  name: 'xenstore',
  version: 1,
  fields: {
    generation: u64(),
    nr_nodes: u32(),
    nodes: varArray(node, { lengthField: 'nr_nodes', max: XS_STATE_LIMITS.nodes }),
    nr_connections: u32(),
    connections: varArray(connection, { lengthField: 'nr_connections', max: XS_STATE_LIMITS.connections }),
    /** Nodes per owning domain: the figure the nodes quota compares. */
    nr_owners: u32(),
    owners: varArray(struct({ domid: u16(), nodes: u32() }), {
      lengthField: 'nr_owners',
      max: XS_STATE_LIMITS.connections,
    }),
  },
});

export type XenstoreState = StateOf<typeof xenstoreState>;
type PermState = XenstoreState['nodes'][number]['perms'][number];
type TxEntryState = XenstoreState['connections'][number]['transactions'][number]['entries'][number];

const bytes = (s: string): number[] => Array.from(stringToBytes(s));
const text = (b: readonly number[]): string => bytesToString(Uint8Array.from(b));
const gen = (g: number): bigint => (g === NO_GENERATION ? U64_MAX : BigInt(g));
const ungen = (g: bigint): number => (g === U64_MAX ? NO_GENERATION : Number(g));
const permsOut = (p: readonly XsPermEntry[]): PermState[] =>
  p.map((x) => ({ perm: x.perm as PermState['perm'], domid: x.domid }));
const permsIn = (p: readonly PermState[]): XsPermEntry[] => p.map((x) => ({ domid: x.domid, perm: x.perm }));

export function save(server: XenstoreServer): XenstoreState {
  const nodes: XenstoreState['nodes'] = [];
  for (const [path, n] of server.store.walk()) {
    nodes.push({
      path_len: path.length,
      path: bytes(path),
      value_len: n.value.length,
      value: Array.from(n.value),
      nr_perms: n.perms.length,
      perms: permsOut(n.perms),
      generation: gen(n.generation),
    });
  }
  const connections = [...server.connections()].map(saveConnection);
  const owners = [...server.store.ownerCounts()]
    .sort(([a], [b]) => a - b)
    .map(([domid, count]) => ({ domid, nodes: count }));
  return {
    generation: BigInt(server.store.generation),
    nr_nodes: nodes.length,
    nodes,
    nr_connections: connections.length,
    connections,
    nr_owners: owners.length,
    owners,
  };
}

function saveConnection(c: XsConnection): XenstoreState['connections'][number] {
  const watches = c.watches.map((w) => ({
    path_len: w.path.length,
    path: bytes(w.path),
    token_len: w.token.length,
    token: bytes(w.token),
    relative: w.relative,
  }));
  const transactions = [...c.transactions.values()].map((t) => {
    const entries = [...t.entries].map(([path, e]) => saveEntry(path, e));
    return { id: t.id, generation: BigInt(t.generation), fail: t.fail, nr_entries: entries.length, entries };
  });
  const out = c.out.toArray().map((m) => ({
    type: m.type,
    req_id: m.reqId,
    tx_id: m.txId,
    len: m.payload.length,
    payload: Array.from(m.payload),
  }));
  return {
    domid: c.domid,
    introduced: c.introduced,
    error: c.error as XenstoreState['connections'][number]['error'],
    next_tx_id: c.nextTxId,
    nr_watches: watches.length,
    watches,
    nr_transactions: transactions.length,
    transactions,
    nr_out: out.length,
    out,
    out_used: c.out.used,
    in_len: c.inBuf.length,
    in: Array.from(c.inBuf),
  };
}

function saveEntry(path: string, e: TxEntry): TxEntryState {
  const n = e.node;
  const children = n ? bytes(n.children.map((x) => `${x}\0`).join('')) : [];
  return {
    path_len: path.length,
    path: bytes(path),
    exists: n !== null,
    value_len: n ? n.value.length : 0,
    value: n ? Array.from(n.value) : [],
    nr_perms: n ? n.perms.length : 0,
    perms: n ? permsOut(n.perms) : [],
    children_len: children.length,
    children,
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
  const pending: Array<[string, Omit<XsNode, 'children'>]> = [];
  for (const n of state.nodes) {
    const path = text(n.path);
    children.set(path, []);
    if (path !== '/' && !path.startsWith('@')) children.get(parentOf(path))?.push(baseName(path));
    pending.push([path, { value: Uint8Array.from(n.value), perms: permsIn(n.perms), generation: ungen(n.generation) }]);
  }
  for (const [path, n] of pending) store.set(path, { ...n, children: children.get(path)! });
  store.generation = Number(state.generation);

  const quotas = { ...DEFAULT_QUOTAS, ...opts.quotas };
  const server = new XenstoreServer({ quotas, store });
  for (const c of state.connections) {
    const conn: XsConnection = {
      domid: c.domid,
      introduced: c.introduced,
      watches: c.watches.map((w) => ({ path: text(w.path), token: text(w.token), relative: w.relative })),
      transactions: new Map(),
      nextTxId: c.next_tx_id,
      out: OutQueue.of(
        c.out.map((m): XsMessage => ({
          type: m.type,
          reqId: m.req_id,
          txId: m.tx_id,
          payload: Uint8Array.from(m.payload),
        })),
        c.out_used,
      ),
      inBuf: Uint8Array.from(c.in),
      error: c.error,
    };
    const limit = isPrivileged(c.domid) ? null : quotas.transactionNodes;
    for (const t of c.transactions) {
      const tx = new Transaction(store, t.id, c.domid, Number(t.generation), limit);
      tx.fail = t.fail;
      for (const e of t.entries) tx.entries.set(text(e.path), restoreEntry(e));
      conn.transactions.set(t.id, tx);
    }
    server.adoptConnection(conn);
  }
  return server;
}

function restoreEntry(e: TxEntryState): TxEntry {
  const names = text(e.children).split('\0');
  names.pop();
  return {
    node: e.exists
      ? { value: Uint8Array.from(e.value), children: names, perms: permsIn(e.perms), generation: ungen(e.generation) }
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

/** An absolute node path as the daemon would have canonicalized it, or a special path. */
function checkPath(at: string, raw: readonly number[], special: 'allow' | 'forbid'): string {
  const path = text(raw);
  if (path.startsWith('@')) {
    if (special === 'forbid' || !/^[A-Za-z0-9\-/_@]+$/.test(path)) fail(at, `bad special path ${JSON.stringify(path)}`);
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
 * duplicate, quota use that does not match the tree, a transaction or a
 * queued message that cannot exist.  Throws FormatError naming the field.
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
    checkCount(`${at}.path_len`, n.path_len, n.path);
    checkCount(`${at}.value_len`, n.value_len, n.value);
    const path = checkPath(`${at}.path`, n.path, 'allow');
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
  const domids = new Set<number>();
  s.connections.forEach((c, i) => {
    const at = `connections[${i}]`;
    if (domids.has(c.domid)) fail(`${at}.domid`, `domain ${c.domid} has two connections`);
    domids.add(c.domid);
    checkConnection(at, c, s.generation);
  });
}

function checkConnection(at: string, c: XenstoreState['connections'][number], global: bigint): void {
  checkCount(`${at}.nr_watches`, c.nr_watches, c.watches);
  const watches = new Set<string>();
  c.watches.forEach((w, i) => {
    const wat = `${at}.watches[${i}]`;
    checkCount(`${wat}.path_len`, w.path_len, w.path);
    checkCount(`${wat}.token_len`, w.token_len, w.token);
    const path = checkPath(`${wat}.path`, w.path, 'allow');
    if (w.token.includes(0)) fail(`${wat}.token`, 'a token cannot hold a NUL');
    if (w.relative && !path.startsWith(`${domainPath(c.domid)}/`))
      fail(`${wat}.relative`, `${path} is not below domain ${c.domid}'s home`);
    const key = `${path}\0${text(w.token)}`;
    if (watches.has(key)) fail(`${wat}`, 'the same watch twice');
    watches.add(key);
  });

  checkCount(`${at}.nr_transactions`, c.nr_transactions, c.transactions);
  const ids = new Set<number>();
  c.transactions.forEach((t, i) => {
    const tat = `${at}.transactions[${i}]`;
    if (t.id === 0) fail(`${tat}.id`, 'transaction id 0 means "none"');
    if (ids.has(t.id)) fail(`${tat}.id`, `transaction ${t.id} twice`);
    ids.add(t.id);
    checkGeneration(`${tat}.generation`, t.generation, global, false);
    checkCount(`${tat}.nr_entries`, t.nr_entries, t.entries);
    const paths = new Set<string>();
    t.entries.forEach((e, j) => checkEntry(`${tat}.entries[${j}]`, e, paths, global));
  });

  checkCount(`${at}.nr_out`, c.nr_out, c.out);
  c.out.forEach((m, i) => {
    checkCount(`${at}.out[${i}].len`, m.len, m.payload);
    if (m.type >= XS_TYPE_COUNT) fail(`${at}.out[${i}].type`, `unknown message type ${m.type}`);
  });
  const first = c.out[0];
  if (first ? c.out_used >= HEADER_SIZE + first.len : c.out_used !== 0)
    fail(`${at}.out_used`, `${c.out_used} bytes sent of a message that is not that long`);

  checkCount(`${at}.in_len`, c.in_len, c.in);
  if (c.in.length >= HEADER_SIZE) {
    const len = decodeHeader(Uint8Array.from(c.in)).len;
    if (len > PAYLOAD_MAX) fail(`${at}.in`, `a partial request claims ${len} payload bytes`);
    if (c.in.length >= HEADER_SIZE + len) fail(`${at}.in`, 'a complete request was left unprocessed');
  }
}

function checkEntry(at: string, e: TxEntryState, paths: Set<string>, global: bigint): void {
  checkCount(`${at}.path_len`, e.path_len, e.path);
  checkCount(`${at}.value_len`, e.value_len, e.value);
  checkCount(`${at}.children_len`, e.children_len, e.children);
  const path = checkPath(`${at}.path`, e.path, 'allow');
  if (paths.has(path)) fail(`${at}.path`, `${path} twice`);
  paths.add(path);
  checkGeneration(`${at}.observed`, e.observed, global, true);
  if (!e.exists) {
    if (e.value.length || e.perms.length || e.children.length) fail(`${at}`, 'an absent node with contents');
    return;
  }
  checkPerms(at, e.nr_perms, e.perms);
  checkGeneration(`${at}.generation`, e.generation, global, false);
  if (e.children.length > 0 && e.children[e.children.length - 1] !== 0)
    fail(`${at}.children`, 'the child list must end with a NUL');
  const names = text(e.children).split('\0');
  names.pop();
  const unique = new Set<string>();
  for (const name of names) {
    if (
      name === '' ||
      name.includes('/') ||
      name.startsWith('@') ||
      typeof canonicalize(childPath(path, name), 0, false, null) === 'string'
    )
      fail(`${at}.children`, `bad child name ${JSON.stringify(name)}`);
    if (unique.has(name)) fail(`${at}.children`, `child ${name} twice`);
    unique.add(name);
  }
}
