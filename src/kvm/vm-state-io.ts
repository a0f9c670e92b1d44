// Reading and writing the VM-level KVM state: the KVM clock, the in-kernel
// irqchip (PIC master, PIC slave, IOAPIC) and, if the VM created one, the PIT.
//
// Restore order for a machine: putVmState's irqchip and PIT may go before or
// after the vCPUs (they do not depend on vCPU state), but its clock should be
// the last thing written before the vCPUs resume, because the KVM clock runs
// from the moment it is set (Firecracker and QEMU set it last too).
// putVmState therefore writes the clock last; call it after putCpuState.
//
// FFI safety: each buffer below is exactly the size of the struct its ioctl
// number encodes (kvm_clock_data, kvm_irqchip, kvm_pit_state2), allocated
// once per module and lent to the kernel only for the call.  Calls are
// synchronous, so sharing them across VMs on one thread is safe.
import { KvmError, VmstateError } from '../errors.js';
import { ioctlBuf, ioctlBufRaw, strerror } from './libc.js';
import { offsetOf } from './layout.js';
import { KVM } from './ioctls.js';
import * as S from './structs.js';
import { IRQCHIP_CHIPS, KVM_IRQCHIP, type IrqchipState } from './state/irqchip.js';
import { KVM_CLOCK_FLAGS, kvmclockBinding, type KvmclockState } from './state/kvmclock.js';
import { pitBinding, type PitState } from './state/pit.js';

export interface VmState {
  kvmclock: KvmclockState;
  irqchip: IrqchipState;
  /** Present only when the VM has an in-kernel PIT (KVM_CREATE_PIT2). */
  pit?: PitState;
}

export interface PutVmOptions {
  /**
   * Advance the guest clock by the wall-clock time since the state was saved
   * (KVM_CLOCK_REALTIME), as if the guest had kept running.  Default false:
   * the clock resumes where it stopped, which is what QEMU does and what the
   * guest's TSC (restored to its saved value) agrees with.
   */
  advanceClock?: boolean;
}

const ENXIO = 6;
const clockBuf = new Uint8Array(S.kvm_clock_data.size);
const clockView = new DataView(clockBuf.buffer);
const chipBuf = new Uint8Array(S.kvm_irqchip.size);
const chipView = new DataView(chipBuf.buffer);
const pitBuf = new Uint8Array(S.kvm_pit_state2.size);
const pitView = new DataView(pitBuf.buffer);
const CHIP_ID = offsetOf(S.kvm_irqchip, 'chip_id');
const CHIP_AT = offsetOf(S.kvm_irqchip, 'chip');

/** Reads every VM-level section; `pit` only if the VM has one. */
export function getVmState(vmFd: number): VmState {
  const state: VmState = { kvmclock: getKvmclock(vmFd), irqchip: getIrqchip(vmFd) };
  const pit = getPit(vmFd);
  if (pit) state.pit = pit;
  return state;
}

/** Writes every VM-level section: irqchip, PIT (if in the state), then the clock. */
export function putVmState(vmFd: number, state: VmState, opts: PutVmOptions = {}): void {
  checkIrqchip(state.irqchip);
  putIrqchip(vmFd, state.irqchip);
  if (state.pit) putPit(vmFd, state.pit);
  putKvmclock(vmFd, state.kvmclock, opts);
}

export function getKvmclock(vmFd: number): KvmclockState {
  clockBuf.fill(0);
  ioctlBuf(vmFd, KVM.GET_CLOCK, clockBuf, 'KVM_GET_CLOCK');
  const kvmclock = kvmclockBinding.read(clockView, 0);
  // KVM leaves these zero when unflagged; say so explicitly rather than trust it.
  if (!(kvmclock.flags & KVM_CLOCK_FLAGS.REALTIME)) kvmclock.realtime = 0n;
  if (!(kvmclock.flags & KVM_CLOCK_FLAGS.HOST_TSC)) kvmclock.host_tsc = 0n;
  return kvmclock;
}

/**
 * Sets the KVM clock; it runs from this moment (see the top of this file).
 * KVM_SET_CLOCK acts only on the REALTIME input flag; TSC_STABLE and
 * HOST_TSC are reports, so they are not passed back.
 */
export function putKvmclock(vmFd: number, st: KvmclockState, opts: PutVmOptions = {}): void {
  clockBuf.fill(0);
  const advance = opts.advanceClock === true && (st.flags & KVM_CLOCK_FLAGS.REALTIME) !== 0;
  kvmclockBinding.write(clockView, 0, {
    clock: st.clock,
    flags: advance ? KVM_CLOCK_FLAGS.REALTIME : 0,
    realtime: advance ? st.realtime : 0n,
    host_tsc: 0n,
  });
  ioctlBuf(vmFd, KVM.SET_CLOCK, clockBuf, 'KVM_SET_CLOCK');
}

type ChipField = (typeof IRQCHIP_CHIPS)[number][0];
const sizeOfChip = (field: ChipField): number => (field === 'ioapic' ? S.kvm_ioapic_state.size : S.kvm_pic_state.size);

export function getIrqchip(vmFd: number): IrqchipState {
  const chip = (field: ChipField, id: number): Uint8Array => {
    chipBuf.fill(0);
    chipView.setUint32(CHIP_ID, id, true);
    ioctlBuf(vmFd, KVM.GET_IRQCHIP, chipBuf, `KVM_GET_IRQCHIP(${field})`);
    return chipBuf.slice(CHIP_AT, CHIP_AT + sizeOfChip(field));
  };
  return {
    pic_master: chip('pic_master', KVM_IRQCHIP.PIC_MASTER),
    pic_slave: chip('pic_slave', KVM_IRQCHIP.PIC_SLAVE),
    ioapic: chip('ioapic', KVM_IRQCHIP.IOAPIC),
  };
}

function checkIrqchip(st: IrqchipState): void {
  for (const [field] of IRQCHIP_CHIPS) {
    const want = sizeOfChip(field);
    if (st[field].length !== want)
      throw new VmstateError(`${st[field].length} bytes, KVM's struct has ${want}`, `irqchip.${field}`);
  }
}

/** Writes the three chips; all sizes are checked before the first is written. */
export function putIrqchip(vmFd: number, st: IrqchipState): void {
  checkIrqchip(st);
  for (const [field, id] of IRQCHIP_CHIPS) {
    chipBuf.fill(0);
    chipView.setUint32(CHIP_ID, id, true);
    chipBuf.set(st[field], CHIP_AT);
    ioctlBuf(vmFd, KVM.SET_IRQCHIP, chipBuf, `KVM_SET_IRQCHIP(${field})`);
  }
}

/** The PIT's state, or undefined when the VM has none (KVM answers ENXIO). */
export function getPit(vmFd: number): PitState | undefined {
  const r = ioctlBufRaw(vmFd, KVM.GET_PIT2, pitBuf);
  if (r >= 0) return pitBinding.read(pitView, 0);
  if (-r !== ENXIO) throw new KvmError(`KVM_GET_PIT2: ${strerror(-r)}`, -r);
  return undefined;
}

export function putPit(vmFd: number, st: PitState): void {
  pitBuf.fill(0);
  pitBinding.write(pitView, 0, st);
  const r = ioctlBufRaw(vmFd, KVM.SET_PIT2, pitBuf);
  if (r === -ENXIO)
    throw new KvmError(
      'the state has a PIT (section pit) but this VM has none: create it with KVM_CREATE_PIT2 before restoring',
      ENXIO,
    );
  if (r < 0) throw new KvmError(`KVM_SET_PIT2: ${strerror(-r)}`, -r);
}
