// One domain's connection to the daemon: its watches, open transactions,
// the output waiting for its transport, and the transport's partial input.
import { OutQueue } from './out-queue.js';
import type { Transaction } from './transaction.js';

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

export function newConnection(domid: number): XsConnection {
  return {
    domid,
    introduced: false,
    watches: [],
    transactions: new Map(),
    nextTxId: 1,
    out: new OutQueue(),
    inBuf: new Uint8Array(0),
    error: 0,
  };
}
