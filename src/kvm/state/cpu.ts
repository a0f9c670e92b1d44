// The `cpu` section: everything KVM holds for one vCPU.  Fields are listed
// in restore order (see putCpuState in ../cpu-state-io.ts for why).
//
// The Xen layer adds its `cpu/xen_vcpu` subsection without editing this file:
//   export const cpuState = defineCpuState({ xen_vcpu: { state: xenVcpuState, optional: false } });
import { bytes, defineState, enumOf, struct, u32 } from '../../vmstate/index.js';
import type { StateDefinition, StateOf, SubDescriptors } from '../../vmstate/index.js';
import { KVM_MP_STATE } from '../ioctls.js';
import { kvm_lapic_state } from '../structs.js';
import { cpuidFields } from './cpuid.js';
import { debugregsFields } from './debugregs.js';
import { eventsFields } from './events.js';
import { msrsFields } from './msrs.js';
import { regsFields } from './regs.js';
import { sregsFields } from './sregs.js';
import { xcrsFields, xsaveFields } from './xsave.js';

/** x86 values of kvm_mp_state (AP_RESET_HOLD is SEV-ES, SUSPENDED is Xen's SCHEDOP_shutdown(suspend) in kernel Xen). */
export const MP_STATES = { ...KVM_MP_STATE, AP_RESET_HOLD: 9, SUSPENDED: 10 } as const;

export const LAPIC_SIZE = kvm_lapic_state.size;

/** The fields of `cpu`, version 1, for descriptors that add subsections. */
export const cpuFields = {
  /** KVM_GET_TSC_KHZ: the guest's TSC frequency; the destination must match or scale to it. */
  tsc_khz: u32(),
  ...cpuidFields,
  mp_state: enumOf(u32, MP_STATES),
  regs: struct(regsFields),
  sregs: struct(sregsFields),
  ...xsaveFields,
  ...xcrsFields,
  debugregs: struct(debugregsFields),
  /** struct kvm_lapic_state: the APIC register page as KVM lays it out. */
  lapic: bytes(LAPIC_SIZE),
  ...msrsFields,
  events: struct(eventsFields),
};

export const CPU_SECTION = 'cpu';
export const CPU_VERSION = 1;

type CpuSubsections<M extends SubDescriptors> = StateDefinition<typeof cpuFields, M>['subsections'];

/** The `cpu` descriptor with the given subsections (named `cpu/<key>`). */
export function defineCpuState<const M extends SubDescriptors = {}>(subsections?: CpuSubsections<M>) {
  return defineState<typeof cpuFields, M>({ name: CPU_SECTION, version: CPU_VERSION, fields: cpuFields, subsections });
}

/** `cpu` without subsections: what the KVM layer reads and writes. */
export const cpuState = defineCpuState();
export type CpuState = StateOf<typeof cpuState>;
