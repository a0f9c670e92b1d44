// A migration's final round runs with the guest paused, and it runs code the
// rounds before it never ran: reading every component's state, encoding it,
// framing SECTION records, decoding and restoring them.  Run cold, V8
// interprets that code on first use: 60-80 ms of pause measured here, where
// the same code warm takes 3-5 ms.  So each side rehearses its half while
// the guest still runs, on data of the same shape, and throws the result
// away.
import { machineHeader, writeMachineSections } from '../machine-stream.js';
import { readableSource } from '../source.js';
import { memorySink } from '../sink.js';
import { StreamReader } from '../stream-reader.js';
import { StreamWriter } from '../stream-writer.js';
import { writeRam } from '../ram.js';
import { restoreMachineState, sampleMachineState, saveMachineState, type SavedSection } from '../../xen/machine-state.js';
import type { XenMachine } from '../../xen/machine.js';
import { assertHostCanRun, SectionCollector } from '../incoming.js';
import { Readable } from 'node:stream';

async function writeSections(sections: readonly SavedSection[], m: XenMachine, bitmap?: Uint8Array): Promise<Uint8Array> {
  const sink = memorySink();
  const w = await StreamWriter.start(sink, machineHeader(m), { alignPages: false });
  if (bitmap) await writeRam(w, m.ram.bytes, { bitmap, zeroPages: 'list' });
  await writeMachineSections(w, sections);
  await w.end();
  return sink.bytes();
}

/** Source side, guest running: sample the state, encode and frame it, scan an (empty) dirty bitmap. */
export async function rehearseSend(m: XenMachine, emptyBitmap: Uint8Array): Promise<void> {
  await writeSections(sampleMachineState(m), m, emptyBitmap);
}

/**
 * Destination side, on the fresh machine before any RAM arrives: its own
 * state, through the stream writer and reader, the host check and restore.
 * Harmless: the real restore overwrites every component.
 */
export async function rehearseReceive(m: XenMachine): Promise<void> {
  const bytes = await writeSections(saveMachineState(m), m);
  const reader = await StreamReader.open(readableSource(Readable.from([bytes])), { syncRecords: true, reuseRamBuffer: true });
  const sections = new SectionCollector('rehearsal');
  for await (const rec of reader) if (rec.kind === 'section') sections.add(rec.section);
  assertHostCanRun(m, sections.cpu0!, 'rehearsal');
  restoreMachineState(m, sections.states);
}
