// The xenstore tree: nodes keyed by absolute path, each with a value (bytes),
// an ordered list of child names, a permission list and a generation count,
// plus the path and permission rules of Xen's docs/misc/xenstore.txt.
// Nodes are immutable records: a write replaces the node, so a transaction
// can keep the node it first saw as its private copy without cloning it.
import { ABS_PATH_MAX, XsPerm, type XsError } from './wire.js';

/** One entry of a permission list; `perm` is XsPerm READ | WRITE bits. */
export interface XsPermEntry {
  readonly domid: number;
  readonly perm: number;
}

export interface XsNode {
  readonly value: Uint8Array;
  readonly children: readonly string[];
  /** perms[0]: the owner, and its bits are what every domain not listed gets. */
  readonly perms: readonly XsPermEntry[];
  /** The global generation at the node's last write: transactions compare it. */
  readonly generation: number;
}

/** The generation of a node that does not exist (the daemon's NO_GENERATION). */
export const NO_GENERATION = -1;

/** The special watch paths: only the daemon fires them, on domain introduction and release. */
export const SPECIAL_PATHS = ['@introduceDomain', '@releaseDomain'] as const;
export type SpecialPath = (typeof SPECIAL_PATHS)[number];

/** Domain 0 is the toolstack: every permission, no quota. */
export const isPrivileged = (domid: number): boolean => domid === 0;

export const domainPath = (domid: number): string => `/local/domain/${domid}`;

const VALID_CHARS = /^[A-Za-z0-9\-/_@]*$/;
const LOCAL_PREFIX = /^\/local\/domain\/(\d{1,5})\//;

export interface Canonical {
  path: string;
  /** Given relative to the caller's home: watch events strip the home again. */
  relative: boolean;
}

/**
 * Turns a request's path into an absolute one, or the error the daemon
 * gives: EINVAL for a missing path, a character outside A-Za-z0-9-/_@, a
 * special (@) path where none is allowed, a trailing or doubled slash, or a
 * path too long.  `relMax` is the path-length quota: it counts what follows
 * /local/domain/<id>/ (for any id), and applies to unprivileged callers only.
 */
export function canonicalize(
  input: string | null,
  domid: number,
  allowSpecial: boolean,
  relMax: number | null,
): Canonical | XsError {
  if (input === null || !VALID_CHARS.test(input)) return 'EINVAL';
  if (input.startsWith('@')) return allowSpecial ? { path: input, relative: false } : 'EINVAL';
  const relative = !input.startsWith('/');
  const path = relative ? `${domainPath(domid)}/${input}` : input;
  if ((path.endsWith('/') && path !== '/') || path.includes('//')) return 'EINVAL';
  if (path.length > ABS_PATH_MAX) return 'EINVAL';
  if (relMax !== null) {
    const local = LOCAL_PREFIX.exec(path);
    if (path.length - (local ? local[0].length : 0) > relMax) return 'EINVAL';
  }
  return { path, relative };
}

/** The parent the daemon reads permissions from: "/" for top-level and special paths. */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/** Whether `child` is `parent` or below it (xenstore.txt: "/" is everyone's parent). */
export function isUnder(child: string, parent: string): boolean {
  if (parent === '/') return true;
  return child === parent || (child.startsWith(parent) && child[parent.length] === '/');
}

const LETTERS = ['n', 'r', 'w', 'b'] as const;

/** "b5": the letter for the bits, then the domid in decimal. */
export function permToString(p: XsPermEntry): string {
  return `${LETTERS[p.perm & (XsPerm.READ | XsPerm.WRITE)]}${p.domid}`;
}

/**
 * Parses SET_PERMS strings.  Stricter than the daemon's strtol: the domid
 * must be decimal and within 0..65535 (a domid on the wire is a u16 anyway).
 */
export function parsePerm(s: string): XsPermEntry | null {
  const bits = LETTERS.indexOf(s[0] as (typeof LETTERS)[number]);
  const id = s.slice(1);
  if (bits < 0 || !/^\d{1,5}$/.test(id) || Number(id) > 0xffff) return null;
  return { domid: Number(id), perm: bits };
}

/** What `domid` may do to a node: READ | WRITE | OWNER bits. */
export function permFor(domid: number, perms: readonly XsPermEntry[]): number {
  const all = XsPerm.READ | XsPerm.WRITE | XsPerm.OWNER;
  if (isPrivileged(domid) || perms[0]?.domid === domid) return all;
  for (let i = 1; i < perms.length; i++) if (perms[i]!.domid === domid) return perms[i]!.perm;
  return perms[0]?.perm ?? XsPerm.NONE;
}

/**
 * The size the node-size quota measures, as the daemon stores a node: a
 * 16-byte header, 8 bytes per permission, the value, and each child name
 * with its NUL.
 */
export function nodeSize(n: Pick<XsNode, 'value' | 'children' | 'perms'>): number {
  let size = 16 + 8 * n.perms.length + n.value.length;
  for (const c of n.children) size += c.length + 1;
  return size;
}

const NONE_0: readonly XsPermEntry[] = [{ domid: 0, perm: XsPerm.NONE }];

/**
 * The committed tree.  Also counts nodes per owner, the figure the
 * nodes-per-domain quota compares.
 */
export class XsStore {
  private readonly nodes = new Map<string, XsNode>();
  private readonly owned = new Map<number, number>();
  private gen = 0;

  /** The tree a fresh daemon starts with: /, /tool, /tool/xenstored and the special nodes, owned by 0. */
  static initial(): XsStore {
    const s = new XsStore();
    const mk = (children: string[]): XsNode => ({ value: new Uint8Array(0), children, perms: NONE_0, generation: 0 });
    s.set('/', mk(['tool']));
    s.set('/tool', mk(['xenstored']));
    s.set('/tool/xenstored', mk([]));
    for (const p of SPECIAL_PATHS) s.set(p, mk([]));
    return s;
  }

  get generation(): number {
    return this.gen;
  }
  set generation(g: number) {
    this.gen = g;
  }
  /** Every write takes a fresh generation, so equal generations mean an unchanged node. */
  nextGeneration(): number {
    return ++this.gen;
  }

  get(path: string): XsNode | undefined {
    return this.nodes.get(path);
  }

  set(path: string, node: XsNode): void {
    const old = this.nodes.get(path);
    if (old) this.count(old.perms[0]!.domid, -1);
    this.count(node.perms[0]!.domid, +1);
    this.nodes.set(path, node);
  }

  delete(path: string): void {
    const old = this.nodes.get(path);
    if (!old) return;
    this.count(old.perms[0]!.domid, -1);
    this.nodes.delete(path);
  }

  /** Nodes whose owner is `domid`. */
  ownedBy(domid: number): number {
    return this.owned.get(domid) ?? 0;
  }

  /** Owner counts, for the state and `inspect`. */
  ownerCounts(): Map<number, number> {
    return new Map(this.owned);
  }

  get size(): number {
    return this.nodes.size;
  }

  /** All nodes, parents before children (the order a snapshot lists them in). */
  *walk(): Generator<[string, XsNode]> {
    const stack = ['/'];
    while (stack.length > 0) {
      const path = stack.pop()!;
      const node = this.nodes.get(path);
      if (!node) continue;
      yield [path, node];
      for (let i = node.children.length - 1; i >= 0; i--) stack.push(childPath(path, node.children[i]!));
    }
    for (const p of SPECIAL_PATHS) {
      const n = this.nodes.get(p);
      if (n) yield [p, n];
    }
  }

  private count(domid: number, d: number): void {
    const n = (this.owned.get(domid) ?? 0) + d;
    if (n === 0) this.owned.delete(domid);
    else this.owned.set(domid, n);
  }
}
