// The section descriptors this build writes, by name: the inspector decodes
// with them when a file's embedded schema matches, and `xenkvm schema` prints
// them.  The list is src/machine/sections.ts (pure: no KVM or machine code).
import { pitState } from '../kvm/state/index.js';
import type { AnyDescriptor, SectionSchema } from '../vmstate/index.js';
import { machineCpuState, SECTION_LIST, sectionSchemas } from '../machine/sections.js';

/** `cpu` as the machine writes it: with the Xen vCPU state as mandatory subsection `cpu/xen_vcpu`. */
export const inspectorCpuState = machineCpuState;

/** What a snapshot writes, in its order. */
export const CURRENT_DESCRIPTORS: readonly AnyDescriptor[] = SECTION_LIST;

/** Also decoded locally: descriptors of this build that a snapshot does not write today (XenMachine creates no PIT). */
const OTHER_KNOWN: readonly AnyDescriptor[] = [pitState as AnyDescriptor];

const BY_NAME = new Map([...CURRENT_DESCRIPTORS, ...OTHER_KNOWN].map((d) => [d.name, d]));

export function localDescriptor(name: string): AnyDescriptor | undefined {
  return BY_NAME.get(name);
}

/** Schemas of every current descriptor, keyed by section name (what `schema --json` prints under `sections`). */
export function currentSchemas(): Record<string, SectionSchema> {
  return sectionSchemas();
}
