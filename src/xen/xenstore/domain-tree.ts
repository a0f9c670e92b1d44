// The nodes a toolstack writes for a new domain before it runs, with the
// permissions xl (libxl) gives them: the home /local/domain/<id> and most of
// what is under it are owned by domain 0 and readable by the guest; the few
// nodes the guest answers through (control/shutdown, feature flags, data/)
// are owned by the guest.  Meanings follow Xen's docs/misc/xenstore-paths.
import { InputError } from '../../errors.js';
import type { XenstoreServer } from './server.js';
import { domainPath, permToString, type XsPermEntry } from './store.js';
import { XsPerm, XsType, bytesToString, nulJoin, stringToBytes, type XsMessage } from './wire.js';

export interface DomainTreeOptions {
  domid: number;
  name: string;
  /** memory/static-max and memory/target, in KiB. */
  memoryKb: number;
  vcpus: number;
  /** Writes /vm/<uuid> and ~/vm when given. */
  uuid?: string;
  /** The xenstore ring: event channel port and page frame (~/store, deprecated but still written). */
  store?: { port: number; gfn: number };
  /** The primary PV console: event channel port and page frame of its ring. */
  console?: { port: number; gfn: number; output?: string };
  /** The domain that serves the console backend; 0, the VMM, by default. */
  backendDomid?: number;
}

/** One step: MKDIR (no value) or WRITE, then SET_PERMS when perms are given (else inherited from the parent). */
export interface TreeOp {
  path: string;
  value?: string;
  perms?: XsPermEntry[];
}

/** libxl's LIBXL_XENCONSOLE_LIMIT: the most console output a backend buffers, in bytes. */
export const CONSOLE_LIMIT = 1048576;

/** The nodes of a new domain, parents before children. */
export function domainTree(o: DomainTreeOptions): TreeOp[] {
  const id = o.domid;
  const be = o.backendDomid ?? 0;
  const home = domainPath(id);
  // Owned by the toolstack, readable by the guest.
  const ro: XsPermEntry[] = [
    { domid: 0, perm: XsPerm.NONE },
    { domid: id, perm: XsPerm.READ },
  ];
  // Owned by the guest (the toolstack, privileged, still reads and writes).
  const rw: XsPermEntry[] = [{ domid: id, perm: XsPerm.NONE }];
  const ops: TreeOp[] = [];
  const dir = (rel: string, perms?: XsPermEntry[]): void => {
    ops.push({ path: rel ? `${home}/${rel}` : home, ...(perms && { perms }) });
  };
  const val = (rel: string, value: string | number, perms?: XsPermEntry[]): void => {
    ops.push({ path: `${home}/${rel}`, value: String(value), ...(perms && { perms }) });
  };

  // ~: the domain's home, where relative paths of the guest point; read-only to it.
  dir('', ro);
  if (o.uuid !== undefined) {
    // /vm/<uuid>: toolstack data about the VM; ~/vm points back to it.
    const vm = `/vm/${o.uuid}`;
    ops.push({ path: vm, perms: ro });
    ops.push({ path: `${vm}/uuid`, value: o.uuid });
    ops.push({ path: `${vm}/name`, value: o.name });
    val('vm', vm);
  }
  // ~/name: the guest's name.
  val('name', o.name);
  // ~/cpu/<n>/availability: "online" or "offline" per vCPU; the guest follows changes.
  dir('cpu', ro);
  for (let v = 0; v < o.vcpus; v++) val(`cpu/${v}/availability`, 'online');
  // ~/memory/static-max: the most memory the domain is given (KiB);
  // ~/memory/target: the balloon target the guest should stay within (KiB).
  dir('memory', ro);
  val('memory/static-max', o.memoryKb);
  val('memory/target', o.memoryKb);
  // ~/device/<type>/<devid>: PV device frontends; the guest writes its state there.
  dir('device', ro);
  // ~/device/suspend/event-channel: "" until the guest offers a suspend event channel.
  dir('device/suspend/event-channel', rw);
  // ~/control: the toolstack's requests to the guest.
  dir('control', ro);
  // ~/control/shutdown: the toolstack writes poweroff/reboot/suspend, the guest acknowledges with "".
  dir('control/shutdown', rw);
  // ~/control/feature-*: "" until the guest says whether it answers the command ("1") or not ("0").
  dir('control/feature-poweroff', rw);
  dir('control/feature-reboot', rw);
  dir('control/feature-suspend', rw);
  // ~/control/sysrq: a magic SysRq key for a Linux guest, acknowledged with "".
  dir('control/sysrq', rw);
  // ~/control/platform-feature-*: what this platform supports (multiprocessor suspend, XS_RESET_WATCHES).
  val('control/platform-feature-multiprocessor-suspend', 1);
  val('control/platform-feature-xs_reset_watches', 1);
  // ~/data: free for the guest's own use; ~/drivers, ~/feature, ~/attr: what the guest reports
  // (PV driver versions, hotplug support, device names and addresses); ~/error: driver errors.
  for (const d of ['data', 'drivers', 'feature', 'attr', 'error']) dir(d, rw);
  // ~/domid: the domain's own id.
  val('domid', id);
  if (o.store) {
    // ~/store/port, ~/store/ring-ref: the xenstore ring (deprecated: a guest learns them from HVM params).
    val('store/port', o.store.port);
    val('store/ring-ref', o.store.gfn);
  }
  if (o.console) {
    // ~/console: the primary PV console frontend, owned by the guest and readable by the backend.
    const front: XsPermEntry[] = [
      { domid: id, perm: XsPerm.NONE },
      { domid: be, perm: XsPerm.READ },
    ];
    // Entries the backend decides: owned by the backend domain, read-only to the guest.
    const fixed: XsPermEntry[] = [
      { domid: be, perm: XsPerm.NONE },
      { domid: id, perm: XsPerm.READ },
    ];
    dir('console', front);
    val('console/backend', `${domainPath(be)}/backend/console/${id}/0`);
    val('console/backend-id', be);
    // limit: bytes of output the backend keeps; type: which backend serves it; output: where it goes.
    val('console/limit', CONSOLE_LIMIT, fixed);
    val('console/type', 'xenconsoled', fixed);
    val('console/output', o.console.output ?? 'pty', fixed);
    val('console/tty', '', fixed);
    // port, ring-ref: the console ring's event channel and page frame.
    val('console/port', o.console.port, fixed);
    val('console/ring-ref', o.console.gfn, fixed);
  }
  return ops;
}

/**
 * Writes the tree as the toolstack (domain 0), in one transaction as xl
 * does, after removing whatever an earlier domain with this id left.
 */
export function writeDomainTree(server: XenstoreServer, o: DomainTreeOptions): void {
  let reqId = 0;
  const call = (type: number, parts: Array<string | Uint8Array>, txId: number, mayFail = ''): string => {
    const payload = concat(parts);
    const msg: XsMessage = { type, reqId: ++reqId, txId, payload };
    const { reply } = server.handle(0, msg, { queueReply: false });
    const text = bytesToString(reply.payload).replace(/\0$/, '');
    if (reply.type === XsType.ERROR && text !== mayFail)
      throw new InputError(`xenstore: writing the tree of domain ${o.domid} failed: ${text}`);
    return text;
  };
  // Nothing else runs between our requests, so a conflict can only come from a bug: retry a little.
  for (let attempt = 0; attempt < 4; attempt++) {
    const tx = Number.parseInt(call(XsType.TRANSACTION_START, [nulJoin([''])], 0), 10);
    try {
      // The first domain finds no /local/domain yet: nothing to remove then.
      call(XsType.RM, [nulJoin([domainPath(o.domid)])], tx, 'ENOENT');
      for (const op of domainTree(o)) {
        if (op.value === undefined) call(XsType.MKDIR, [nulJoin([op.path])], tx);
        else call(XsType.WRITE, [nulJoin([op.path]), stringToBytes(op.value)], tx);
        if (op.perms) call(XsType.SET_PERMS, [nulJoin([op.path, ...op.perms.map(permToString)])], tx);
      }
    } catch (e) {
      call(XsType.TRANSACTION_END, [nulJoin(['F'])], tx);
      throw e;
    }
    if (call(XsType.TRANSACTION_END, [nulJoin(['T'])], tx, 'EAGAIN') !== 'EAGAIN') return;
  }
  throw new InputError(`xenstore: the tree of domain ${o.domid} kept conflicting (EAGAIN)`);
}

function concat(parts: Array<string | Uint8Array>): Uint8Array {
  const bufs = parts.map((p) => (typeof p === 'string' ? stringToBytes(p) : p));
  const out = new Uint8Array(bufs.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bufs) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}
