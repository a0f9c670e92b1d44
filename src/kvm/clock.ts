// KVM's view of time, readable from any thread: the VM clock (kvmclock ns,
// which KVM_SET_CLOCK restores, so guest time stays continuous across a
// snapshot) sampled atomically with the host TSC, and each vCPU's TSC offset.
// With both, guest TSC = host TSC + offset exactly, so the emulator computes
// the same pvclock the guest does without reading the guest's TSC.
import koffi from 'koffi';
import { ioctlBuf } from './libc.js';
import { offsetOf } from './layout.js';
import { KVM, KVM_CLOCK_HOST_TSC, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET } from './ioctls.js';
import * as S from './structs.js';

export interface ClockSample {
  /** kvmclock, ns. */
  clockNs: bigint;
  /** Host TSC at the same instant, or null when KVM cannot say. */
  hostTsc: bigint | null;
}

const CLOCK = {
  clock: offsetOf(S.kvm_clock_data, 'clock'),
  flags: offsetOf(S.kvm_clock_data, 'flags'),
  hostTsc: offsetOf(S.kvm_clock_data, 'host_tsc'),
};

/** Reads the VM clock; one per thread (it owns a buffer). */
export class VmClock {
  private readonly buf = new Uint8Array(S.kvm_clock_data.size);
  private readonly view = new DataView(this.buf.buffer);
  constructor(private readonly vmFd: number) {}

  sample(): ClockSample {
    ioctlBuf(this.vmFd, KVM.GET_CLOCK, this.buf, 'KVM_GET_CLOCK');
    const flags = this.view.getUint32(CLOCK.flags, true);
    return {
      clockNs: this.view.getBigUint64(CLOCK.clock, true),
      hostTsc: flags & KVM_CLOCK_HOST_TSC ? this.view.getBigUint64(CLOCK.hostTsc, true) : null,
    };
  }

  set(clockNs: bigint): void {
    this.buf.fill(0);
    this.view.setBigUint64(CLOCK.clock, clockNs, true);
    ioctlBuf(this.vmFd, KVM.SET_CLOCK, this.buf, 'KVM_SET_CLOCK');
  }
}

/** The vCPU's TSC offset (guest TSC − host TSC), from KVM_VCPU_TSC_OFFSET. */
export function vcpuTscOffset(vcpuFd: number): bigint {
  const out = new BigInt64Array(1);
  const attr = new Uint8Array(S.kvm_device_attr.size);
  const v = new DataView(attr.buffer);
  v.setUint32(offsetOf(S.kvm_device_attr, 'group'), KVM_VCPU_TSC_CTRL, true);
  v.setBigUint64(offsetOf(S.kvm_device_attr, 'attr'), BigInt(KVM_VCPU_TSC_OFFSET), true);
  // `out` outlives the call; the kernel writes 8 bytes into it.
  v.setBigUint64(offsetOf(S.kvm_device_attr, 'addr'), koffi.address(out), true);
  ioctlBuf(vcpuFd, KVM.GET_DEVICE_ATTR, attr, 'KVM_GET_DEVICE_ATTR(TSC_OFFSET)');
  return out[0]!;
}

/** Guest TSC frequency in kHz (KVM_GET_TSC_KHZ on the vCPU). */
export function vcpuTscKhz(vcpuFd: number): number {
  return ioctlBuf(vcpuFd, KVM.GET_TSC_KHZ, null, 'KVM_GET_TSC_KHZ');
}
