// State descriptors of everything KVM holds: `cpu` per vCPU, and the VM-level
// `kvmclock`, `irqchip` and (when the VM has one) `pit`.
export { CPU_SECTION, CPU_VERSION, LAPIC_SIZE, MP_STATES, cpuFields, cpuState, defineCpuState } from './cpu.js';
export type { CpuState } from './cpu.js';
export { KVM_CLOCK_FLAGS, kvmclockState } from './kvmclock.js';
export type { KvmclockState } from './kvmclock.js';
export { IRQCHIP_CHIPS, KVM_IRQCHIP, irqchipState } from './irqchip.js';
export type { IrqchipState } from './irqchip.js';
export { pitState } from './pit.js';
export type { PitState } from './pit.js';
export { MAX_SAVED_MSRS, MSR_IA32_TSC, MSR_IA32_TSC_DEADLINE } from './msrs.js';
export { XSAVE_LEGACY_SIZE, XSAVE_MAX_SIZE } from './xsave.js';
export { MAX_CPUID_ENTRIES } from './cpuid.js';
export { KVM_VCPUEVENT_VALID } from './events.js';
export { bindStruct } from './bind.js';
export type { Binding } from './bind.js';
