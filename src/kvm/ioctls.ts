// KVM ioctl request numbers, built like <linux/ioctl.h> does from the struct
// layouts in structs.ts (so a struct's size is stated once), and the KVM
// constants xenkvm uses.  test/kvm/layouts.test.ts compares every number
// with the header's macro.
import type { Layout } from './layout.js';
import * as S from './structs.js';

const KVMIO = 0xae;
const NONE = 0;
const WRITE = 1;
const READ = 2;

function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
}
const io = (nr: number) => ioc(NONE, nr, 0);
const ior = (nr: number, l: Layout | number) => ioc(READ, nr, typeof l === 'number' ? l : l.size);
const iow = (nr: number, l: Layout | number) => ioc(WRITE, nr, typeof l === 'number' ? l : l.size);
const iowr = (nr: number, l: Layout | number) => ioc(READ | WRITE, nr, typeof l === 'number' ? l : l.size);

export const KVM = {
  GET_API_VERSION: io(0x00),
  CREATE_VM: io(0x01),
  GET_MSR_INDEX_LIST: iowr(0x02, S.kvm_msr_list),
  CHECK_EXTENSION: io(0x03),
  GET_VCPU_MMAP_SIZE: io(0x04),
  GET_SUPPORTED_CPUID: iowr(0x05, S.kvm_cpuid2),
  CREATE_VCPU: io(0x41),
  GET_DIRTY_LOG: iow(0x42, S.kvm_dirty_log),
  SET_USER_MEMORY_REGION: iow(0x46, S.kvm_userspace_memory_region),
  SET_TSS_ADDR: io(0x47),
  SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  CREATE_IRQCHIP: io(0x60),
  GET_IRQCHIP: iowr(0x62, S.kvm_irqchip),
  SET_IRQCHIP: ior(0x63, S.kvm_irqchip),
  CREATE_PIT2: iow(0x77, S.kvm_pit_config),
  XEN_HVM_CONFIG: iow(0x7a, S.kvm_xen_hvm_config),
  SET_CLOCK: iow(0x7b, S.kvm_clock_data),
  GET_CLOCK: ior(0x7c, S.kvm_clock_data),
  GET_PIT2: ior(0x9f, S.kvm_pit_state2),
  SET_PIT2: iow(0xa0, S.kvm_pit_state2),
  SIGNAL_MSI: iow(0xa5, S.kvm_msi),
  SET_TSC_KHZ: io(0xa2),
  GET_TSC_KHZ: io(0xa3),
  ENABLE_CAP: iow(0xa3, S.kvm_enable_cap),
  KVMCLOCK_CTRL: io(0xad),
  X86_SET_MSR_FILTER: iow(0xc6, S.kvm_msr_filter),
  XEN_HVM_GET_ATTR: iowr(0xc8, S.kvm_xen_hvm_attr),
  XEN_HVM_SET_ATTR: iow(0xc9, S.kvm_xen_hvm_attr),
  XEN_VCPU_GET_ATTR: iowr(0xca, S.kvm_xen_vcpu_attr),
  XEN_VCPU_SET_ATTR: iow(0xcb, S.kvm_xen_vcpu_attr),
  RUN: io(0x80),
  GET_REGS: ior(0x81, S.kvm_regs),
  SET_REGS: iow(0x82, S.kvm_regs),
  GET_SREGS: ior(0x83, S.kvm_sregs),
  SET_SREGS: iow(0x84, S.kvm_sregs),
  GET_MSRS: iowr(0x88, S.kvm_msrs),
  SET_MSRS: iow(0x89, S.kvm_msrs),
  GET_FPU: ior(0x8c, S.kvm_fpu),
  SET_FPU: iow(0x8d, S.kvm_fpu),
  GET_LAPIC: ior(0x8e, S.kvm_lapic_state),
  SET_LAPIC: iow(0x8f, S.kvm_lapic_state),
  SET_CPUID2: iow(0x90, S.kvm_cpuid2),
  GET_CPUID2: iowr(0x91, S.kvm_cpuid2),
  GET_MP_STATE: ior(0x98, S.kvm_mp_state),
  SET_MP_STATE: iow(0x99, S.kvm_mp_state),
  GET_VCPU_EVENTS: ior(0x9f, S.kvm_vcpu_events),
  SET_VCPU_EVENTS: iow(0xa0, S.kvm_vcpu_events),
  GET_DEBUGREGS: ior(0xa1, S.kvm_debugregs),
  SET_DEBUGREGS: iow(0xa2, S.kvm_debugregs),
  GET_XSAVE: ior(0xa4, S.kvm_xsave),
  SET_XSAVE: iow(0xa5, S.kvm_xsave),
  GET_XCRS: ior(0xa6, S.kvm_xcrs),
  SET_XCRS: iow(0xa7, S.kvm_xcrs),
  GET_XSAVE2: ior(0xcf, S.kvm_xsave),
  CLEAR_DIRTY_LOG: iowr(0xc0, S.kvm_clear_dirty_log),
  SET_DEVICE_ATTR: iow(0xe1, S.kvm_device_attr),
  GET_DEVICE_ATTR: iow(0xe2, S.kvm_device_attr),
} as const;

export const KVM_API_VERSION = 12;

/** KVM_CAP_* numbers used here. */
export const Cap = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  MP_STATE: 14,
  XEN_HVM: 38,
  ADJUST_CLOCK: 39,
  VCPU_EVENTS: 41,
  DEBUGREGS: 50,
  XSAVE: 55,
  XCRS: 56,
  GET_TSC_KHZ: 61,
  MAX_VCPUS: 66,
  SYNC_REGS: 74,
  SIGNAL_MSI: 77,
  KVMCLOCK_CTRL: 76,
  MANUAL_DIRTY_LOG_PROTECT2: 168,
  VCPU_ATTRIBUTES: 127,
  IMMEDIATE_EXIT: 136,
  X86_USER_SPACE_MSR: 188,
  X86_MSR_FILTER: 189,
  DIRTY_LOG_RING: 192,
  XSAVE2: 208,
} as const;

/** KVM_EXIT_* reasons. */
export const Exit = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
  XEN: 34,
} as const;

export const EXIT_IO_OUT = 1;
export const KVM_SYNC_X86_REGS = 1;
export const KVM_SYNC_X86_SREGS = 2;
export const KVM_SYNC_X86_EVENTS = 4;
export const KVM_MSR_EXIT_REASON_FILTER = 1 << 2;
/** kvm_userspace_memory_region.flags: track the pages the guest writes (KVM_GET_DIRTY_LOG). */
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
/**
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 options: KVM_GET_DIRTY_LOG only reads the
 * log and KVM_CLEAR_DIRTY_LOG re-arms it per range; a slot starts logging
 * with every page marked dirty instead of write-protecting it all at once.
 */
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1;
export const KVM_DIRTY_LOG_INITIALLY_SET = 2;
export const KVM_MSR_FILTER_READ = 1;
export const KVM_MSR_FILTER_WRITE = 2;
export const KVM_MSR_FILTER_DEFAULT_ALLOW = 0;
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;
export const KVM_MP_STATE = { RUNNABLE: 0, UNINITIALIZED: 1, INIT_RECEIVED: 2, HALTED: 3, SIPI_RECEIVED: 4 } as const;
/** kvm_clock_data.flags: the clock is stable across vCPUs (get) / realtime given (set). */
export const KVM_CLOCK_TSC_STABLE = 2;
export const KVM_CLOCK_HOST_TSC = 8;
/** vCPU device attribute group/attr for the guest TSC offset (asm/kvm.h). */
export const KVM_VCPU_TSC_CTRL = 0;
export const KVM_VCPU_TSC_OFFSET = 0;
/** KVM_XEN_HVM_CONFIG flags and attribute types (kernel transport). */
export const KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL = 1 << 1;
export const KVM_XEN_VCPU_ATTR_TYPE = {
  VCPU_INFO: 0,
  VCPU_TIME_INFO: 1,
  RUNSTATE_ADDR: 2,
  RUNSTATE_CURRENT: 3,
  RUNSTATE_DATA: 4,
  RUNSTATE_ADJUST: 5,
  VCPU_ID: 6,
  TIMER: 7,
  UPCALL_VECTOR: 8,
} as const;
