// /dev/kvm and a KVM virtual machine over koffi.  The system fd and the VM fd
// are owned here and closed by destroy(); vCPU fds are created here but owned
// by whoever constructs a KvmVcpu over them (its thread).
import koffi from 'koffi';
import { KvmError, NoKvmError } from '../errors.js';
import { closeFd, ioctlBuf, ioctlVal, O_RDWR, setIoctlFailure, strerror, tryOpen } from './libc.js';
import { offsetOf } from './layout.js';
import {
  Cap,
  KVM,
  KVM_API_VERSION,
  KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
  KVM_MSR_FILTER_DEFAULT_ALLOW,
  KVM_MSR_FILTER_READ,
  KVM_MSR_FILTER_WRITE,
} from './ioctls.js';
import * as S from './structs.js';
import type { CpuidLeaf } from './types.js';

setIoctlFailure((what, err) => {
  throw new KvmError(`${what}: ${strerror(err)}`, err);
});

export const KVM_DEVICE = '/dev/kvm';
/** Room for KVM_GET_SUPPORTED_CPUID; KVM answers E2BIG below what it needs. */
const MAX_CPUID_ENTRIES = 256;
/** Below 4 GiB and above any RAM we map: where VMX wants its TSS and identity map pages. */
const TSS_ADDR = 0xfffbd000;
const IDENTITY_MAP_ADDR = 0xfffbc000n;

/** Why KVM cannot be used here, or null.  Never throws. */
export function kvmUnavailable(): string | null {
  const fd = tryOpen(KVM_DEVICE, O_RDWR);
  if (fd < 0) return `${KVM_DEVICE}: ${strerror(-fd)}`;
  closeFd(fd);
  return null;
}

export class Kvm {
  readonly fd: number;
  readonly vcpuMmapSize: number;
  private closed = false;

  private constructor(fd: number) {
    this.fd = fd;
    this.vcpuMmapSize = ioctlVal(fd, KVM.GET_VCPU_MMAP_SIZE, 0, 'KVM_GET_VCPU_MMAP_SIZE');
  }

  static open(): Kvm {
    const fd = tryOpen(KVM_DEVICE, O_RDWR);
    if (fd < 0)
      throw new NoKvmError(
        `cannot open ${KVM_DEVICE}: ${strerror(-fd)} (is the kvm module loaded, and may this user use it?)`,
      );
    const api = ioctlVal(fd, KVM.GET_API_VERSION, 0, 'KVM_GET_API_VERSION');
    if (api !== KVM_API_VERSION) {
      closeFd(fd);
      throw new NoKvmError(`${KVM_DEVICE} speaks KVM API ${api}, xenkvm needs ${KVM_API_VERSION}`);
    }
    return new Kvm(fd);
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, else the capability's value. */
  check(cap: number): number {
    return ioctlVal(this.fd, KVM.CHECK_EXTENSION, cap, 'KVM_CHECK_EXTENSION');
  }

  supportedCpuid(): CpuidLeaf[] {
    const entry = S.kvm_cpuid_entry2.size;
    const buf = new Uint8Array(S.kvm_cpuid2.size + MAX_CPUID_ENTRIES * entry);
    const v = new DataView(buf.buffer);
    v.setUint32(0, MAX_CPUID_ENTRIES, true);
    ioctlBuf(this.fd, KVM.GET_SUPPORTED_CPUID, buf, 'KVM_GET_SUPPORTED_CPUID');
    return decodeCpuid(v);
  }

  /** MSRs KVM can save and restore (KVM_GET_MSR_INDEX_LIST). */
  msrIndexList(): number[] {
    const max = 1024;
    const buf = new Uint8Array(4 + max * 4);
    const v = new DataView(buf.buffer);
    v.setUint32(0, max, true);
    ioctlBuf(this.fd, KVM.GET_MSR_INDEX_LIST, buf, 'KVM_GET_MSR_INDEX_LIST');
    const n = v.getUint32(0, true);
    return Array.from({ length: n }, (_, i) => v.getUint32(4 + i * 4, true));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.fd);
  }
}

export function decodeCpuid(v: DataView): CpuidLeaf[] {
  const n = v.getUint32(0, true);
  const out: CpuidLeaf[] = [];
  const f = (name: string) => offsetOf(S.kvm_cpuid_entry2, name);
  for (let i = 0; i < n; i++) {
    const o = S.kvm_cpuid2.size + i * S.kvm_cpuid_entry2.size;
    out.push({
      function: v.getUint32(o + f('function'), true),
      index: v.getUint32(o + f('index'), true),
      indexed: (v.getUint32(o + f('flags'), true) & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) !== 0,
      eax: v.getUint32(o + f('eax'), true),
      ebx: v.getUint32(o + f('ebx'), true),
      ecx: v.getUint32(o + f('ecx'), true),
      edx: v.getUint32(o + f('edx'), true),
    });
  }
  return out;
}

export function encodeCpuid(leaves: readonly CpuidLeaf[]): Uint8Array {
  const buf = new Uint8Array(S.kvm_cpuid2.size + leaves.length * S.kvm_cpuid_entry2.size);
  const v = new DataView(buf.buffer);
  v.setUint32(0, leaves.length, true);
  const f = (name: string) => offsetOf(S.kvm_cpuid_entry2, name);
  leaves.forEach((l, i) => {
    const o = S.kvm_cpuid2.size + i * S.kvm_cpuid_entry2.size;
    v.setUint32(o + f('function'), l.function >>> 0, true);
    v.setUint32(o + f('index'), l.index >>> 0, true);
    v.setUint32(o + f('flags'), l.indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0, true);
    v.setUint32(o + f('eax'), l.eax >>> 0, true);
    v.setUint32(o + f('ebx'), l.ebx >>> 0, true);
    v.setUint32(o + f('ecx'), l.ecx >>> 0, true);
    v.setUint32(o + f('edx'), l.edx >>> 0, true);
  });
  return buf;
}

/**
 * KVM_SET_USER_MEMORY_REGION on VM fd `vmFd`: maps `size` bytes of host
 * memory at `hostAddr` as guest-physical `gpa` in `slot` (size 0 deletes the
 * slot).  Safe from any thread while vCPUs run: KVM swaps its slot list under
 * its own locks and makes every vCPU drop stale translations.
 */
export function setMemorySlot(
  vmFd: number,
  slot: number,
  gpa: number,
  size: number,
  hostAddr: bigint,
  flags = 0,
): void {
  const buf = new Uint8Array(S.kvm_userspace_memory_region.size);
  const v = new DataView(buf.buffer);
  const f = (n: string) => offsetOf(S.kvm_userspace_memory_region, n);
  v.setUint32(f('slot'), slot, true);
  v.setUint32(f('flags'), flags, true);
  v.setBigUint64(f('guest_phys_addr'), BigInt(gpa), true);
  v.setBigUint64(f('memory_size'), BigInt(size), true);
  v.setBigUint64(f('userspace_addr'), hostAddr, true);
  ioctlBuf(vmFd, KVM.SET_USER_MEMORY_REGION, buf, 'KVM_SET_USER_MEMORY_REGION');
}

/** One KVM VM with an in-kernel irqchip.  Its ioctls are safe from any thread. */
export class KvmVm {
  readonly kvm: Kvm;
  readonly fd: number;
  private destroyed = false;

  constructor(kvm: Kvm) {
    this.kvm = kvm;
    this.fd = ioctlVal(kvm.fd, KVM.CREATE_VM, 0, 'KVM_CREATE_VM');
    try {
      // VMX needs these pages below 4 GiB; other KVM flavours ignore or refuse them harmlessly.
      try {
        ioctlVal(this.fd, KVM.SET_TSS_ADDR, TSS_ADDR, 'KVM_SET_TSS_ADDR');
      } catch {
        /* not needed here */
      }
      try {
        const addr = new BigUint64Array([IDENTITY_MAP_ADDR]);
        ioctlBuf(this.fd, KVM.SET_IDENTITY_MAP_ADDR, new Uint8Array(addr.buffer), 'KVM_SET_IDENTITY_MAP_ADDR');
      } catch {
        /* not needed here */
      }
      ioctlVal(this.fd, KVM.CREATE_IRQCHIP, 0, 'KVM_CREATE_IRQCHIP');
    } catch (e) {
      closeFd(this.fd);
      throw e;
    }
  }

  /** Maps `size` bytes of host memory at `hostAddr` as guest-physical `gpa`. */
  setMemory(slot: number, gpa: number, size: number, hostAddr: bigint, flags = 0): void {
    setMemorySlot(this.fd, slot, gpa, size, hostAddr, flags);
  }

  enableCap(cap: number, args: readonly (number | bigint)[] = []): void {
    const buf = new Uint8Array(S.kvm_enable_cap.size);
    const v = new DataView(buf.buffer);
    v.setUint32(offsetOf(S.kvm_enable_cap, 'cap'), cap, true);
    args.forEach((a, i) => v.setBigUint64(offsetOf(S.kvm_enable_cap, 'args') + i * 8, BigInt(a), true));
    ioctlBuf(this.fd, KVM.ENABLE_CAP, buf, `KVM_ENABLE_CAP(${cap})`);
  }

  /**
   * Sends guest RDMSR/WRMSR of `msrs` to userspace (KVM_X86_SET_MSR_FILTER with
   * KVM_CAP_X86_USER_SPACE_MSR); every other MSR stays with KVM.
   */
  trapMsrs(msrs: readonly number[], exitReasons: number): void {
    this.enableCap(Cap.X86_USER_SPACE_MSR, [exitReasons]);
    const buf = new Uint8Array(S.kvm_msr_filter.size);
    const v = new DataView(buf.buffer);
    v.setUint32(offsetOf(S.kvm_msr_filter, 'flags'), KVM_MSR_FILTER_DEFAULT_ALLOW, true);
    // One deny bit (0) per MSR; the bitmaps must outlive the ioctl only.
    const bitmaps = msrs.map(() => new Uint8Array(8));
    const r = (n: string) => offsetOf(S.kvm_msr_filter_range, n);
    msrs.forEach((msr, i) => {
      const o = offsetOf(S.kvm_msr_filter, 'ranges') + i * S.kvm_msr_filter_range.size;
      v.setUint32(o + r('flags'), KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE, true);
      v.setUint32(o + r('nmsrs'), 1, true);
      v.setUint32(o + r('base'), msr, true);
      v.setBigUint64(o + r('bitmap'), addressOf(bitmaps[i]!), true);
    });
    ioctlBuf(this.fd, KVM.X86_SET_MSR_FILTER, buf, 'KVM_X86_SET_MSR_FILTER');
  }

  createVcpu(index: number): number {
    return ioctlVal(this.fd, KVM.CREATE_VCPU, index, `KVM_CREATE_VCPU(${index})`);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    closeFd(this.fd);
  }
}

/** Host address of a Node buffer's storage, for structs that carry pointers. */
function addressOf(buf: Uint8Array): bigint {
  return koffi.address(buf);
}
