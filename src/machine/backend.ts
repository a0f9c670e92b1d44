// The emulator's PV backends (console, xenstore, and devices later): each is
// served in the main thread, reached from the guest through a backend port
// (xen/tables.ts PortType.backend).  The guest's EVTCHNOP_send on that port
// arrives here as a kick; the backend answers by raising the guest's port.
// Kicks are idempotent ("look at your rings"), which is what lets a machine
// hold them back while it is paused and replay one to every backend on
// resume: a snapshot never sees a backend half-way through a request, and a
// request the guest made just before the pause is still served after a
// restore (docs/xen-abi.md, "The PV platform").
import { PortType } from '../xen/tables.js';
import type { XenContext } from '../xen/context.js';

export interface PvBackend {
  /** The guest notified this backend, or the machine resumed: look at the ring. */
  kick(): void;
}

/** The guest port bound to backend `id`, or 0 if the guest has none (closed, or an older snapshot). */
export function backendPort(x: XenContext, id: number): number {
  const s = x.shared;
  for (let p = 1; p < x.nrPorts; p++) if (s.portType(p) === PortType.backend && s.portValue(p) === id) return p;
  return 0;
}

/** Raises the guest's port for backend `id` (Xen's notify_via_xen_event_channel); false if there is none. */
export function notifyGuest(x: XenContext, id: number): boolean {
  const port = backendPort(x, id);
  if (port === 0) return false;
  x.setPending(port);
  return true;
}
