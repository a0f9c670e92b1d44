// Names of the MSRs KVM saves, for tables and diffs (Intel SDM vol. 4, AMD
// APM vol. 2, Linux's arch/x86/include/uapi/asm/kvm_para.h, Xen's CPUID/MSR
// interface).  An index not listed shows as hex only.
const NAMES: ReadonlyMap<number, string> = new Map([
  [0x10, 'IA32_TSC'],
  [0x1b, 'IA32_APIC_BASE'],
  [0x3a, 'IA32_FEATURE_CONTROL'],
  [0x3b, 'IA32_TSC_ADJUST'],
  [0x48, 'IA32_SPEC_CTRL'],
  [0x10a, 'IA32_ARCH_CAPABILITIES'],
  [0x174, 'IA32_SYSENTER_CS'],
  [0x175, 'IA32_SYSENTER_ESP'],
  [0x176, 'IA32_SYSENTER_EIP'],
  [0x1a0, 'IA32_MISC_ENABLE'],
  [0x277, 'IA32_PAT'],
  [0x6e0, 'IA32_TSC_DEADLINE'],
  [0xda0, 'IA32_XSS'],
  [0xc0000080, 'EFER'],
  [0xc0000081, 'STAR'],
  [0xc0000082, 'LSTAR'],
  [0xc0000083, 'CSTAR'],
  [0xc0000084, 'SYSCALL_MASK'],
  [0xc0000100, 'FS_BASE'],
  [0xc0000101, 'GS_BASE'],
  [0xc0000102, 'KERNEL_GS_BASE'],
  [0xc0000103, 'TSC_AUX'],
  [0x11, 'KVM_WALL_CLOCK'],
  [0x12, 'KVM_SYSTEM_TIME'],
  [0x4b564d00, 'KVM_WALL_CLOCK_NEW'],
  [0x4b564d01, 'KVM_SYSTEM_TIME_NEW'],
  [0x4b564d02, 'KVM_ASYNC_PF_EN'],
  [0x4b564d03, 'KVM_STEAL_TIME'],
  [0x4b564d04, 'KVM_PV_EOI_EN'],
  [0x4b564d05, 'KVM_POLL_CONTROL'],
  [0x4b564d06, 'KVM_ASYNC_PF_INT'],
  [0x40000000, 'XEN_HYPERCALL_PAGE'],
]);

export function msrName(index: number): string | undefined {
  return NAMES.get(index);
}

/** `IA32_TSC` or `0xc0010015`: a key that reads well in a diff path. */
export function msrKey(index: number): string {
  return NAMES.get(index) ?? `0x${index.toString(16)}`;
}
