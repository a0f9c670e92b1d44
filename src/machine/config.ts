// The machine a stream's HEADER describes, checked.  Kept free of the
// emulator's modules so that a restore can check it (and map guest memory
// for it) while those are still loading.
import { FormatError } from '../errors.js';
import { memSizeProblem } from '../xen/memory/layout.js';

/** Most vCPUs a machine may have (XenMachine.create refuses more). */
export const MAX_VCPUS = 8;

export interface MachineConfig {
  memBytes: number;
  vcpus: number;
}

/** The HEADER's machine configuration, checked; `where` prefixes the error. */
export function checkMachineConfig(machine: unknown, where: string): MachineConfig {
  const c = machine as Partial<MachineConfig> | null;
  const ok =
    c !== null &&
    typeof c === 'object' &&
    typeof c.memBytes === 'number' &&
    memSizeProblem(c.memBytes) === null &&
    Number.isInteger(c.vcpus) &&
    c.vcpus! >= 1 &&
    c.vcpus! <= MAX_VCPUS;
  if (!ok) throw new FormatError(`${where}: the machine configuration in the header is invalid`);
  return { memBytes: c.memBytes!, vcpus: c.vcpus! };
}
