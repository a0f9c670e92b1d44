// EVTCHNOP_*: the 2-level event channel hypercalls, with Xen's checks in
// Xen's order (docs/xen-abi.md, "Event channels").  The port table is shared by all
// vCPU threads; structural changes happen under the table lock.
import { DOMID_SELF, Errno, EvtchnOp, NR_VIRQS, PER_VCPU_VIRQS } from '../abi.js';
import { PortType } from '../tables.js';
import type { DomainServices } from '../domain.js';
import type { HypercallCall, HypercallEnv } from '../hypercall/types.js';
import type { XenContext } from '../context.js';

const err = (e: number): bigint => BigInt(-e);
const isSelf = (dom: number) => dom === DOMID_SELF || dom === 0;

/** Argument sizes by op: a bad pointer is -EFAULT before anything changes. */
const ARG_SIZE: Partial<Record<number, number>> = {
  [EvtchnOp.bind_interdomain]: 12,
  [EvtchnOp.bind_virq]: 12,
  [EvtchnOp.bind_pirq]: 12,
  [EvtchnOp.close]: 4,
  [EvtchnOp.send]: 4,
  [EvtchnOp.status]: 24,
  [EvtchnOp.alloc_unbound]: 8,
  [EvtchnOp.bind_ipi]: 8,
  [EvtchnOp.bind_vcpu]: 8,
  [EvtchnOp.unmask]: 4,
  [EvtchnOp.reset]: 2,
  [EvtchnOp.init_control]: 16,
};

/** Lowest free port, or -1 (port 0 is reserved); the caller holds the table lock. */
export function freePort(x: XenContext): number {
  for (let p = 1; p < x.nrPorts; p++) if (x.shared.portType(p) === PortType.closed) return p;
  return -1;
}

function validPort(x: XenContext, port: number): boolean {
  return port > 0 && port < x.nrPorts && x.shared.portType(port) !== PortType.closed;
}

/** Closes `port` (caller holds the lock): unbinds a VIRQ, detaches an interdomain peer. */
export function closePort(x: XenContext, port: number): void {
  const s = x.shared;
  const type = s.portType(port);
  if (type === PortType.virq) {
    const virq = s.portValue(port);
    const v = PER_VCPU_VIRQS.has(virq) ? s.portVcpu(port) : 0;
    if (s.virqPort(v, virq) === port) s.setVirqPort(v, virq, 0);
  } else if (type === PortType.interdomain) {
    const peer = s.portValue(port);
    if (peer !== port && s.portType(peer) === PortType.interdomain && s.portValue(peer) === port)
      s.setPort(peer, PortType.unbound, s.portVcpu(peer), DOMID_SELF);
  }
  // Xen's close clears the pending bit: a reused port starts quiet.
  x.clearPending(port);
  s.setPort(port, PortType.closed, 0, 0);
}

function op(x: XenContext, cmd: number, v: DataView, services: DomainServices): bigint {
  const s = x.shared;
  switch (cmd) {
    case EvtchnOp.bind_virq: {
      const virq = v.getUint32(0, true);
      const vcpu = v.getUint32(4, true);
      if (virq >= NR_VIRQS) return err(Errno.EINVAL);
      if (!PER_VCPU_VIRQS.has(virq) && vcpu !== 0) return err(Errno.EINVAL);
      if (vcpu >= x.nrVcpus) return err(Errno.ENOENT);
      return s.withLock(() => {
        if (s.virqPort(vcpu, virq) !== 0) return err(Errno.EEXIST);
        const port = freePort(x);
        if (port < 0) return err(Errno.ENOSPC);
        s.setPort(port, PortType.virq, vcpu, virq);
        s.setVirqPort(vcpu, virq, port);
        v.setUint32(8, port, true);
        return 0n;
      });
    }
    case EvtchnOp.bind_ipi: {
      const vcpu = v.getUint32(0, true);
      if (vcpu >= x.nrVcpus) return err(Errno.ENOENT);
      return s.withLock(() => {
        const port = freePort(x);
        if (port < 0) return err(Errno.ENOSPC);
        s.setPort(port, PortType.ipi, vcpu, vcpu);
        v.setUint32(4, port, true);
        return 0n;
      });
    }
    case EvtchnOp.alloc_unbound: {
      if (!isSelf(v.getUint16(0, true))) return err(Errno.ESRCH);
      if (!isSelf(v.getUint16(2, true))) return err(Errno.ESRCH);
      return s.withLock(() => {
        const port = freePort(x);
        if (port < 0) return err(Errno.ENOSPC);
        s.setPort(port, PortType.unbound, 0, DOMID_SELF);
        v.setUint32(4, port, true);
        return 0n;
      });
    }
    case EvtchnOp.bind_interdomain: {
      if (!isSelf(v.getUint16(0, true))) return err(Errno.ESRCH);
      const remote = v.getUint32(4, true);
      return s.withLock(() => {
        if (remote === 0 || remote >= x.nrPorts || s.portType(remote) !== PortType.unbound) return err(Errno.EINVAL);
        const port = freePort(x);
        if (port < 0) return err(Errno.ENOSPC);
        s.setPort(port, PortType.interdomain, 0, remote);
        s.setPort(remote, PortType.interdomain, s.portVcpu(remote), port);
        v.setUint32(8, port, true);
        return 0n;
      });
    }
    case EvtchnOp.close: {
      const port = v.getUint32(0, true);
      return s.withLock(() => {
        if (!validPort(x, port)) return err(Errno.EINVAL);
        closePort(x, port);
        return 0n;
      });
    }
    case EvtchnOp.send: {
      const port = v.getUint32(0, true);
      if (port === 0 || port >= x.nrPorts) return err(Errno.EINVAL);
      switch (s.portType(port)) {
        case PortType.ipi:
          x.setPending(port);
          return 0n;
        case PortType.interdomain:
          x.setPending(s.portValue(port));
          return 0n;
        case PortType.backend:
          services.notifyBackend(s.portValue(port));
          return 0n;
        case PortType.unbound:
          return 0n;
        default:
          return err(Errno.EINVAL);
      }
    }
    case EvtchnOp.status: {
      if (!isSelf(v.getUint16(0, true))) return err(Errno.ESRCH);
      const port = v.getUint32(4, true);
      if (port >= x.nrPorts) return err(Errno.EINVAL);
      const type = s.portType(port);
      v.setUint32(8, type === PortType.backend ? PortType.interdomain : type, true);
      v.setUint32(12, s.portVcpu(port), true);
      for (let o = 16; o < 24; o += 4) v.setUint32(o, 0, true);
      if (type === PortType.unbound) v.setUint16(16, DOMID_SELF, true);
      else if (type === PortType.backend) v.setUint32(20, s.portValue(port), true);
      else if (type === PortType.interdomain) {
        v.setUint16(16, DOMID_SELF, true);
        v.setUint32(20, s.portValue(port), true);
      } else if (type === PortType.virq || type === PortType.pirq) v.setUint32(16, s.portValue(port), true);
      return 0n;
    }
    case EvtchnOp.bind_vcpu: {
      const port = v.getUint32(0, true);
      const vcpu = v.getUint32(4, true);
      if (vcpu >= x.nrVcpus) return err(Errno.ENOENT);
      return s.withLock(() => {
        if (!validPort(x, port)) return err(Errno.EINVAL);
        const type = s.portType(port);
        if (type === PortType.ipi || (type === PortType.virq && PER_VCPU_VIRQS.has(s.portValue(port))))
          return err(Errno.EINVAL);
        s.setPortVcpu(port, vcpu);
        // An event already pending reaches the new vCPU, as Xen re-raises it.
        if (x.isPending(port) && !x.isMasked(port)) x.unmask(port);
        return 0n;
      });
    }
    case EvtchnOp.unmask: {
      const port = v.getUint32(0, true);
      if (port >= x.nrPorts) return err(Errno.EINVAL);
      x.unmask(port);
      return 0n;
    }
    case EvtchnOp.reset: {
      if (!isSelf(v.getUint16(0, true))) return err(Errno.ESRCH);
      s.withLock(() => {
        for (let p = 1; p < x.nrPorts; p++) if (s.portType(p) !== PortType.closed) closePort(x, p);
      });
      return 0n;
    }
    case EvtchnOp.init_control:
      // FIFO ABI not offered: guests fall back to 2-level.
      return err(Errno.ENOSYS);
    case EvtchnOp.bind_pirq:
      return err(Errno.ENOSYS);
    default:
      return err(Errno.ENOSYS);
  }
}

export function eventChannelOp(env: HypercallEnv, call: HypercallCall): bigint {
  const cmd = Number(call.args[0] & 0xffffffffn);
  const size = ARG_SIZE[cmd];
  if (size === undefined) return err(Errno.ENOSYS);
  if (cmd === EvtchnOp.init_control) return err(Errno.ENOSYS);
  const ptr = call.args[1]!;
  const raw = env.mem.read(ptr, size);
  if (!raw) return err(Errno.EFAULT);
  const view = new DataView(raw.buffer);
  const r = op(env.xen, cmd, view, env.services);
  // Ops with out-fields copy the argument back (Xen's copy_to_guest).
  if (
    r === 0n &&
    (cmd === EvtchnOp.bind_virq ||
      cmd === EvtchnOp.bind_ipi ||
      cmd === EvtchnOp.alloc_unbound ||
      cmd === EvtchnOp.bind_interdomain ||
      cmd === EvtchnOp.status)
  ) {
    if (!env.mem.write(ptr, raw)) return err(Errno.EFAULT);
  }
  return r;
}
