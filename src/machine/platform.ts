// What Xen's domain builder sets up for a PVH guest before it runs, beyond
// its image: the console and xenstore pages in the special-page area, each
// with an event channel already connected to its backend in domain 0, and
// the HVM params that tell the guest where they are (docs/xen-abi.md, "The
// PV platform").  A restored guest carries all of this in its state.
import { HvmParam } from '../xen/abi.js';
import type { XenContext } from '../xen/context.js';
import { freePort } from '../xen/evtchn/ops.js';
import { SPECIAL_PFN_BASE, SpecialPage } from '../xen/memory/layout.js';
import { BackendId, PortType } from '../xen/tables.js';
import { seedReservedEntries } from '../xen/gnttab/ops.js';

/** Binds a guest port to backend `id` and returns it. */
function bindBackendPort(x: XenContext, id: number): number {
  return x.shared.withLock(() => {
    const port = freePort(x);
    if (port < 0) throw new RangeError('no free event channel port for a backend');
    x.shared.setPort(port, PortType.backend, 0, id);
    return port;
  });
}

export function setUpPlatform(x: XenContext): void {
  const params = x.shared.domain.hvmParams;
  params[HvmParam.STORE_PFN] = BigInt(SPECIAL_PFN_BASE + SpecialPage.XENSTORE);
  params[HvmParam.STORE_EVTCHN] = BigInt(bindBackendPort(x, BackendId.xenstore));
  params[HvmParam.CONSOLE_PFN] = BigInt(SPECIAL_PFN_BASE + SpecialPage.CONSOLE);
  params[HvmParam.CONSOLE_EVTCHN] = BigInt(bindBackendPort(x, BackendId.console));
  seedReservedEntries(x, SPECIAL_PFN_BASE + SpecialPage.CONSOLE, SPECIAL_PFN_BASE + SpecialPage.XENSTORE);
}
