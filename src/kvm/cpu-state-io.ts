// Reading and writing a vCPU's whole KVM state (the `cpu` section) over FFI.
//
// A CpuStateContext belongs to one VM: it knows the VM's XSAVE size and the
// MSRs worth saving, and owns the ioctl buffers, reused for every vCPU so a
// save allocates nothing but the state it returns.  Calls are synchronous
// and the buffers are only borrowed for the duration of each ioctl, so one
// context serves every vCPU of its VM from one thread.  The vCPU must not be
// in KVM_RUN (pause the machine first); KVM would serialize the ioctls on the
// vCPU mutex, but the state would be torn.
//
// FFI safety: every ioctl below passes a buffer whose size is at least the
// struct the request number encodes (checked when the context is built, see
// the `bufs` sizes) or, for the flexible structs (kvm_msrs, kvm_cpuid2),
// whose header count was set by us to what the buffer holds.  The kernel only
// uses the buffer during the call.
import { KvmError, VmstateError } from '../errors.js';
import { ioctlBuf, ioctlRaw, ioctlVal, strerror } from './libc.js';
import { offsetOf } from './layout.js';
import { Cap, KVM } from './ioctls.js';
import * as S from './structs.js';
import type { KvmVm } from './kvm.js';
import { CPUID_BUF_SIZE, MAX_CPUID_ENTRIES, readCpuid, writeCpuid } from './state/cpuid.js';
import { LAPIC_SIZE, type CpuState } from './state/cpu.js';
import { debugregsBinding } from './state/debugregs.js';
import { KVM_VCPUEVENT_VALID, eventsBinding } from './state/events.js';
import {
  MAX_SAVED_MSRS,
  MSR_BUF_SIZE,
  fillMsrEntries,
  fillMsrIndices,
  msrIndexAt,
  probeSaveableMsrs,
  readMsrEntries,
} from './state/msrs.js';
import { regsBinding } from './state/regs.js';
import { sregsBinding } from './state/sregs.js';
import { XSAVE_LEGACY_SIZE, XSAVE_MAX_SIZE, readXcrs, readXsave, writeXcrs, writeXsave } from './state/xsave.js';

export type { CpuState } from './state/cpu.js';

const EVENTS_FLAGS = offsetOf(S.kvm_vcpu_events, 'flags');

export interface CpuStateConfig {
  /** Bytes of the XSAVE area: KVM_CAP_XSAVE2 on the VM when above 4096, else 4096. */
  readonly xsaveSize: number;
  /** MSRs to save, in the order saved. */
  readonly msrIndices: readonly number[];
}

class Buf {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }
}

export class CpuStateContext {
  readonly xsaveSize: number;
  readonly msrIndices: readonly number[];
  /** @internal ioctl buffers, each sized for its struct. */
  readonly bufs: {
    readonly regs: Buf;
    readonly sregs: Buf;
    readonly xsave: Buf;
    readonly xcrs: Buf;
    readonly debugregs: Buf;
    readonly lapic: Buf;
    readonly msrs: Buf;
    readonly events: Buf;
    readonly mp: Buf;
    readonly cpuid: Buf;
  };

  constructor(config: CpuStateConfig) {
    if (
      !Number.isSafeInteger(config.xsaveSize) ||
      config.xsaveSize < XSAVE_LEGACY_SIZE ||
      config.xsaveSize > XSAVE_MAX_SIZE
    ) {
      throw new RangeError(`XSAVE size must be ${XSAVE_LEGACY_SIZE}..${XSAVE_MAX_SIZE}, got ${config.xsaveSize}`);
    }
    if (config.msrIndices.length > MAX_SAVED_MSRS)
      throw new RangeError(`${config.msrIndices.length} MSRs to save, at most ${MAX_SAVED_MSRS}`);
    this.xsaveSize = config.xsaveSize;
    this.msrIndices = [...config.msrIndices];
    this.bufs = {
      regs: new Buf(S.kvm_regs.size),
      sregs: new Buf(S.kvm_sregs.size),
      xsave: new Buf(config.xsaveSize),
      xcrs: new Buf(S.kvm_xcrs.size),
      debugregs: new Buf(S.kvm_debugregs.size),
      lapic: new Buf(LAPIC_SIZE),
      msrs: new Buf(MSR_BUF_SIZE),
      events: new Buf(S.kvm_vcpu_events.size),
      mp: new Buf(S.kvm_mp_state.size),
      cpuid: new Buf(CPUID_BUF_SIZE),
    };
  }

  /**
   * Asks KVM what to save on this VM: the XSAVE size (KVM_CAP_XSAVE2 on the VM
   * fd, which counts dynamically enabled features such as AMX) and the MSRs
   * from KVM_GET_MSR_INDEX_LIST that KVM_GET_MSRS returns on `vcpuFd`, whose
   * CPUID must already be set (it decides which MSRs exist).
   */
  static probe(vm: KvmVm, vcpuFd: number): CpuStateContext {
    const xsave2 = ioctlVal(vm.fd, KVM.CHECK_EXTENSION, Cap.XSAVE2, 'KVM_CHECK_EXTENSION(XSAVE2)');
    const msrBuf = new Uint8Array(MSR_BUF_SIZE);
    const msrIndices = probeSaveableMsrs(vcpuFd, vm.kvm.msrIndexList(), msrBuf);
    return new CpuStateContext({ xsaveSize: Math.max(xsave2, XSAVE_LEGACY_SIZE), msrIndices });
  }
}

/**
 * Reads the whole KVM state of a paused vCPU.  MP state comes first: reading
 * it makes KVM process a pending INIT or SIPI (kvm_apic_accept_events), which
 * rewrites registers, so everything read after it is consistent with it.
 */
export function getCpuState(vcpuFd: number, ctx: CpuStateContext): CpuState {
  const b = ctx.bufs;
  ioctlBuf(vcpuFd, KVM.GET_MP_STATE, b.mp.bytes, 'KVM_GET_MP_STATE');
  const tsc_khz = ioctlVal(vcpuFd, KVM.GET_TSC_KHZ, 0, 'KVM_GET_TSC_KHZ');

  b.cpuid.view.setUint32(0, MAX_CPUID_ENTRIES, true);
  ioctlBuf(vcpuFd, KVM.GET_CPUID2, b.cpuid.bytes, 'KVM_GET_CPUID2');

  ioctlBuf(vcpuFd, KVM.GET_REGS, b.regs.bytes, 'KVM_GET_REGS');
  ioctlBuf(vcpuFd, KVM.GET_SREGS, b.sregs.bytes, 'KVM_GET_SREGS');
  // KVM_GET_XSAVE2 fills KVM_CAP_XSAVE2 bytes; only needed (and only existing) when that exceeds 4096.
  if (ctx.xsaveSize > XSAVE_LEGACY_SIZE) ioctlBuf(vcpuFd, KVM.GET_XSAVE2, b.xsave.bytes, 'KVM_GET_XSAVE2');
  else ioctlBuf(vcpuFd, KVM.GET_XSAVE, b.xsave.bytes, 'KVM_GET_XSAVE');
  ioctlBuf(vcpuFd, KVM.GET_XCRS, b.xcrs.bytes, 'KVM_GET_XCRS');
  ioctlBuf(vcpuFd, KVM.GET_DEBUGREGS, b.debugregs.bytes, 'KVM_GET_DEBUGREGS');
  ioctlBuf(vcpuFd, KVM.GET_LAPIC, b.lapic.bytes, 'KVM_GET_LAPIC');

  fillMsrIndices(b.msrs.view, ctx.msrIndices);
  const got = ioctlBuf(vcpuFd, KVM.GET_MSRS, b.msrs.bytes, 'KVM_GET_MSRS');
  if (got !== ctx.msrIndices.length) {
    throw new KvmError(
      `KVM_GET_MSRS read ${got} of ${ctx.msrIndices.length} MSRs: MSR 0x${ctx.msrIndices[got]!.toString(16)} is no longer readable (was the CPUID changed after the context was probed?)`,
      0,
    );
  }

  ioctlBuf(vcpuFd, KVM.GET_VCPU_EVENTS, b.events.bytes, 'KVM_GET_VCPU_EVENTS');
  return readCpuState(ctx, tsc_khz);
}

/** The CPUID a vCPU runs with (KVM may have adjusted what it was given). */
export function getVcpuCpuid(vcpuFd: number, ctx: CpuStateContext): CpuState['cpuid'] {
  const b = ctx.bufs;
  b.cpuid.view.setUint32(0, MAX_CPUID_ENTRIES, true);
  ioctlBuf(vcpuFd, KVM.GET_CPUID2, b.cpuid.bytes, 'KVM_GET_CPUID2');
  return readCpuid(b.cpuid.view).cpuid;
}

/**
 * Decodes the context's buffers as the last getCpuState filled them (zeros
 * before the first).  On its own, without any ioctl, it gives a state of the
 * right shape to run the save path's code on while the vCPUs still run
 * (a migration warms its final round with it); its values mean nothing.
 */
export function readCpuState(ctx: CpuStateContext, tsc_khz = 0): CpuState {
  const b = ctx.bufs;
  return {
    tsc_khz,
    ...readCpuid(b.cpuid.view),
    mp_state: b.mp.view.getUint32(0, true) as CpuState['mp_state'],
    regs: regsBinding.read(b.regs.view, 0),
    sregs: sregsBinding.read(b.sregs.view, 0),
    ...readXsave(b.xsave.bytes, ctx.xsaveSize),
    ...readXcrs(b.xcrs.view),
    debugregs: debugregsBinding.read(b.debugregs.view, 0),
    lapic: b.lapic.bytes.slice(),
    msr_count: ctx.msrIndices.length,
    msrs: readMsrEntries(b.msrs.view, ctx.msrIndices.length),
    events: eventsBinding.read(b.events.view, 0),
  };
}

/**
 * Writes a saved state into a vCPU that has not run since (a fresh VM, or one
 * paused for restore).  `where` names the vCPU in errors (`cpu[1]`).
 *
 * Order (QEMU's and Firecracker's, for these reasons):
 *  1. TSC frequency, then CPUID: KVM derives the valid MSRs, XSAVE features
 *     and LAPIC behaviour from CPUID, so everything else is checked against it.
 *  2. MP state, before registers: setting SIPI_RECEIVED/INIT_RECEIVED
 *     queues APIC events that would reset registers written earlier.
 *  3. Registers, special registers (EFER, CR0/CR4 and the APIC base decide
 *     the mode in which XSAVE, MSRs and the LAPIC are interpreted), XSAVE,
 *     XCRs, debug registers.
 *  4. LAPIC, after the special registers (apic_base selects xAPIC/x2APIC,
 *     which changes how KVM_SET_LAPIC reads the APIC ID).
 *  5. MSRs, after the LAPIC: KVM ignores a write to IA32_TSC_DEADLINE unless
 *     the LAPIC timer is already in TSC-deadline mode, and x2APIC MSRs need
 *     the APIC in x2APIC mode.  Within the MSRs IA32_TSC goes first and
 *     TSC_DEADLINE last (see state/msrs.ts), so the deadline is compared with
 *     the restored TSC.  Writing IA32_TSC from the host makes KVM set the TSC
 *     offset so the guest reads the saved value now: guest TSC pauses while
 *     the guest is stopped, like the KVM clock (putVmState).
 *  6. vCPU events last: KVM_SET_REGS and KVM_SET_SREGS clear a pending
 *     exception, and the SMM flag in the events changes the CPU mode, so any
 *     earlier write would undo part of them.
 */
export function putCpuState(vcpuFd: number, state: CpuState, ctx: CpuStateContext, where = 'cpu'): void {
  const b = ctx.bufs;
  const refuse = (field: string, why: string): never => {
    throw new VmstateError(why, `${where}.${field}`);
  };
  // Validate everything that can be checked without KVM before changing anything.
  if (state.lapic.length !== LAPIC_SIZE)
    refuse('lapic', `LAPIC state of ${state.lapic.length} bytes, KVM's is ${LAPIC_SIZE}`);
  if (state.msrs.length !== state.msr_count || state.msr_count > MAX_SAVED_MSRS) {
    refuse('msrs', `${state.msrs.length} MSRs but msr_count is ${state.msr_count} (at most ${MAX_SAVED_MSRS})`);
  }
  if (state.cpuid.length !== state.cpuid_count || state.cpuid_count > MAX_CPUID_ENTRIES) {
    refuse(
      'cpuid',
      `${state.cpuid.length} CPUID entries but cpuid_count is ${state.cpuid_count} (at most ${MAX_CPUID_ENTRIES})`,
    );
  }
  const xsaveProblem = writeXsave(b.xsave.bytes, state);
  if (xsaveProblem) refuse('xsave', xsaveProblem);
  const xcrsProblem = writeXcrs(b.xcrs.view, state);
  if (xcrsProblem) refuse('xcrs', xcrsProblem);

  // 1. TSC frequency: only when it differs, as hosts without TSC scaling refuse any KVM_SET_TSC_KHZ.
  const khz = ioctlVal(vcpuFd, KVM.GET_TSC_KHZ, 0, 'KVM_GET_TSC_KHZ');
  if (khz !== state.tsc_khz) {
    const r = ioctlRaw(vcpuFd, KVM.SET_TSC_KHZ, state.tsc_khz);
    if (r < 0) {
      throw new KvmError(
        `${where}: the guest's TSC runs at ${state.tsc_khz} kHz but this host's at ${khz} kHz, and KVM cannot scale it (KVM_SET_TSC_KHZ: ${strerror(-r)})`,
        -r,
      );
    }
  }
  const size = writeCpuid(b.cpuid.view, state.cpuid);
  ioctlBuf(vcpuFd, KVM.SET_CPUID2, b.cpuid.bytes.subarray(0, size), `${where}: KVM_SET_CPUID2`);

  // 2. MP state.
  b.mp.view.setUint32(0, state.mp_state, true);
  ioctlBuf(vcpuFd, KVM.SET_MP_STATE, b.mp.bytes, `${where}: KVM_SET_MP_STATE`);

  // 3. Registers.
  regsBinding.write(b.regs.view, 0, state.regs);
  ioctlBuf(vcpuFd, KVM.SET_REGS, b.regs.bytes, `${where}: KVM_SET_REGS`);
  b.sregs.bytes.fill(0);
  sregsBinding.write(b.sregs.view, 0, state.sregs);
  ioctlBuf(vcpuFd, KVM.SET_SREGS, b.sregs.bytes, `${where}: KVM_SET_SREGS`);
  // KVM_SET_XSAVE reads the VM's XSAVE size (kvm_xsave or KVM_CAP_XSAVE2), which b.xsave holds.
  ioctlBuf(vcpuFd, KVM.SET_XSAVE, b.xsave.bytes, `${where}: KVM_SET_XSAVE`);
  ioctlBuf(vcpuFd, KVM.SET_XCRS, b.xcrs.bytes, `${where}: KVM_SET_XCRS`);
  b.debugregs.bytes.fill(0);
  debugregsBinding.write(b.debugregs.view, 0, state.debugregs);
  ioctlBuf(vcpuFd, KVM.SET_DEBUGREGS, b.debugregs.bytes, `${where}: KVM_SET_DEBUGREGS`);

  // 4. LAPIC.
  b.lapic.bytes.set(state.lapic);
  ioctlBuf(vcpuFd, KVM.SET_LAPIC, b.lapic.bytes, `${where}: KVM_SET_LAPIC`);

  // 5. MSRs.
  fillMsrEntries(b.msrs.view, state.msrs);
  const set = ioctlBuf(vcpuFd, KVM.SET_MSRS, b.msrs.bytes, `${where}: KVM_SET_MSRS`);
  if (set !== state.msr_count) {
    const idx = msrIndexAt(b.msrs.view, set);
    throw new KvmError(
      `${where}: KVM_SET_MSRS wrote ${set} of ${state.msr_count} MSRs: this host's KVM refused MSR 0x${idx.toString(16)} (unknown here, or its value is invalid for this CPUID)`,
      0,
    );
  }

  // 6. Events.  NMI_PENDING and SIPI_VECTOR are input-only flags (KVM_GET never reports them).
  b.events.bytes.fill(0);
  eventsBinding.write(b.events.view, 0, state.events);
  b.events.view.setUint32(
    EVENTS_FLAGS,
    state.events.flags | KVM_VCPUEVENT_VALID.NMI_PENDING | KVM_VCPUEVENT_VALID.SIPI_VECTOR,
    true,
  );
  ioctlBuf(vcpuFd, KVM.SET_VCPU_EVENTS, b.events.bytes, `${where}: KVM_SET_VCPU_EVENTS`);
}
