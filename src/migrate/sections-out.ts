// What every producer of a state stream (snapshot file, live migration,
// its rehearsal) writes the same way: the HEADER describing the machine, and
// one SECTION per component instance.  The reading side is sections-in.ts.
import { packageVersion } from '../version.js';
import { encodeState } from '../vmstate/index.js';
import { saveMachineStateEach, type SavedSection } from '../machine/state.js';
import type { XenMachine } from '../machine/machine.js';
import { sectionSchemas } from '../machine/sections.js';
import type { MachineConfig } from './sections-in.js';
import type { StreamHeader } from './stream/records.js';
import type { StreamWriter } from './stream/writer.js';
import { mark, TRACING } from '../trace.js';

export function machineHeader(m: XenMachine): StreamHeader & { machine: MachineConfig } {
  return {
    producer: `xenkvm ${packageVersion()}`,
    machine: { memBytes: m.ram.size, vcpus: m.handles.length },
    schemas: sectionSchemas(),
  };
}

function writeSection(w: StreamWriter, s: SavedSection): Promise<void> {
  return w.writeSection({
    name: s.name,
    instance: s.instance,
    version: s.desc.version,
    payload: encodeState(s.desc, s.state),
  });
}

export async function writeMachineSections(w: StreamWriter, sections: readonly SavedSection[]): Promise<void> {
  for (const s of sections) await writeSection(w, s);
}

/** Saves and writes a paused machine's sections one by one, so the first is on its way while the next is read. */
export function streamMachineState(w: StreamWriter, m: XenMachine): Promise<void> {
  return saveMachineStateEach(m, async (s) => {
    if (TRACING) mark(`saved.${s.name}.${s.instance}`);
    await writeSection(w, s);
    if (TRACING) mark(`wrote.${s.name}.${s.instance}`);
  });
}
