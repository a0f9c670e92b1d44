// The CPUID leaves that tell a guest it runs on Xen (docs/xen-abi.md, "Detection").
import type { CpuidLeaf } from '../kvm/types.js';
import {
  XEN_CPUID_BASE,
  XEN_CPUID_SIGNATURE,
  XEN_CPUID_VCPU_ID_PRESENT,
  XEN_HVM_CPUID_UPCALL_VECTOR,
  XEN_HYPERCALL_MSR,
  XEN_VERSION_MAJOR,
  XEN_VERSION_MINOR,
} from './abi.js';

const leaf = (fn: number, eax: number, ebx = 0, ecx = 0, edx = 0): CpuidLeaf => ({
  function: fn,
  index: 0,
  indexed: false,
  eax,
  ebx,
  ecx,
  edx,
});

export function xenCpuidLeaves(vcpuId: number): CpuidLeaf[] {
  const [b, c, d] = XEN_CPUID_SIGNATURE;
  return [
    leaf(XEN_CPUID_BASE, XEN_CPUID_BASE + 5, b, c, d),
    leaf(XEN_CPUID_BASE + 1, (XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR),
    leaf(XEN_CPUID_BASE + 2, 1, XEN_HYPERCALL_MSR),
    leaf(XEN_CPUID_BASE + 3, 0),
    leaf(XEN_CPUID_BASE + 4, XEN_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_UPCALL_VECTOR, vcpuId),
    leaf(XEN_CPUID_BASE + 5, 0),
  ];
}

/**
 * The engine's CPUID with hypervisor leaves replaced by Xen's, and features
 * this host cannot honour masked: 1 GiB pages triple-fault under PVM.
 */
export function guestCpuid(supported: CpuidLeaf[], vcpuId: number): CpuidLeaf[] {
  const out = supported
    .filter((l) => l.function < XEN_CPUID_BASE || l.function > XEN_CPUID_BASE + 0xffff)
    .map((l) => ({ ...l }));
  for (const l of out) {
    if (l.function === 0x80000001) l.edx &= ~(1 << 26);
    if (l.function === 1) l.ecx |= 1 << 31; // hypervisor present
  }
  return [...out, ...xenCpuidLeaves(vcpuId)];
}
