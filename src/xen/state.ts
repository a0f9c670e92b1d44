// The Xen emulator's state sections and their save/restore (the Persist
// contract: save() reads the live shared tables into plain state, restore()
// writes them back into a fresh machine's tables).  Event-channel pending and
// mask bits, vcpu_info and vcpu_time_info are guest RAM and travel with it.
import {
  array,
  bool,
  bytes,
  defineState,
  enumOf,
  struct,
  u16,
  u32,
  u64,
  varArray,
  type StateOf,
} from '../vmstate/index.js';
import { NR_XEN_PAGES } from './memory/layout.js';
import { HVM_NR_PARAMS, HvmParam, NR_VIRQS } from './abi.js';
import { MAX_PORTS, PortType, VcpuField, ClockField, type XenShared } from './tables.js';
import { xenVcpuState, type XenVcpuState } from './vcpu/state.js';

/** Where the guest put Xen's pages, and the layout it latched. */
export const xenOverlayState = defineState({
  name: 'xen_overlay',
  version: 1,
  fields: {
    shinfo_gpa: u64(),
    long_mode: bool(),
    hypercall_page_gpa: u64(),
  },
});

/** The event channel port table (pending/mask bits are in shared_info, in RAM). */
export const xenEvtchnState = defineState({
  name: 'xen_evtchn',
  version: 1,
  fields: {
    /** HVM_PARAM_CALLBACK_IRQ as the guest set it. */
    callback_param: u64(),
    /** Ports listed: one more than the highest open port. */
    nr_ports: u32(),
    port_table: varArray(struct({ vcpu: u32(), type: enumOf(u16, PortType), value: u16() }), {
      lengthField: 'nr_ports',
      max: MAX_PORTS,
    }),
  },
});

/** HVM parameters (CALLBACK_IRQ is also shown in xen_evtchn, as QEMU does). */
export const xenHvmState = defineState({
  name: 'xen_hvm',
  version: 1,
  fields: { params: array(u64(), HVM_NR_PARAMS) },
});

/** Guest system time at the save, so a restore continues it; and the wallclock base. */
export const xenTimeState = defineState({
  name: 'xen_time',
  version: 1,
  fields: {
    guest_ns: u64(),
    tsc_khz: u32(),
    wc_sec: u64(),
    wc_nsec: u32(),
  },
});

/**
 * The emulator's own pages as the guest left them (the console and xenstore
 * rings, the grant table frames): not RAM, so neither RAM records nor the
 * dirty log carry them.  Pages that are all zero are left out.
 */
export const xenPagesState = defineState({
  name: 'xen_pages',
  version: 1,
  fields: {
    nr_pages: u32(),
    pages: varArray(struct({ index: u32(), data: bytes(4096) }), { lengthField: 'nr_pages', max: NR_XEN_PAGES }),
  },
});
export type XenPagesState = StateOf<typeof xenPagesState>;

export function saveXenPages(all: Uint8Array): XenPagesState {
  const pages: XenPagesState['pages'] = [];
  for (let k = 0; k < NR_XEN_PAGES; k++) {
    const page = all.subarray(k * 4096, (k + 1) * 4096);
    if (page.some((b) => b !== 0)) pages.push({ index: k, data: page.slice() });
  }
  return { nr_pages: pages.length, pages };
}

export function restoreXenPages(all: Uint8Array, st: XenPagesState): void {
  all.fill(0);
  for (const p of st.pages) all.set(p.data, p.index * 4096);
}

export type XenOverlayState = StateOf<typeof xenOverlayState>;
export type XenEvtchnState = StateOf<typeof xenEvtchnState>;
export type XenHvmState = StateOf<typeof xenHvmState>;
export type XenTimeState = StateOf<typeof xenTimeState>;
export { xenVcpuState };

export function saveOverlay(s: XenShared): XenOverlayState {
  return {
    shinfo_gpa: s.domain.sharedInfoGpa,
    long_mode: s.domain.longMode,
    hypercall_page_gpa: s.domain.hypercallPageGpa,
  };
}

export function restoreOverlay(s: XenShared, st: XenOverlayState): void {
  s.domain.sharedInfoGpa = st.shinfo_gpa;
  s.domain.longMode = st.long_mode;
  s.domain.hypercallPageGpa = st.hypercall_page_gpa;
}

export function saveEvtchn(s: XenShared): XenEvtchnState {
  let nr = 0;
  for (let p = MAX_PORTS - 1; p > 0; p--)
    if (s.portType(p) !== PortType.closed) {
      nr = p + 1;
      break;
    }
  const port_table = Array.from({ length: nr }, (_, p) => ({
    vcpu: s.portVcpu(p),
    type: s.portType(p) as XenEvtchnState['port_table'][number]['type'],
    value: s.portValue(p),
  }));
  return { callback_param: s.domain.hvmParams[HvmParam.CALLBACK_IRQ]!, nr_ports: nr, port_table };
}

export function restoreEvtchn(s: XenShared, st: XenEvtchnState): void {
  for (let p = 0; p < MAX_PORTS; p++) s.setPort(p, PortType.closed, 0, 0);
  st.port_table.forEach((e, p) => s.setPort(p, e.type, e.vcpu, e.value));
  s.domain.hvmParams[HvmParam.CALLBACK_IRQ] = st.callback_param;
}

export function saveHvm(s: XenShared): XenHvmState {
  return { params: Array.from(s.domain.hvmParams) };
}

export function restoreHvm(s: XenShared, st: XenHvmState): void {
  s.domain.hvmParams.set(st.params);
}

export function saveXenVcpu(s: XenShared, v: number): XenVcpuState {
  return {
    xen_vcpu_info_gpa: s.vcpu(v, VcpuField.vcpuInfoGpa),
    xen_vcpu_info_default_gpa: s.vcpu(v, VcpuField.vcpuInfoDefaultGpa),
    xen_vcpu_time_info_gpa: s.vcpu(v, VcpuField.timeInfoGpa),
    xen_vcpu_runstate_gpa: s.vcpu(v, VcpuField.runstateGpa),
    xen_vcpu_callback_vector: Number(s.vcpu(v, VcpuField.callbackVector)),
    xen_virq: Array.from({ length: NR_VIRQS }, (_, i) => s.virqPort(v, i)),
    xen_singleshot_timer_ns: s.vcpu(v, VcpuField.singleshotNs),
    xen_periodic_timer_period: s.vcpu(v, VcpuField.periodicPeriodNs),
  };
}

/** Restores one vCPU's Xen state; `nowNs` re-arms the periodic timer from the restored guest time. */
export function restoreXenVcpu(s: XenShared, v: number, st: XenVcpuState, up: boolean, nowNs: bigint): void {
  s.setVcpu(v, VcpuField.vcpuInfoGpa, st.xen_vcpu_info_gpa);
  s.setVcpu(v, VcpuField.vcpuInfoDefaultGpa, st.xen_vcpu_info_default_gpa);
  s.setVcpu(v, VcpuField.timeInfoGpa, st.xen_vcpu_time_info_gpa);
  s.setVcpu(v, VcpuField.runstateGpa, st.xen_vcpu_runstate_gpa);
  s.setVcpu(v, VcpuField.callbackVector, BigInt(st.xen_vcpu_callback_vector));
  st.xen_virq.forEach((port, i) => s.setVirqPort(v, i, port));
  s.setVcpu(v, VcpuField.singleshotNs, st.xen_singleshot_timer_ns);
  s.setVcpu(v, VcpuField.periodicPeriodNs, st.xen_periodic_timer_period);
  s.setVcpu(
    v,
    VcpuField.periodicNextNs,
    st.xen_periodic_timer_period === 0n ? 0n : nowNs + st.xen_periodic_timer_period,
  );
  s.setVcpu(v, VcpuField.up, up ? 1n : 0n);
  s.setVcpu(v, VcpuField.startPending, 0n);
}

export function saveTime(s: XenShared, guestNs: bigint, tscKhz: number): XenTimeState {
  return {
    guest_ns: guestNs,
    tsc_khz: tscKhz,
    wc_sec: s.clockWord(ClockField.wcSec),
    wc_nsec: Number(s.clockWord(ClockField.wcNsec)),
  };
}
