// xenstore in a machine (docs/xenstore.md, "In the machine"): the daemon
// (xen/xenstore/) serving the guest's ring on the xenstore special page and
// its backend port, and the toolstack side the VMM uses as domain 0.
//
// Domain ids: the guest is domain 1, an unprivileged domain as under xl; the
// VMM is domain 0, the toolstack, with every permission.  (Event channels
// still treat a remote domain 0 as the guest itself; that is the event
// channel code's business, and xenstore never names a domain to it.)
//
// Output the daemon queues is written to the ring later, never from inside
// a request (server.ts onQueued), and only while the machine accepts
// backend kicks: while it is paused the ring page and the daemon must stay
// as a snapshot saves them, and resume() kicks every backend anyway.
import { basename } from 'node:path';
import { InputError } from '../errors.js';
import { HvmParam } from '../xen/abi.js';
import type { XenContext } from '../xen/context.js';
import { BackendId } from '../xen/tables.js';
import { writeDomainTree } from '../xen/xenstore/domain-tree.js';
import { XenstoreRing } from '../xen/xenstore/ring.js';
import type { XenstoreServer } from '../xen/xenstore/server.js';
import { domainPath } from '../xen/xenstore/store.js';
import { XsType, bytesToString, nulJoin, splitStrings, stringToBytes, type XsMessage } from '../xen/xenstore/wire.js';
import { backendPort, notifyGuest, type PvBackend } from './backend.js';

/** The guest's domain id in xenstore (the VMM, the toolstack, is 0). */
export const GUEST_DOMID = 1;
const TOOLSTACK = 0;
/** Tokens of the toolstack's own watches. */
const TOKEN_PREFIX = 'xenkvm-';

/** What the backend needs of its machine. */
export interface XenstoreHost {
  readonly context: XenContext;
  /** The machine's daemon (restore replaces it before the backend is attached). */
  readonly xenstore: XenstoreServer;
  /** False while paused or stopped: no ring traffic then. */
  readonly backendsActive: boolean;
  log(message: string): void;
}

/** The guest-physical frame of the xenstore ring, or 0 when the guest has none (an older snapshot). */
export function storePfn(x: XenContext): number {
  return Number(x.shared.domain.hvmParams[HvmParam.STORE_PFN]);
}

/** Writes the nodes a toolstack writes for a new domain and introduces it (boot only). */
export function writeGuestTree(
  x: XenContext,
  server: XenstoreServer,
  o: { elfName: string; memBytes: number; vcpus: number },
): void {
  const params = x.shared.domain.hvmParams;
  writeDomainTree(server, {
    domid: GUEST_DOMID,
    name: basename(o.elfName) || 'guest',
    memoryKb: Math.floor(o.memBytes / 1024),
    vcpus: o.vcpus,
    store: { port: Number(params[HvmParam.STORE_EVTCHN]), gfn: Number(params[HvmParam.STORE_PFN]) },
    console: { port: Number(params[HvmParam.CONSOLE_EVTCHN]), gfn: Number(params[HvmParam.CONSOLE_PFN]) },
  });
  server.introduceDomain(GUEST_DOMID);
}

/** The guest's end: its ring page and backend port. */
export class XenstoreBackend implements PvBackend {
  private ring: XenstoreRing | null = null;
  private flushScheduled = false;
  private kickScheduled = false;
  /** Watch listeners of the toolstack, by token. */
  readonly toolstack: XenstoreToolstack;

  constructor(private readonly host: XenstoreHost) {
    this.toolstack = new XenstoreToolstack(host);
  }

  /**
   * Serves the ring on the page at STORE_PFN; false when the guest has none
   * (STORE_PFN 0: a snapshot from before xenstore) or it is not a page the
   * platform owns.  `fresh`: a booted guest, whose page is set up here.
   */
  attach(fresh: boolean): boolean {
    const x = this.host.context;
    const server = this.host.xenstore;
    server.onQueued = (domid) => this.onQueued(domid);
    const pfn = storePfn(x);
    if (pfn === 0) return false;
    const at = x.phys.offsetOf(BigInt(pfn) * 4096n, 4096);
    if (at < 0 || !x.phys.holds(at, 4096)) {
      this.host.log(`xenstore: HVM_PARAM_STORE_PFN ${pfn} is not a page of this machine; xenstore is off`);
      return false;
    }
    this.ring = new XenstoreRing(server, GUEST_DOMID, x.phys.bytes(at, 4096), () => {
      notifyGuest(x, BackendId.xenstore);
    });
    if (fresh) this.ring.initialise();
    return true;
  }

  get attached(): boolean {
    return this.ring !== null;
  }

  /** The guest's port for the ring (0 when closed). */
  get port(): number {
    return backendPort(this.host.context, BackendId.xenstore);
  }

  kick(): void {
    if (!this.ring || !this.host.backendsActive) return;
    // A guest that keeps the ring full gets served in slices, between other work.
    if (this.ring.kick()) this.schedule('kick');
  }

  private onQueued(domid: number): void {
    if (domid === TOOLSTACK) this.toolstack.scheduleDrain();
    else if (domid === GUEST_DOMID) this.schedule('flush');
  }

  private schedule(what: 'kick' | 'flush'): void {
    if (what === 'kick' ? this.kickScheduled : this.flushScheduled) return;
    if (what === 'kick') this.kickScheduled = true;
    else this.flushScheduled = true;
    setImmediate(() => {
      if (what === 'kick') this.kickScheduled = false;
      else this.flushScheduled = false;
      if (!this.ring || !this.host.backendsActive) return;
      if (what === 'kick') this.kick();
      else this.ring.flush();
    });
  }
}

export interface XsTreeEntry {
  path: string;
  value: string;
  /** Permissions, owner first (`n0`, `r1`). */
  perms: string[];
}

export interface XsWatchEvent {
  path: string;
  token: string;
}

/**
 * The toolstack's requests, made as domain 0 in process: replies come back
 * directly (queueReply false), watch events are drained from domain 0's
 * queue and handed to their listeners.  Relative paths are the guest's
 * (below /local/domain/1), which is what someone driving one guest means.
 */
export class XenstoreToolstack {
  private reqId = 0;
  private nextToken = 1;
  private drainScheduled = false;
  private readonly listeners = new Map<string, (e: XsWatchEvent) => void>();

  constructor(private readonly host: XenstoreHost) {}

  /** `path` made absolute: relative paths are below the guest's home. */
  static absolute(path: string): string {
    return path.startsWith('/') || path.startsWith('@') ? path : `${domainPath(GUEST_DOMID)}/${path}`;
  }

  private call(type: number, payload: Uint8Array, what: string): Uint8Array {
    const msg: XsMessage = { type, reqId: ++this.reqId, txId: 0, payload };
    const { reply } = this.host.xenstore.handle(TOOLSTACK, msg, { queueReply: false });
    if (reply.type === XsType.ERROR) {
      const err = bytesToString(reply.payload).replace(/\0$/, '');
      throw new InputError(`${what}: ${err}`);
    }
    return reply.payload;
  }

  read(path: string): string {
    const p = XenstoreToolstack.absolute(path);
    return bytesToString(this.call(XsType.READ, nulJoin([p]), p));
  }

  write(path: string, value: string): void {
    const p = XenstoreToolstack.absolute(path);
    const head = nulJoin([p]);
    const body = stringToBytes(value);
    const payload = new Uint8Array(head.length + body.length);
    payload.set(head);
    payload.set(body, head.length);
    this.call(XsType.WRITE, payload, p);
  }

  rm(path: string): void {
    const p = XenstoreToolstack.absolute(path);
    this.call(XsType.RM, nulJoin([p]), p);
  }

  private children(path: string): string[] {
    return splitStrings(this.call(XsType.DIRECTORY, nulJoin([path]), `ls ${path}`));
  }

  private perms(path: string): string[] {
    return splitStrings(this.call(XsType.GET_PERMS, nulJoin([path]), `ls ${path}`));
  }

  /** The node at `path` and everything below it, parents first, children in creation order. */
  list(path = '/', limit = 10_000): XsTreeEntry[] {
    const out: XsTreeEntry[] = [];
    const visit = (p: string): void => {
      if (out.length >= limit) throw new InputError(`xenstore ls: more than ${limit} nodes`);
      out.push({ path: p, value: this.read(p), perms: this.perms(p) });
      for (const name of this.children(p)) visit(p === '/' ? `/${name}` : `${p}/${name}`);
    };
    visit(XenstoreToolstack.absolute(path));
    return out;
  }

  /**
   * Watches `path`; `onEvent` gets the event the daemon fires at once and
   * every change after it.  Returns the function that removes the watch.
   */
  watch(path: string, onEvent: (e: XsWatchEvent) => void): () => void {
    const p = XenstoreToolstack.absolute(path);
    const token = `${TOKEN_PREFIX}${this.nextToken++}`;
    this.listeners.set(token, onEvent);
    try {
      this.call(XsType.WATCH, nulJoin([p, token]), `watch ${p}`);
    } catch (e) {
      this.listeners.delete(token);
      throw e;
    }
    return () => {
      if (!this.listeners.delete(token)) return;
      try {
        this.call(XsType.UNWATCH, nulJoin([p, token]), `unwatch ${p}`);
      } catch {
        // Already gone (a restore replaced the daemon): nothing left to remove.
      }
    };
  }

  /**
   * A restored daemon still holds the watches of the process that saved it
   * (a `ctl xenstore-watch` that was running): nobody listens to them here.
   */
  forgetWatchesOfEarlierRuns(): void {
    const conn = this.host.xenstore.connection(TOOLSTACK);
    conn.watches = conn.watches.filter((w) => !w.token.startsWith(TOKEN_PREFIX));
    this.host.xenstore.take(TOOLSTACK);
  }

  /** Domain 0's queued events are delivered after the request that queued them. */
  scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      for (const m of this.host.xenstore.take(TOOLSTACK)) {
        if (m.type !== XsType.WATCH_EVENT) continue;
        const [path, token] = splitStrings(m.payload);
        if (path === undefined || token === undefined) continue;
        this.listeners.get(token)?.({ path, token });
      }
    });
  }

  /** The PV shutdown protocol: the toolstack's request in control/shutdown, which the guest watches. */
  requestShutdown(reason: 'poweroff' | 'reboot'): void {
    this.write(`${domainPath(GUEST_DOMID)}/control/shutdown`, reason);
  }
}
