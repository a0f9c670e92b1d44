// The section descriptors this build writes, by name: the inspector decodes
// with them when a file's embedded schema matches, and `xenkvm schema` prints
// them.  Listed here rather than imported from src/xen/machine-state.ts so
// the inspector never loads the KVM or machine code it does not need.
import { defineCpuState, irqchipState, kvmclockState, pitState } from '../kvm/state/index.js';
import { schemaOf, type AnyDescriptor, type SectionSchema } from '../vmstate/index.js';
import { xenEvtchnState, xenHvmState, xenOverlayState, xenTimeState, xenVcpuState } from '../xen/xen-state.js';

/** `cpu` as the machine writes it: with the Xen vCPU state as mandatory subsection `cpu/xen_vcpu`. */
export const inspectorCpuState = defineCpuState({ xen_vcpu: { state: xenVcpuState, optional: false } });

/** What a checkpoint writes, in its order (src/xen/machine-state.ts COMPONENTS). */
export const CURRENT_DESCRIPTORS: readonly AnyDescriptor[] = [
  inspectorCpuState as AnyDescriptor,
  xenOverlayState as AnyDescriptor,
  xenEvtchnState as AnyDescriptor,
  xenHvmState as AnyDescriptor,
  irqchipState as AnyDescriptor,
  kvmclockState as AnyDescriptor,
  xenTimeState as AnyDescriptor,
];

/** Also decoded locally: descriptors of this build that a checkpoint does not write today (XenMachine creates no PIT). */
const OTHER_KNOWN: readonly AnyDescriptor[] = [pitState as AnyDescriptor];

const BY_NAME = new Map([...CURRENT_DESCRIPTORS, ...OTHER_KNOWN].map((d) => [d.name, d]));

export function localDescriptor(name: string): AnyDescriptor | undefined {
  return BY_NAME.get(name);
}

let cached: Record<string, SectionSchema> | null = null;

/** Schemas of every current descriptor, keyed by section name (what `schema --json` prints under `sections`). */
export function currentSchemas(): Record<string, SectionSchema> {
  cached ??= Object.fromEntries(CURRENT_DESCRIPTORS.map((d) => [d.name, schemaOf(d)]));
  return cached;
}
