// What a saved Xen state must satisfy before a machine is built from it.
// Restore and the migration destination run these after decoding and
// before creating anything, so a damaged or hostile stream is refused with
// one line naming the field (exit 2), never started as a guest that breaks
// (a port bound to a vCPU that does not exist, shared_info in the 32-bit
// hole, a VIRQ whose port says otherwise).  Each rule mirrors what the
// hypercall that creates such state accepts (docs/xen-abi.md).
import { FormatError } from '../errors.js';
import { MIN_PERIODIC_NS, NR_VIRQS, PER_VCPU_VIRQS, VCPU_INFO_SIZE } from './abi.js';
import { INVALID_GPA } from './domain.js';
import { NR_SPECIAL_PAGES, NR_XEN_PAGES, SPECIAL_PFN_BASE, type MemoryLayout } from './memory/layout.js';
import { RAM_VIEW_MAX } from '../kvm/guest-ram.js';
import { BackendId, PortType } from './tables.js';

const KNOWN_BACKENDS: ReadonlySet<number> = new Set(Object.values(BackendId));
import type { XenEvtchnState, XenHvmState, XenOverlayState, XenPagesState, XenTimeState } from './state.js';
import type { XenVcpuState } from './vcpu/state.js';

const PAGE = 4096;
/** The lowest vector an upcall may use (HVMOP_set_evtchn_upcall_vector refuses lower ones). */
const MIN_UPCALL_VECTOR = 0x10;
/** Ports the 2-level ABI can name: 64-bit and compat layouts. */
const PORTS_2L = { long: 4096, compat: 1024 } as const;
/** Time area sizes the emulator writes in place. */
const TIME_INFO_SIZE = 32;
const RUNSTATE_SIZE = 48;

/** The machine the state is checked against. */
export interface XenCheckContext {
  readonly vcpus: number;
  readonly layout: MemoryLayout;
}

function bad(path: string, what: string): never {
  throw new FormatError(`${path}: ${what}`);
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/**
 * A GPA the guest registered: unset, or `size` bytes of RAM, `align`-aligned,
 * within one page when `onePage` (as the hypercall that registers it demands).
 */
function checkArea(path: string, gpa: bigint, size: number, align: number, layout: MemoryLayout, onePage = true): void {
  if (gpa === INVALID_GPA) return;
  if (gpa % BigInt(align) !== 0n) bad(path, `${hex(gpa)} is not ${align}-byte aligned`);
  if (onePage && Number(gpa % BigInt(PAGE)) + size > PAGE) bad(path, `${hex(gpa)} (+${size} bytes) crosses a page`);
  const at = layout.offsetOf(gpa, size);
  if (at < 0) bad(path, `${hex(gpa)} is not in guest RAM`);
  if (Math.floor(at / RAM_VIEW_MAX) !== Math.floor((at + size - 1) / RAM_VIEW_MAX))
    bad(path, `${hex(gpa)} (+${size} bytes) straddles the emulator's 4 GiB views of RAM`);
}

export function checkOverlay(st: XenOverlayState, ctx: XenCheckContext): void {
  const at = 'xen_overlay';
  // As XENMEM_add_to_physmap accepts it: a RAM frame at or above 0x100.
  checkArea(`${at}.shinfo_gpa`, st.shinfo_gpa, PAGE, PAGE, ctx.layout);
  if (st.shinfo_gpa !== INVALID_GPA && st.shinfo_gpa < 0x100000n)
    bad(`${at}.shinfo_gpa`, `${hex(st.shinfo_gpa)} is below frame 0x100`);
  const special = BigInt(SPECIAL_PFN_BASE * PAGE);
  if (st.shinfo_gpa >= special && st.shinfo_gpa < special + BigInt(NR_SPECIAL_PAGES * PAGE))
    bad(`${at}.shinfo_gpa`, `${hex(st.shinfo_gpa)} is one of the special pages`);
  if (st.shinfo_gpa >= 0xfec00000n && st.shinfo_gpa < special)
    bad(`${at}.shinfo_gpa`, `${hex(st.shinfo_gpa)} is where the interrupt controllers are`);
  checkArea(`${at}.hypercall_page_gpa`, st.hypercall_page_gpa, PAGE, PAGE, ctx.layout);
}

/** The upcall settings: HVM_PARAM_CALLBACK_IRQ's vector type names a usable vector. */
function checkCallbackParam(path: string, param: bigint): void {
  const type = param >> 56n;
  if (type > 2n) bad(path, `callback type ${type} is not GSI, PCI INTx or vector`);
  if (type === 2n) {
    const vector = Number(param & 0xffn);
    if (vector !== 0 && vector < MIN_UPCALL_VECTOR) bad(path, `vector ${vector} is below 0x10`);
  }
}

/**
 * The port table against itself, the vCPU count and the vCPUs' VIRQ
 * bindings: every open port on an existing vCPU, interdomain ports paired,
 * each VIRQ port the one its vCPU lists for that VIRQ.
 */
export function checkEvtchn(
  st: XenEvtchnState,
  overlay: XenOverlayState,
  xenVcpus: readonly XenVcpuState[],
  ctx: XenCheckContext,
): void {
  const at = 'xen_evtchn';
  checkCallbackParam(`${at}.callback_param`, st.callback_param);
  const limit = overlay.long_mode ? PORTS_2L.long : PORTS_2L.compat;
  if (st.nr_ports > limit) bad(`${at}.nr_ports`, `${st.nr_ports} ports exceed the 2-level limit of ${limit}`);
  if (st.port_table.length !== st.nr_ports)
    bad(`${at}.port_table`, `has ${st.port_table.length} entries, not nr_ports`);
  const t = st.port_table;
  if (t.length > 0 && t[0]!.type !== PortType.closed)
    bad(`${at}.port_table[0]`, 'port 0 is reserved and must be closed');
  t.forEach((e, port) => {
    const p = `${at}.port_table[${port}]`;
    if (e.type === PortType.closed) {
      if (e.vcpu !== 0 || e.value !== 0) bad(p, `closed port ${port} carries a vCPU or value`);
      return;
    }
    if (e.vcpu >= ctx.vcpus) bad(`${p}.vcpu`, `vCPU ${e.vcpu} does not exist (the machine has ${ctx.vcpus})`);
    switch (e.type) {
      case PortType.interdomain: {
        const peer = t[e.value];
        if (e.value === 0 || !peer || peer.type !== PortType.interdomain || peer.value !== port)
          bad(`${p}.value`, `remote port ${e.value} is not an interdomain port bound back to ${port}`);
        break;
      }
      case PortType.virq: {
        if (e.value >= NR_VIRQS) bad(`${p}.value`, `VIRQ ${e.value} does not exist`);
        const owner = PER_VCPU_VIRQS.has(e.value) ? e.vcpu : 0;
        if (xenVcpus[owner]?.xen_virq[e.value] !== port)
          bad(`${p}`, `VIRQ ${e.value} port is not the one cpu[${owner}] lists for it`);
        break;
      }
      case PortType.ipi:
        if (e.value >= ctx.vcpus) bad(`${p}.value`, `IPI target vCPU ${e.value} does not exist`);
        break;
      case PortType.pirq:
        bad(`${p}.type`, 'PIRQ ports are not emulated');
        break;
      case PortType.backend:
        if (!KNOWN_BACKENDS.has(e.value)) bad(`${p}.value`, `backend ${e.value} is not one this build serves`);
        if (t.findIndex((o) => o.type === PortType.backend && o.value === e.value) !== port)
          bad(`${p}.value`, `backend ${e.value} has another port already`);
    }
  });
}

export function checkXenVcpu(
  v: number,
  st: XenVcpuState,
  evtchn: XenEvtchnState,
  ctx: XenCheckContext,
  overlay?: XenOverlayState,
): void {
  const at = `cpu[${v}]/xen_vcpu`;
  // The default vcpu_info slots are in shared_info: they exist only once it is placed.
  if (overlay && overlay.shinfo_gpa === INVALID_GPA && st.xen_vcpu_info_default_gpa !== INVALID_GPA)
    bad(`${at}.xen_vcpu_info_default_gpa`, 'is set while shared_info is not placed (xen_overlay.shinfo_gpa)');
  checkArea(`${at}.xen_vcpu_info_gpa`, st.xen_vcpu_info_gpa, VCPU_INFO_SIZE, 8, ctx.layout);
  checkArea(`${at}.xen_vcpu_info_default_gpa`, st.xen_vcpu_info_default_gpa, VCPU_INFO_SIZE, 8, ctx.layout);
  checkArea(`${at}.xen_vcpu_time_info_gpa`, st.xen_vcpu_time_info_gpa, TIME_INFO_SIZE, 1, ctx.layout, false);
  checkArea(`${at}.xen_vcpu_runstate_gpa`, st.xen_vcpu_runstate_gpa, RUNSTATE_SIZE, 1, ctx.layout, false);
  const vector = st.xen_vcpu_callback_vector;
  if (vector !== 0 && vector < MIN_UPCALL_VECTOR)
    bad(`${at}.xen_vcpu_callback_vector`, `vector ${vector} is below 0x10`);
  st.xen_virq.forEach((port, virq) => {
    if (port === 0) return;
    const p = `${at}.xen_virq[${virq}]`;
    if (!PER_VCPU_VIRQS.has(virq) && v !== 0) bad(p, `global VIRQ ${virq} is bound on vCPU ${v}, not 0`);
    const e = evtchn.port_table[port];
    if (!e || e.type !== PortType.virq || e.value !== virq) bad(p, `port ${port} is not a port bound to VIRQ ${virq}`);
    if (PER_VCPU_VIRQS.has(virq) && e.vcpu !== v) bad(p, `port ${port} is bound to vCPU ${e.vcpu}`);
  });
  const period = st.xen_periodic_timer_period;
  if (period !== 0n && period < MIN_PERIODIC_NS)
    bad(`${at}.xen_periodic_timer_period`, `${period} ns is below the 1 ms minimum`);
}

export function checkHvm(st: XenHvmState, evtchn: XenEvtchnState): void {
  checkCallbackParam('xen_hvm.params[0]', st.params[0]!);
  if (st.params[0] !== evtchn.callback_param)
    bad('xen_hvm.params[0]', 'HVM_PARAM_CALLBACK_IRQ differs from xen_evtchn.callback_param');
}

/** A TSC frequency a host could have: 1 MHz to 100 GHz. */
export function checkTime(st: XenTimeState): void {
  if (st.tsc_khz < 1000 || st.tsc_khz > 100_000_000)
    bad('xen_time.tsc_khz', `${st.tsc_khz} kHz is not a TSC frequency`);
  if (st.wc_nsec >= 1_000_000_000) bad('xen_time.wc_nsec', `${st.wc_nsec} is not below one second`);
}

/** Every Xen rule at once, for a machine of `ctx.vcpus` vCPUs. */
export function checkXenState(
  s: {
    overlay: XenOverlayState;
    evtchn: XenEvtchnState;
    hvm: XenHvmState;
    time: XenTimeState;
    xenVcpus: readonly XenVcpuState[];
  },
  ctx: XenCheckContext,
): void {
  checkOverlay(s.overlay, ctx);
  checkEvtchn(s.evtchn, s.overlay, s.xenVcpus, ctx);
  s.xenVcpus.forEach((st, v) => checkXenVcpu(v, st, s.evtchn, ctx, s.overlay));
  checkHvm(s.hvm, s.evtchn);
  checkTime(s.time);
}

export function checkXenPages(st: XenPagesState): void {
  let last = -1;
  st.pages.forEach((p, n) => {
    if (p.index >= NR_XEN_PAGES)
      bad(`xen_pages.pages[${n}].index`, `page ${p.index} does not exist (${NR_XEN_PAGES} pages)`);
    if (p.index <= last) bad(`xen_pages.pages[${n}].index`, `page ${p.index} is listed out of order or twice`);
    last = p.index;
  });
}
