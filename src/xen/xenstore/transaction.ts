// Views of the tree that requests read and write through: the committed
// store directly, or a transaction.  A transaction keeps, per path it
// touched, the node it first saw (reads after that see the same node), the
// generation that node had, and what the transaction wrote.  At commit every
// path whose committed generation moved since it was first seen makes the
// end fail with EAGAIN: the rule of the daemon's generation counts, which
// compares every node the transaction read or wrote (a write reads first).
import { XS_LIMITS } from './quota.js';
import { NO_GENERATION, type XsNode, type XsStore } from './store.js';
import type { XsError } from './wire.js';

/** A failure that aborts the request being handled with this error reply. */
export class XsFail extends Error {
  constructor(readonly error: XsError) {
    super(error);
  }
}

/** How a watch fires for a path changed in a transaction, decided at commit. */
export const Fire = {
  none: 0,
  /** Only watches on exactly this path (a node removed under a removed parent). */
  exact: 1,
  /** Watches on this path and on its parents. */
  tree: 2,
} as const;
export type Fire = (typeof Fire)[keyof typeof Fire];

export interface TxEntry {
  /** The node as the transaction sees it; null when absent or removed. */
  node: XsNode | null;
  /** Generation of the committed node when first seen, NO_GENERATION if it did not exist. */
  observed: number;
  /** First seen by a read: compared at commit. */
  check: boolean;
  modified: boolean;
  fire: Fire;
}

export interface NodeView {
  get(path: string): XsNode | undefined;
  put(path: string, node: XsNode): void;
  remove(path: string): void;
  /** Node count of `domid` as this view sees it (committed plus own changes). */
  ownedBy(domid: number): number;
  /** Nodes in the tree as this view sees it. */
  nodeCount(): number;
  readonly store: XsStore;
}

export class CommittedView implements NodeView {
  constructor(readonly store: XsStore) {}
  get(path: string): XsNode | undefined {
    return this.store.get(path);
  }
  put(path: string, node: XsNode): void {
    this.store.set(path, { ...node, generation: this.store.nextGeneration() });
  }
  remove(path: string): void {
    this.store.delete(path);
  }
  ownedBy(domid: number): number {
    return this.store.ownedBy(domid);
  }
  nodeCount(): number {
    return this.store.size;
  }
}

export class Transaction implements NodeView {
  readonly entries = new Map<string, TxEntry>();
  /** Set when an operation inside failed half-way: the end then reports ENOMEM, as the daemon does. */
  fail = false;
  /**
   * @param maxEntries paths one transaction may touch (the transaction-nodes
   *   quota), or null when unlimited
   * @param allEntries paths touched by every open transaction together
   */
  constructor(
    readonly store: XsStore,
    readonly id: number,
    readonly domid: number,
    readonly generation: number,
    private readonly maxEntries: number | null,
    private readonly allEntries: () => number,
  ) {}

  get(path: string): XsNode | undefined {
    const e = this.entries.get(path);
    if (e) return e.node ?? undefined;
    this.admit();
    const node = this.store.get(path);
    if (node) this.fits(node);
    this.entries.set(path, {
      node: node ?? null,
      observed: node ? node.generation : NO_GENERATION,
      check: true,
      modified: false,
      fire: Fire.none,
    });
    return node;
  }

  put(path: string, node: XsNode): void {
    this.fits(node);
    const e = this.entry(path);
    e.node = { ...node, generation: this.store.nextGeneration() };
    e.modified = true;
  }

  remove(path: string): void {
    const e = this.entry(path);
    e.node = null;
    e.modified = true;
  }

  /** Nodes in the tree if the transaction committed now. */
  nodeCount(): number {
    let n = this.store.size;
    for (const [path, e] of this.entries) {
      if (e.modified) n += (e.node ? 1 : 0) - (this.store.get(path) ? 1 : 0);
    }
    return n;
  }

  /** Nodes `domid` would own if the transaction committed now. */
  ownedBy(domid: number): number {
    let n = this.store.ownedBy(domid);
    for (const [path, e] of this.entries) {
      if (!e.modified) continue;
      const old = this.store.get(path);
      if (old && old.perms[0]!.domid === domid) n--;
      if (e.node && e.node.perms[0]!.domid === domid) n++;
    }
    return n;
  }

  /** Remembers a watch to fire at commit; a tree event outranks an exact one. */
  queueFire(path: string, how: typeof Fire.exact | typeof Fire.tree): void {
    const e = this.entries.get(path);
    if (!e) {
      this.fail = true;
      return;
    }
    if (e.fire === Fire.none || how === Fire.tree) e.fire = how;
  }

  /** EAGAIN when a path this transaction saw has changed in the committed tree since. */
  conflict(): boolean {
    for (const [path, e] of this.entries) {
      if (!e.check) continue;
      const now = this.store.get(path);
      if ((now ? now.generation : NO_GENERATION) !== e.observed) return true;
    }
    return false;
  }

  private entry(path: string): TxEntry {
    let e = this.entries.get(path);
    if (!e) {
      // A write without a read first: nothing was observed to compare.
      this.admit();
      e = { node: null, observed: NO_GENERATION, check: false, modified: false, fire: Fire.none };
      this.entries.set(path, e);
    }
    return e;
  }

  private admit(): void {
    const mine = this.maxEntries !== null && this.entries.size >= this.maxEntries;
    if (mine || this.allEntries() >= XS_LIMITS.transactionEntries) this.refuse();
  }

  /** A child list longer than a transaction may hold. */
  private fits(node: XsNode): void {
    let bytes = 0;
    for (const c of node.children) bytes += c.length + 1;
    if (bytes > XS_LIMITS.transactionChildBytes) this.refuse();
  }

  private refuse(): never {
    this.fail = true;
    throw new XsFail('ENOSPC');
  }
}
