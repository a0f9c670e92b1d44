// The section descriptors a snapshot writes, in the order it writes and
// restores them: the one list that state.ts (save/restore) and the
// inspector (decode, `xenkvm schema`) share.  Pure: no KVM or machine code.
import { defineCpuState, irqchipState, kvmclockState } from '../kvm/state/index.js';
import { schemaOf, type AnyDescriptor, type SectionSchema, type StateOf } from '../vmstate/index.js';
import { xenEvtchnState, xenHvmState, xenOverlayState, xenTimeState, xenVcpuState } from '../xen/state.js';

/** `cpu` with the Xen vCPU state as its mandatory `cpu/xen_vcpu` subsection. */
export const machineCpuState = defineCpuState({ xen_vcpu: { state: xenVcpuState, optional: false } });
export type MachineCpuState = StateOf<typeof machineCpuState>;

/** Order matters for restore: CPUs, Xen tables, then clocks (see state.ts). */
export const SECTION_DESCRIPTORS = [
  machineCpuState,
  xenOverlayState,
  xenEvtchnState,
  xenHvmState,
  irqchipState,
  kvmclockState,
  xenTimeState,
] as const;

export const SECTION_LIST: readonly AnyDescriptor[] = SECTION_DESCRIPTORS as unknown as readonly AnyDescriptor[];

let schemas: Record<string, SectionSchema> | null = null;
/** The embedded schema of every section, keyed by name: a snapshot's header carries it, `xenkvm schema --json` prints it. */
export function sectionSchemas(): Record<string, SectionSchema> {
  schemas ??= Object.fromEntries(SECTION_LIST.map((d) => [d.name, schemaOf(d)]));
  return schemas;
}
