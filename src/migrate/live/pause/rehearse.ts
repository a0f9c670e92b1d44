// A migration's final round runs with the guest paused, and it runs code the
// rounds before it never ran: reading every component's state, encoding it,
// framing SECTION records, decoding and restoring them.  Run cold, V8
// interprets that code on first use, which made the pause many times longer
// than the same code warm (docs/benchmarks.md, "Log").  So each side
// rehearses its half while the guest still runs, on data of the same shape,
// and throws the result away, several times, because V8 compiles a function
// to machine code only after a few runs, but only as long as that time is
// spent waiting for the other side anyway.
import { machineHeader, writeMachineSections } from '../../sections-out.js';
import { readableSource } from '../../stream/byte-source.js';
import { memorySink } from '../../stream/byte-sink.js';
import { StreamReader } from '../../stream/reader.js';
import { StreamWriter } from '../../stream/writer.js';
import { writeRamChunks } from '../../ram/chunked.js';
import {
  restoreMachineState,
  sampleMachineState,
  saveMachineState,
  type SavedSection,
} from '../../../machine/state.js';
import type { XenMachine } from '../../../machine/machine.js';
import type { DirtyLog } from '../dirty-log.js';
import { assertHostCanRun, SectionCollector } from '../../sections-in.js';
import { Readable } from 'node:stream';

async function writeSections(
  sections: readonly SavedSection[],
  m: XenMachine,
  bitmap?: Uint8Array,
): Promise<Uint8Array> {
  const sink = memorySink();
  const w = await StreamWriter.start(sink, machineHeader(m), { alignPages: false });
  if (bitmap) await writeRamChunks(w, m.ram.chunks, { bitmap, zeroPages: 'list' });
  await writeMachineSections(w, sections);
  await w.end();
  return sink.bytes();
}

/**
 * The source rehearses at least MIN_REHEARSALS times and up to REHEARSALS
 * while the destination keeps it waiting anyway: after 3, perf still caught
 * V8's optimizing compiler at work inside the pause, and 12 in a row added
 * to a small guest's total time (docs/benchmarks.md).  The destination rehearses
 * MIN_REHEARSALS times before any RAM arrives (later, a rehearsal's restore
 * could write guest pages already received), which delays round 0 there.
 */
export const MIN_REHEARSALS = 3;
export const REHEARSALS = 12;

/**
 * Source side, guest running: the dirty log's collect (without effects),
 * a few pages through the dirty-bitmap path, then the sampled state, encoded
 * and framed; beyond MIN_REHEARSALS only while `waiting()` (the destination
 * has not caught up yet).
 */
export async function rehearseSend(m: XenMachine, log: DirtyLog, waiting: () => boolean = () => true): Promise<void> {
  const bitmap = log.newBitmap();
  for (let k = 0; k < REHEARSALS && (k < MIN_REHEARSALS || waiting()); k++) {
    log.rehearseCollect(bitmap);
    bitmap.fill(0);
    bitmap.fill(0xff, 0, Math.min(8, bitmap.length));
    await writeSections(sampleMachineState(m), m, bitmap);
  }
}

/**
 * Destination side, on the fresh machine before any RAM arrives: its own
 * state, through the stream writer and reader, the host check and restore.
 * Harmless: the real restore overwrites every component.
 */
export async function rehearseReceive(m: XenMachine, times = MIN_REHEARSALS): Promise<void> {
  for (let k = 0; k < times; k++) await rehearseReceiveOnce(m);
}

async function rehearseReceiveOnce(m: XenMachine): Promise<void> {
  const bytes = await writeSections(saveMachineState(m), m);
  const reader = await StreamReader.open(readableSource(Readable.from([bytes])), {
    syncRecords: true,
    reuseRamBuffer: true,
  });
  const sections = new SectionCollector('rehearsal');
  for await (const rec of reader) if (rec.kind === 'section') sections.add(rec.section);
  assertHostCanRun(m, sections.cpu0!, 'rehearsal');
  restoreMachineState(m, sections.states);
}
