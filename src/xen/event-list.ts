// The event channel table as an operator sees it (QMP xen-event-list), and
// injecting an event from outside the guest (xen-event-inject), read from
// and applied to the same shared table and guest-memory bits the vCPU threads use.
import { InputError } from '../errors.js';
import type { EventChannelInfo } from '../qmp/machine-commands.js';
import { DOMID_SELF } from './abi.js';
import { PortType } from './shared.js';
import type { XenContext } from './xen-context.js';

export function eventChannelList(x: XenContext): EventChannelInfo[] {
  const s = x.shared;
  const out: EventChannelInfo[] = [];
  for (let port = 1; port < x.nrPorts; port++) {
    const type = s.portType(port);
    if (type === PortType.closed) continue;
    const common = { port, vcpu: s.portVcpu(port), pending: x.isPending(port), masked: x.isMasked(port) };
    switch (type) {
      case PortType.unbound: out.push({ ...common, type: 'unbound', remoteDomain: DOMID_SELF }); break;
      case PortType.interdomain: out.push({ ...common, type: 'interdomain', remoteDomain: DOMID_SELF, remotePort: s.portValue(port) }); break;
      case PortType.virq: out.push({ ...common, type: 'virq', virq: s.portValue(port) }); break;
      case PortType.ipi: out.push({ ...common, type: 'ipi' }); break;
      case PortType.pirq: out.push({ ...common, type: 'pirq', pirq: s.portValue(port) }); break;
    }
  }
  return out;
}

/** Makes `port` pending with its upcall, as if its peer had sent on it. */
export function injectEvent(x: XenContext, port: number): void {
  if (!Number.isInteger(port) || port <= 0 || port >= x.nrPorts || x.shared.portType(port) === PortType.closed) {
    throw new InputError(`event channel port ${port} is not open`);
  }
  x.setPending(port);
}
