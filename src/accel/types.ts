// The contract between a vCPU execution engine (KVM, or the software engine
// used where /dev/kvm is absent) and everything above it: the Xen emulator,
// the loader, the machine, checkpointing.  Nothing above this file knows which
// engine runs the guest.
//
// Hot path shape: `run()` returns a small integer and fills the preallocated
// `exit` object; general registers live in a preallocated BigUint64Array in
// struct kvm_regs order, so a hypercall exit allocates nothing.

/** Index of each general register in `VcpuEngine.gpr` (struct kvm_regs order). */
export const Gpr = {
  RAX: 0, RBX: 1, RCX: 2, RDX: 3, RSI: 4, RDI: 5, RSP: 6, RBP: 7,
  R8: 8, R9: 9, R10: 10, R11: 11, R12: 12, R13: 13, R14: 14, R15: 15,
  RIP: 16, RFLAGS: 17,
} as const;
export const GPR_COUNT = 18;

/** Why `run()` returned. */
export const ExitKind = {
  /** Port I/O: `exit.port`, `exit.size`, `exit.isWrite`, `exit.data` (for OUT). IN completes with `completeIoIn`. */
  Io: 1,
  /** RDMSR of a filtered MSR: `exit.msrIndex`; complete with `completeMsr`. */
  MsrRead: 2,
  /** WRMSR of a filtered MSR: `exit.msrIndex`, `exit.msrData`; complete with `completeMsr`. */
  MsrWrite: 3,
  /** HLT with interrupts disabled or no in-kernel LAPIC to park it. */
  Hlt: 4,
  /** Triple fault or an engine-detected fatal guest condition: `exit.detail`. */
  Shutdown: 5,
  /** `kick()` was called (or a signal arrived): nothing to do but look at requests. */
  Interrupted: 6,
  /** MMIO to unbacked memory: `exit.mmioAddr`, `exit.size`, `exit.isWrite`, `exit.data`. */
  Mmio: 7,
  /** The engine failed (KVM internal error, emulation failure): `exit.detail`. */
  Error: 8,
} as const;
export type ExitKind = (typeof ExitKind)[keyof typeof ExitKind];

/** Filled in place by `run()`; read it before the next `run()`. */
export interface ExitInfo {
  kind: ExitKind;
  port: number;
  size: number;
  isWrite: boolean;
  data: number;
  msrIndex: number;
  msrData: bigint;
  mmioAddr: bigint;
  detail: string;
}

export function newExitInfo(): ExitInfo {
  return { kind: ExitKind.Interrupted, port: 0, size: 0, isWrite: false, data: 0, msrIndex: 0, msrData: 0n, mmioAddr: 0n, detail: '' };
}

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

/** The part of struct kvm_sregs that engines must support. */
export interface SpecialRegs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment;
  tr: Segment; ldt: Segment;
  gdt: DescriptorTable; idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint;
  efer: bigint; apicBase: bigint;
}

/** One CPUID leaf as the guest will see it. */
export interface CpuidLeaf {
  function: number;
  index: number;
  /** KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the sub-leaf matters. */
  indexed: boolean;
  eax: number; ebx: number; ecx: number; edx: number;
}

/** A vCPU of either engine.  Owned by one thread; not thread-safe. */
export interface VcpuEngine {
  readonly index: number;
  /** General registers; valid after `run()` returns.  Write, then `markGprDirty()`. */
  readonly gpr: BigUint64Array;
  readonly exit: ExitInfo;
  /** Runs the guest until the next exit userspace must handle. */
  run(): ExitKind;
  /** Write `gpr` back to the vCPU before the next `run()`. */
  markGprDirty(): void;
  /** Value an IN instruction reads; call before the next `run()`. */
  completeIoIn(value: number): void;
  /** Finish an MSR exit: `fault` raises #GP in the guest; `value` is RDMSR's result. */
  completeMsr(fault: boolean, value?: bigint): void;
  getSpecialRegs(): SpecialRegs;
  setSpecialRegs(sregs: SpecialRegs): void;
  /** Sets every general register at once (boot, restore). */
  setGpr(values: ArrayLike<bigint>): void;
  /** Make a running `run()` return `Interrupted` soon; callable from another thread's view via the engine's kick handle. */
  kick(): void;
  /** Releases the vCPU (fd, mappings, engine handle).  Idempotent. */
  destroy(): void;
}

/** What a VM needs from its engine. */
export interface VmEngine {
  /** 'kvm' or 'soft'. */
  readonly accel: AccelName;
  /** Guest-physical RAM starting at GPA 0, as a view shared with the engine. */
  readonly ram: Uint8Array;
  /** CPUID the engine offers before Xen leaves and masks are applied. */
  supportedCpuid(): CpuidLeaf[];
  /** Sets CPUID for every vCPU created after this call. */
  setCpuid(leaves: CpuidLeaf[]): void;
  /** MSRs whose guest accesses exit to userspace (the Xen hypercall-page MSR). */
  trapMsrs(indices: readonly number[]): void;
  createVcpu(index: number): VcpuEngine;
  destroy(): void;
}

export type AccelName = 'kvm' | 'soft';
