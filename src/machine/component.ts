// What a component of a machine's saved state is: one section descriptor and
// the code that saves and restores it (Firecracker's Persist).  The list of
// components is sections.ts; state.ts walks it.  A component reaches KVM only
// through the methods of MachineStateAccess, which XenMachine implements, so
// this file and the list import nothing but types from the machine and KVM
// layers: the inspector loads the list without loading the emulator.
import type { AnyDescriptor, StateOf } from '../vmstate/index.js';
import type { CpuState, IrqchipState, KvmclockState } from '../kvm/state/index.js';
import type { XenShared } from '../xen/tables.js';
import type { MemoryLayout } from '../xen/memory/layout.js';
import type { MachineConfig } from './config.js';
import type { FrameSlots } from '../xen/gnttab/slots.js';
import type { XenstoreServer } from '../xen/xenstore/server.js';
import type { ConsoleService } from '../xen/console/service.js';

/** What a component's check sees: the machine the stream describes, and every other decoded section. */
export interface CheckContext {
  readonly config: MachineConfig;
  readonly layout: MemoryLayout;
  /** Instance `instance` of another section; present (checkMachineState verified that first). */
  state<D extends AnyDescriptor>(desc: D, instance?: number): StateOf<D>;
  /** The same for an optional section, which an older stream may lack. */
  optionalState<D extends AnyDescriptor>(desc: D, instance?: number): StateOf<D> | undefined;
}

/** What a component may use of the machine it saves or restores. */
export interface MachineStateAccess {
  /** The emulator's Xen tables (plain memory: read and written directly). */
  readonly xen: XenShared;
  readonly vcpuCount: number;
  /** vCPU `v`'s KVM state; the machine must be paused. */
  getCpuState(v: number): CpuState;
  /** A CPU state of the right shape, read without touching any vCPU (values meaningless). */
  sampleCpuState(): CpuState;
  putCpuState(v: number, state: CpuState): void;
  getIrqchip(): IrqchipState;
  putIrqchip(state: IrqchipState): void;
  getKvmclock(): KvmclockState;
  putKvmclock(state: KvmclockState): void;
  /** vCPU 0's TSC frequency as KVM runs it. */
  tscKhz(): number;
  /** Guest system time now, as the guest's pvclock computes it. */
  guestNowNs(): bigint;
  /** Makes guest system time `ns0` now (see XenMachine.setGuestTime). */
  setGuestTime(ns0: bigint): void;
  /** Re-arms vCPU `v`'s periodic timer one period after guest time `nowNs`. */
  rearmPeriodic(v: number, nowNs: bigint): void;
  /** Rewrites every vCPU's time areas and the wallclock in guest memory from the current clock reference. */
  publishTime(): void;
  /** Guest RAM's size. */
  readonly ramBytes: number;
  /** The emulator's pages mapped into the guest (xen/memory/layout.ts "Xen pages"). */
  readonly xenPageBytes: Uint8Array;
  /** Places grant frames in guest-physical space (their KVM slots). */
  readonly frameSlots: FrameSlots;
  /** The xenstore daemon (plain data); restore replaces it. */
  xenstore: XenstoreServer;
  /** What the PV console backend holds outside its page. */
  readonly consoleService: ConsoleService;
}

export interface Component<D extends AnyDescriptor = AnyDescriptor> {
  readonly desc: D;
  /**
   * A section that saved states of older builds lack (the PV platform's):
   * when a stream has none, the machine keeps what it was created with and
   * `check` is not called.  Absent: every stream must carry it.
   */
  readonly optional?: boolean;
  /** Sections of this name the machine writes (one per vCPU, or one). */
  instances(m: { readonly vcpuCount: number }): number;
  /** Reads instance `i` of a paused machine into plain state. */
  save(m: MachineStateAccess, i: number): StateOf<D>;
  /** Writes instance `i` into a fresh machine that has not started. */
  restore(m: MachineStateAccess, i: number, state: StateOf<D>): void;
  /**
   * A state of the right shape read while the guest runs, for warming up the
   * save path (values meaningless).  Absent: `save` is safe on a running
   * machine (it reads no vCPU through its fd, which KVM_RUN holds).
   */
  sample?(m: MachineStateAccess, i: number): StateOf<D>;
  /**
   * Validates decoded instance `i` against the machine it is to be restored
   * into and the other sections, before any of them is applied, throwing a
   * FormatError that names the field; absent: anything the descriptor decodes
   * is accepted.  The rule lives here, with the state it guards.
   */
  check?(state: StateOf<D>, i: number, ctx: CheckContext): void;
}
