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
