// The one list of a machine's state components: what a snapshot or a
// migration writes, section by section, in this order, and how each is saved
// and restored (contract: component.ts).  Snapshot, migration and the
// inspector (decode, `xenkvm schema`) all read it from here; adding a section
// is one entry (docs/architecture.md "How to extend").  Pure: the entries reach KVM only through
// the machine passed in, so loading this list loads no KVM or emulator code.
//
// Order matters for restore, which applies components in list order after
// guest RAM is in place: CPUs, then Xen tables, then clocks last (the KVM
// clock runs from the moment it is set, and the pvclock rebase needs the
// vCPUs' final TSC offset).
import { defineCpuState, irqchipState, kvmclockState, MP_STATES } from '../kvm/state/index.js';
import { schemaOf, type AnyDescriptor, type SectionSchema, type StateOf } from '../vmstate/index.js';
import {
  restoreEvtchn,
  restoreHvm,
  restoreOverlay,
  restoreXenPages,
  restoreXenVcpu,
  saveEvtchn,
  saveXenPages,
  saveHvm,
  saveOverlay,
  saveTime,
  saveXenVcpu,
  xenEvtchnState,
  xenHvmState,
  xenOverlayState,
  xenPagesState,
  xenTimeState,
  xenVcpuState,
} from '../xen/state.js';
import type { XenShared } from '../xen/tables.js';
import type { CheckContext, Component } from './component.js';
import { FormatError } from '../errors.js';
import { MemoryLayout, SHARED_INFO_FRAME } from '../xen/memory/layout.js';
import { checkCpu } from './cpu-check.js';
import {
  checkEvtchn,
  checkHvm,
  checkOverlay,
  checkTime,
  checkXenPages,
  checkXenVcpu,
  type XenCheckContext,
} from '../xen/state-checks.js';
import { initialXenVcpuState } from '../xen/vcpu/state.js';
import {
  checkGnttab,
  gnttabState,
  restoreGnttab,
  saveGnttab,
  UNMAPPED_GPFN,
  type GnttabState,
} from '../xen/gnttab/state.js';
import { GrantTable, MAX_FRAME_GPFN } from '../xen/gnttab/table.js';
import { INVALID_GPA } from '../xen/domain.js';
import {
  check as checkXenstore,
  restore as restoreXenstore,
  save as saveXenstore,
  xenstoreState,
} from '../xen/xenstore/state.js';
import { checkConsole, restoreConsole, saveConsole, xenConsoleState } from '../xen/console/state.js';
import { checkMemory, restoreMemory, saveMemory, xenMemoryState } from '../xen/memory/state.js';

/** `cpu` with the Xen vCPU state as its mandatory `cpu/xen_vcpu` subsection. */
export const machineCpuState = defineCpuState({ xen_vcpu: { state: xenVcpuState, optional: false } });
export type MachineCpuState = StateOf<typeof machineCpuState>;

/** Types one entry by its own descriptor, then widens it to a list element. */
const component = <D extends AnyDescriptor>(c: Component<D>): Component => c as unknown as Component;
const one = () => 1;

/** One machine-wide table of the Xen emulator, read from and written to its shared memory (xen/state.ts). */
const xenTable = <D extends AnyDescriptor>(
  desc: D,
  save: (xen: XenShared) => StateOf<D>,
  restore: (xen: XenShared, state: StateOf<D>) => void,
  check: (state: StateOf<D>, ctx: CheckContext) => void,
): Component =>
  component({
    desc,
    instances: one,
    save: (m) => save(m.xen),
    restore: (m, _i, st) => restore(m.xen, st),
    check: (st, _i, ctx) => check(st, ctx),
  });

const layoutOf = (xen: XenShared): MemoryLayout => new MemoryLayout(xen.memory.ramPages * 4096);

const xenCheckContext = (ctx: CheckContext): XenCheckContext => ({ vcpus: ctx.config.vcpus, layout: ctx.layout });

/** Every vCPU's Xen state (a cpu section without the subsection counts as nothing registered). */
const xenVcpusOf = (ctx: CheckContext) =>
  Array.from({ length: ctx.config.vcpus }, (_, v) => ctx.state(machineCpuState, v).xen_vcpu ?? initialXenVcpuState());

export const COMPONENTS: readonly Component[] = [
  component({
    desc: machineCpuState,
    instances: (m) => m.vcpuCount,
    save: (m, i) => ({ ...m.getCpuState(i), xen_vcpu: saveXenVcpu(m.xen, i) }),
    sample: (m, i) => ({ ...m.sampleCpuState(), xen_vcpu: saveXenVcpu(m.xen, i) }),
    check: (st, i, ctx) => {
      checkCpu(i, st, ctx.config);
      if (st.xen_vcpu)
        checkXenVcpu(i, st.xen_vcpu, ctx.state(xenEvtchnState), xenCheckContext(ctx), ctx.state(xenOverlayState));
    },
    restore: (m, i, st) => {
      const { xen_vcpu, ...cpu } = st;
      m.putCpuState(i, cpu);
      // A vCPU still waiting for INIT was never brought up by the guest.
      const up = i === 0 || cpu.mp_state !== MP_STATES.UNINITIALIZED;
      if (xen_vcpu) restoreXenVcpu(m.xen, i, xen_vcpu, up, 0n);
    },
  }),
  xenTable(xenOverlayState, saveOverlay, restoreOverlay, (st, ctx) => checkOverlay(st, xenCheckContext(ctx))),
  xenTable(xenEvtchnState, saveEvtchn, restoreEvtchn, (st, ctx) =>
    checkEvtchn(st, ctx.state(xenOverlayState), xenVcpusOf(ctx), xenCheckContext(ctx)),
  ),
  xenTable(xenHvmState, saveHvm, restoreHvm, (st, ctx) => checkHvm(st, ctx.state(xenEvtchnState))),
  // Absent from streams written before xenstore: their guests have no ring (STORE_PFN 0).
  component({
    desc: xenstoreState,
    instances: one,
    optional: true,
    save: (m) => saveXenstore(m.xenstore),
    check: (st) => checkXenstore(st),
    restore: (m, _i, st) => {
      m.xenstore = restoreXenstore(st);
    },
  }),
  component({
    desc: xenPagesState,
    optional: true,
    instances: one,
    save: (m) => saveXenPages(m.xenPageBytes),
    restore: (m, _i, st) => restoreXenPages(m.xenPageBytes, st),
    check: (st) => checkXenPages(st),
  }),
  component({
    desc: gnttabState,
    optional: true,
    instances: one,
    save: (m) => saveGnttab(m.xen),
    restore: (m, _i, st) => restoreGnttab(m.xen, m.frameSlots, st, new MemoryLayout(m.ramBytes)),
    check: (st, _i, ctx) => {
      checkGnttab(st, ctx.layout);
      const si = ctx.state(xenOverlayState).shinfo_gpa;
      const clash = st.frame_gpfn.findIndex((g) => si !== INVALID_GPA && g === si / 4096n);
      if (clash >= 0) throw new FormatError(`gnttab.frame_gpfn[${clash}]: shared_info is mapped at that frame`);
    },
  }),
  component({
    desc: xenMemoryState,
    optional: true,
    instances: one,
    save: (m) => saveMemory(m.xen.memory, layoutOf(m.xen)),
    restore: (m, _i, st) => restoreMemory(m.xen.memory, layoutOf(m.xen), st),
    check: (st, _i, ctx) => checkMemory(st, ctx.layout),
  }),
  component({
    desc: irqchipState,
    instances: one,
    save: (m) => m.getIrqchip(),
    restore: (m, _i, st) => m.putIrqchip(st),
  }),
  component({
    desc: kvmclockState,
    instances: one,
    save: (m) => m.getKvmclock(),
    restore: (m, _i, st) => m.putKvmclock(st),
  }),
  component({
    desc: xenTimeState,
    instances: one,
    save: (m) => saveTime(m.xen, m.guestNowNs(), m.tscKhz()),
    check: (st) => checkTime(st),
    sample: (m) => saveTime(m.xen, m.guestNowNs(), 0),
    restore: (m, _i, st) => {
      // Guest time resumes where it was saved: rebase the one pvclock reference
      // on this host's TSC (PVM cannot offset the TSC, so the saved TSC is
      // meaningless here) and republish every vCPU's time areas before they run.
      m.setGuestTime(st.guest_ns);
      for (let v = 0; v < m.vcpuCount; v++) m.rearmPeriodic(v, st.guest_ns);
      m.publishTime();
    },
  }),
  // Last: a stream from before the console backend lacks it, and a live
  // migration's restore applies sections in order as they come.
  component({
    desc: xenConsoleState,
    instances: one,
    optional: true,
    save: (m) => saveConsole(m.consoleService),
    check: (st) => checkConsole(st),
    restore: (m, _i, st) => restoreConsole(m.consoleService, st),
  }),
];

/**
 * The guest-physical layout a stream describes, for the checks: RAM, and the
 * emulator pages its guest placed outside RAM (grant frames, shared_info).
 */
export function streamLayout(memBytes: number, states: Map<string, Map<number, unknown>>): MemoryLayout {
  const ram = new MemoryLayout(memBytes);
  // The same table every thread's layout consults at run time, filled from the stream.
  const placed = new GrantTable();
  let any = false;
  const place = (frame: number, gpfn: bigint): void => {
    if (gpfn > BigInt(MAX_FRAME_GPFN)) return;
    placed.setGpfn(frame, Number(gpfn));
    any = true;
  };
  const grants = states.get(gnttabState.name)?.get(0) as GnttabState | undefined;
  grants?.frame_gpfn.forEach((g, f) => g !== UNMAPPED_GPFN && place(f, g));
  const overlay = states.get(xenOverlayState.name)?.get(0) as StateOf<typeof xenOverlayState> | undefined;
  const si = overlay?.shinfo_gpa;
  if (si !== undefined && si !== INVALID_GPA && !ram.isRamFrame(si / 4096n)) place(SHARED_INFO_FRAME, si / 4096n);
  return any ? new MemoryLayout(memBytes, placed) : ram;
}

/** The component for a section name, or undefined (a section this build does not write). */
export function componentFor(name: string): Component | undefined {
  return COMPONENTS.find((c) => c.desc.name === name);
}

let schemas: Record<string, SectionSchema> | null = null;
/** The embedded schema of every section, keyed by name: a snapshot's header carries it, `xenkvm schema --json` prints it. */
export function sectionSchemas(): Record<string, SectionSchema> {
  schemas ??= Object.fromEntries(COMPONENTS.map((c) => [c.desc.name, schemaOf(c.desc)]));
  return schemas;
}
