// Every component of a machine's state, each saving and restoring itself
// through one contract (Firecracker's Persist): `save(m, i)` reads instance i
// into plain state, `restore(m, i, state)` writes it into a fresh, not yet
// started machine.  Snapshot and migration iterate over this list; they
// never look inside a component.  Restore applies components in list order,
// after guest RAM is in place: CPUs, then Xen tables, then clocks last (the
// KVM clock runs from the moment it is set, and the pvclock rebase needs the
// vCPUs' final TSC offset).
import { getCpuState, putCpuState, readCpuState } from '../kvm/cpu-state-io.js';
import { getIrqchip, getKvmclock, putIrqchip, putKvmclock } from '../kvm/vm-state-io.js';
import { irqchipState, kvmclockState, MP_STATES } from '../kvm/state/index.js';
import { machineCpuState, SECTION_LIST } from './sections.js';
import type { AnyDescriptor, StateOf } from '../vmstate/index.js';
import type { XenMachine } from './machine.js';
import { guestNowNs, publishVcpuTime, publishWallclock } from '../xen/time/clock.js';
import {
  restoreEvtchn,
  restoreHvm,
  restoreOverlay,
  restoreXenVcpu,
  saveEvtchn,
  saveHvm,
  saveOverlay,
  saveTime,
  saveXenVcpu,
  xenEvtchnState,
  xenHvmState,
  xenOverlayState,
  xenTimeState,
} from '../xen/state.js';
import { vcpuTscKhz } from '../kvm/clock.js';

export { machineCpuState, type MachineCpuState } from './sections.js';

export interface Component<D extends AnyDescriptor = AnyDescriptor> {
  readonly desc: D;
  instances(m: XenMachine): number;
  save(m: XenMachine, instance: number): StateOf<D>;
  restore(m: XenMachine, instance: number, state: StateOf<D>): void;
  /**
   * A state of the right shape read while the guest runs, for warming up the
   * save path (values meaningless).  Absent: `save` is safe on a running
   * machine (it reads no vCPU through its fd, which KVM_RUN holds).
   */
  sample?(m: XenMachine, instance: number): StateOf<D>;
}

const component = <D extends AnyDescriptor>(c: Component<D>): Component => c as unknown as Component;
const one = () => 1;

export const COMPONENTS: readonly Component[] = [
  component({
    desc: machineCpuState,
    instances: (m) => m.handles.length,
    save: (m, i) => ({ ...getCpuState(m.handles[i]!.fd, m.cpuStateContext), xen_vcpu: saveXenVcpu(m.xen, i) }),
    sample: (m, i) => ({ ...readCpuState(m.cpuStateContext), xen_vcpu: saveXenVcpu(m.xen, i) }),
    restore: (m, i, st) => {
      const { xen_vcpu, ...cpu } = st;
      putCpuState(m.handles[i]!.fd, cpu, m.cpuStateContext, `cpu[${i}]`);
      // A vCPU still waiting for INIT was never brought up by the guest.
      const up = i === 0 || cpu.mp_state !== MP_STATES.UNINITIALIZED;
      if (xen_vcpu) restoreXenVcpu(m.xen, i, xen_vcpu, up, 0n);
    },
  }),
  component({
    desc: xenOverlayState,
    instances: one,
    save: (m) => saveOverlay(m.xen),
    restore: (m, _i, st) => restoreOverlay(m.xen, st),
  }),
  component({
    desc: xenEvtchnState,
    instances: one,
    save: (m) => saveEvtchn(m.xen),
    restore: (m, _i, st) => restoreEvtchn(m.xen, st),
  }),
  component({
    desc: xenHvmState,
    instances: one,
    save: (m) => saveHvm(m.xen),
    restore: (m, _i, st) => restoreHvm(m.xen, st),
  }),
  component({
    desc: irqchipState,
    instances: one,
    save: (m) => getIrqchip(m.vm.fd),
    restore: (m, _i, st) => putIrqchip(m.vm.fd, st),
  }),
  component({
    desc: kvmclockState,
    instances: one,
    save: (m) => getKvmclock(m.vm.fd),
    restore: (m, _i, st) => putKvmclock(m.vm.fd, st),
  }),
  component({
    desc: xenTimeState,
    instances: one,
    save: (m) => saveTime(m.xen, guestNowNs(m.xen), vcpuTscKhz(m.handles[0]!.fd)),
    sample: (m) => saveTime(m.xen, guestNowNs(m.xen), 0),
    restore: (m, _i, st) => {
      // Guest time resumes where it was saved: rebase the one pvclock reference
      // on this host's TSC (PVM cannot offset the TSC, so the saved TSC is
      // meaningless here) and republish every vCPU's time areas before they run.
      m.setGuestTime(st.guest_ns);
      const ctx = m.context;
      for (let v = 0; v < m.handles.length; v++) {
        publishVcpuTime(ctx, v);
        m.rearmPeriodic(v, st.guest_ns);
      }
      publishWallclock(ctx);
    },
  }),
];

// One list of sections: a component per descriptor, in SECTION_LIST's order.
if (COMPONENTS.map((c) => c.desc).some((d, i) => d !== SECTION_LIST[i]) || COMPONENTS.length !== SECTION_LIST.length) {
  throw new Error('machine-state COMPONENTS and sections.ts SECTION_LIST disagree');
}

export interface SavedSection {
  name: string;
  instance: number;
  desc: AnyDescriptor;
  state: unknown;
}

/** Reads every component of a paused machine. */
export function saveMachineState(m: XenMachine): SavedSection[] {
  const out: SavedSection[] = [];
  for (const c of COMPONENTS)
    for (let i = 0; i < c.instances(m); i++)
      out.push({ name: c.desc.name, instance: i, desc: c.desc, state: c.save(m, i) });
  return out;
}

/** Every component's `sample` (or `save`): safe on a running machine; see Component.sample. */
export function sampleMachineState(m: XenMachine): SavedSection[] {
  const out: SavedSection[] = [];
  for (const c of COMPONENTS) {
    for (let i = 0; i < c.instances(m); i++)
      out.push({ name: c.desc.name, instance: i, desc: c.desc, state: (c.sample ?? c.save)(m, i) });
  }
  return out;
}

/** The component for a section name, or undefined (an unknown optional section). */
export function componentFor(name: string): Component | undefined {
  return COMPONENTS.find((c) => c.desc.name === name);
}

/**
 * Restores components in list order as their states come in: a migration's
 * final round streams its sections, and each is applied while the source
 * still saves and sends the next.  `states` maps name → instance → state and
 * may grow between calls of advance().
 */
export class MachineRestore {
  private next = 0;
  private readonly order: ReadonlyArray<readonly [Component, number]>;
  constructor(
    private readonly m: XenMachine,
    private readonly states: Map<string, Map<number, unknown>>,
  ) {
    this.order = COMPONENTS.flatMap((c) => Array.from({ length: c.instances(m) }, (_, i) => [c, i] as const));
  }

  /** Applies every component whose turn has come and whose state is in. */
  advance(): void {
    while (this.next < this.order.length) {
      const [c, i] = this.order[this.next]!;
      const st = this.states.get(c.desc.name)?.get(i);
      if (st === undefined) return;
      c.restore(this.m, i, st);
      this.next++;
    }
  }

  /** Applies the rest; throws if a component's state never came. */
  finish(): void {
    this.advance();
    if (this.next < this.order.length) {
      const [c, i] = this.order[this.next]!;
      throw new Error(`section ${c.desc.name}[${i}] is missing`);
    }
  }
}

/** Applies decoded sections in component order; `states` maps name → instance → state. */
export function restoreMachineState(m: XenMachine, states: Map<string, Map<number, unknown>>): void {
  new MachineRestore(m, states).finish();
}

/** Saves each component of a paused machine in turn, handing each to `emit` before reading the next. */
export async function saveMachineStateEach(m: XenMachine, emit: (s: SavedSection) => Promise<void>): Promise<void> {
  for (const c of COMPONENTS)
    for (let i = 0; i < c.instances(m); i++)
      await emit({ name: c.desc.name, instance: i, desc: c.desc, state: c.save(m, i) });
}
