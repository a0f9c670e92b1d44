// Register-level types shared by the KVM layer, the loader and the Xen
// emulator.  General registers are kept in struct kvm_regs order so that a
// BigUint64Array over kvm_run's sync-regs area *is* the register file.

/** Index of each general register in struct kvm_regs. */
export const Gpr = {
  RAX: 0,
  RBX: 1,
  RCX: 2,
  RDX: 3,
  RSI: 4,
  RDI: 5,
  RSP: 6,
  RBP: 7,
  R8: 8,
  R9: 9,
  R10: 10,
  R11: 11,
  R12: 12,
  R13: 13,
  R14: 14,
  R15: 15,
  RIP: 16,
  RFLAGS: 17,
} as const;
export const GPR_COUNT = 18;

/** A segment register as struct kvm_segment describes it. */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: boolean;
  dpl: number;
  db: boolean;
  s: boolean;
  l: boolean;
  g: boolean;
  avl: boolean;
  unusable: boolean;
}

export interface DescriptorTable {
  base: bigint;
  limit: number;
}

/** struct kvm_sregs without the interrupt bitmap (always zero with an in-kernel irqchip). */
export interface SpecialRegs {
  cs: Segment;
  ds: Segment;
  es: Segment;
  fs: Segment;
  gs: Segment;
  ss: Segment;
  tr: Segment;
  ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apicBase: bigint;
}

/** One CPUID leaf as the guest will see it. */
export interface CpuidLeaf {
  function: number;
  index: number;
  /** KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the sub-leaf matters. */
  indexed: boolean;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}
