// Per-domain limits with the defaults of Xen's C xenstored (its hard quota
// table and the options of its usage text).  They bind unprivileged domains
// only; domain 0, the toolstack, is unlimited.  docs/xenstore.md lists the
// error each one gives.
export interface XsQuotas {
  /** Nodes a domain may own (ENOSPC). */
  nodes: number;
  /** Watches per connection (E2BIG). */
  watches: number;
  /** Open transactions per connection (ENOSPC). */
  transactions: number;
  /** Distinct paths one transaction may touch (ENOSPC, and the transaction fails). */
  transactionNodes: number;
  /** Entries in one permission list (ENOSPC). */
  nodePerms: number;
  /** Path length below /local/domain/<id>/ (EINVAL). */
  pathLength: number;
  /** Stored node size: 16 + 8 per permission + value + child names with NULs (ENOSPC). */
  nodeSize: number;
  /** Replies waiting for ring space before the backend stops reading requests. */
  outstanding: number;
  /** Bytes of queued replies and events; further watch events are dropped, as the daemon's memory quota does. */
  outputBytes: number;
}

export const DEFAULT_QUOTAS: Readonly<XsQuotas> = {
  nodes: 1000,
  watches: 128,
  transactions: 10,
  transactionNodes: 1024,
  nodePerms: 5,
  pathLength: 2048,
  nodeSize: 2048,
  outstanding: 20,
  outputBytes: 2.5 * 1024 * 1024,
};

/**
 * Limits for every domain, the toolstack included, where xenstored is
 * bounded only by memory: they keep the state section within the element
 * budget a schema read back from a snapshot may expand to (so `inspect`
 * can always decode it), and a save can never overflow its arrays.  One
 * guest at its full quotas stays well inside them.
 */
export const XS_LIMITS = {
  /** Nodes in the tree (ENOSPC). */
  nodes: 8192,
  /** Entries in one permission list (ENOSPC). */
  perms: 16,
  /** Domains with a connection. */
  connections: 64,
  /** Watches over all connections (E2BIG). */
  watches: 1024,
  /** Open transactions over all connections (ENOSPC). */
  transactions: 128,
  /** Paths touched by all open transactions together (ENOSPC; the transaction fails). */
  transactionEntries: 4096,
  /** Bytes of one node's child list as a transaction holds it (ENOSPC; the transaction fails). */
  transactionChildBytes: 4096,
  /** Watch events waiting on one connection; more are dropped. */
  queuedEvents: 480,
  /** Messages waiting on all connections: each holds its events and at most `outstanding` replies. */
  queued: 32768,
} as const;
