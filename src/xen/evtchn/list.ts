// The event channel table as an operator sees it (QMP xen-event-list), and
// injecting an event from outside the guest (xen-event-inject), read from
// and applied to the same shared table and guest-memory bits the vCPU threads use.
import { InputError } from '../../errors.js';
import { DOMID_SELF } from '../abi.js';
import { PortType } from '../tables.js';
import type { XenContext } from '../context.js';

/** Fields every open port has. */
interface PortCommon {
  readonly port: number;
  /** The vCPU its upcall goes to (EVTCHNOP_bind_vcpu moves it). */
  readonly vcpu: number;
  readonly pending: boolean;
  readonly masked: boolean;
}

/**
 * One open event channel, as the event-channel code reports it.  Closed ports
 * are not listed.  Mirrors EVTCHNOP_status (`type` is its status by name).
 */
export type EventChannelInfo = PortCommon &
  (
    | { readonly type: 'unbound'; readonly remoteDomain: number }
    | { readonly type: 'interdomain'; readonly remoteDomain: number; readonly remotePort: number }
    | { readonly type: 'virq'; readonly virq: number }
    | { readonly type: 'ipi' }
    | { readonly type: 'pirq'; readonly pirq: number }
  );

export function eventChannelList(x: XenContext): EventChannelInfo[] {
  const s = x.shared;
  const out: EventChannelInfo[] = [];
  for (let port = 1; port < x.nrPorts; port++) {
    const type = s.portType(port);
    if (type === PortType.closed) continue;
    const common = { port, vcpu: s.portVcpu(port), pending: x.isPending(port), masked: x.isMasked(port) };
    switch (type) {
      case PortType.unbound:
        out.push({ ...common, type: 'unbound', remoteDomain: DOMID_SELF });
        break;
      case PortType.interdomain:
        out.push({ ...common, type: 'interdomain', remoteDomain: DOMID_SELF, remotePort: s.portValue(port) });
        break;
      case PortType.backend:
        out.push({ ...common, type: 'interdomain', remoteDomain: 0, remotePort: s.portValue(port) });
        break;
      case PortType.virq:
        out.push({ ...common, type: 'virq', virq: s.portValue(port) });
        break;
      case PortType.ipi:
        out.push({ ...common, type: 'ipi' });
        break;
      case PortType.pirq:
        out.push({ ...common, type: 'pirq', pirq: s.portValue(port) });
        break;
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
