// The section descriptors this build knows, by name: the inspector decodes
// with them when a file's embedded schema matches, and `xenkvm schema` prints
// them.  What a snapshot writes comes from the machine's one component list
// (machine/sections.ts, pure: no KVM or emulator code).
import { pitState } from '../kvm/state/index.js';
import type { AnyDescriptor, SectionSchema } from '../vmstate/index.js';
import { COMPONENTS, sectionSchemas } from '../machine/sections.js';

/** Also decoded locally: descriptors of this build that a snapshot does not write today (XenMachine creates no PIT). */
const OTHER_KNOWN: readonly AnyDescriptor[] = [pitState as AnyDescriptor];

const BY_NAME = new Map([...COMPONENTS.map((c) => c.desc), ...OTHER_KNOWN].map((d) => [d.name, d]));

export function localDescriptor(name: string): AnyDescriptor | undefined {
  return BY_NAME.get(name);
}

/** Schemas of every section a snapshot writes, keyed by section name (what `schema --json` prints under `sections`). */
export function currentSchemas(): Record<string, SectionSchema> {
  return sectionSchemas();
}
