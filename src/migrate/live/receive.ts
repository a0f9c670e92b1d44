// The receiving half of a live migration.  Reads the record stream as it
// comes (StreamReader over the socket), creates the machine when the HEADER
// names it, writes RAM records into guest memory as they arrive (a later
// round's page, or its RAM_ZERO, overwrites an earlier copy), decodes the
// sections sent in the final round, and at END restores them.  The caller
// then starts the guest and confirms with `confirmRunning`; on any failure
// `refuse` tells the source (`ERR <message>`) so that it resumes its guest,
// and the machine is destroyed here.
import type { Readable, Writable } from 'node:stream';
import { FormatError } from '../../errors.js';
import { checkMachineState, MachineRestore } from '../../machine/state.js';
import { collectYoung } from './pause/gc.js';
import { rehearseReceive } from './pause/rehearse.js';
import { mark, TRACING } from '../../trace.js';
import { XenMachine } from '../../machine/machine.js';
import { assertHostCanRun, checkMachineConfig, SectionCollector } from '../sections-in.js';
import { applyRamRecord } from '../ram/write.js';
import { type ByteSource, isByteSource, readableSource } from '../stream/byte-source.js';
import { StreamReader } from '../stream/reader.js';

export interface ReceiveOptions {
  console: (bytes: Uint8Array) => void;
  log: (message: string) => void;
  /** Called once the HEADER is read, with the machine it describes. */
  onHeader?: (info: { producer: string; memBytes: number; vcpus: number }) => void;
  /** Called once the machine exists, before any RAM is read into it (its threads are still starting). */
  onMachine?: (machine: XenMachine) => void;
  /** Called per RAM record with the stream bytes read so far. */
  onProgress?: (bytesRead: number) => void;
  /** Answers a SYNC record (everything before it is applied): write `ACK <seq>` to the source. */
  ack: (seq: number) => void;
}

export interface ReceiveStats {
  bytes: number;
  dataPages: number;
  zeroPages: number;
  sections: number;
  ms: number;
  /** From the END record to the machine restored, ready to start: this side's first share of the downtime. */
  restoreMs: number;
}

/**
 * Reads one migration stream from `input` into a new machine, restored and
 * ready to start.  Throws (with the machine destroyed) on any bad or
 * truncated input; it is then the caller's to `refuse`.
 */
export async function receiveMachine(
  input: Readable | ByteSource,
  opts: ReceiveOptions,
): Promise<{ machine: XenMachine; stats: ReceiveStats }> {
  const t0 = performance.now();
  const reader = await StreamReader.open(isByteSource(input) ? input : readableSource(input), {
    onWarning: (w) => opts.log(`migration stream: ${w.message}`),
    reuseRamBuffer: true,
    syncRecords: true,
  });
  const config = checkMachineConfig(reader.header.machine, 'migration stream');
  opts.onHeader?.({ producer: reader.header.producer, ...config });
  const machine = XenMachine.create({
    memBytes: config.memBytes,
    vcpus: config.vcpus,
    console: opts.console,
    log: opts.log,
    incoming: true,
  });
  opts.onMachine?.(machine);
  try {
    // While round 0 arrives, not while the guest is paused.
    await rehearseReceive(machine);
    const ram = machine.ram.bytes;
    const sections = new SectionCollector('migration stream');
    // Each section is applied as it arrives, while the source still saves
    // and sends the next; the host check comes first, with vCPU 0's state.
    const restore = new MachineRestore(machine, sections.states);
    let hostChecked = false;
    let dataPages = 0;
    let zeroPages = 0;
    for await (const rec of reader) {
      if (rec.kind === 'ram' || rec.kind === 'zero') {
        // Restoring writes guest RAM (time areas): no page may land on top of it.
        if (sections.count > 0)
          throw new FormatError(`migration stream: RAM record at offset ${rec.offset} after the state sections`);
        if (rec.kind === 'ram') dataPages += applyRamRecord(ram, rec);
        else zeroPages += applyRamRecord(ram, rec);
        if (TRACING) mark(`${rec.kind}.${rec.pfns.length}`);
        opts.onProgress?.(reader.position);
      } else if (rec.kind === 'section') {
        if (TRACING) mark(`sec.${rec.section.name}.${rec.section.instance}`);
        sections.add(rec.section);
        if (!hostChecked && sections.cpu0) {
          assertHostCanRun(machine, sections.cpu0, 'migration stream');
          hostChecked = true;
        }
        if (hostChecked) restore.advance();
        if (TRACING) mark(`applied.${rec.section.name}.${rec.section.instance}`);
      } else if (rec.kind === 'sync') {
        if (TRACING) mark(`sync.${rec.seq}`);
        opts.ack(rec.seq);
        // The source may pause now: the final round should find the young generation empty (gc.ts).
        collectYoung();
      }
    }
    const endAt = performance.now();
    mark('end');
    if (!hostChecked) throw new FormatError('migration stream: no cpu section');
    // Sections were applied as they came, to a machine that has not run; the
    // whole is checked before the last is applied and long before it may start.
    checkMachineState(sections.states, config, 'migration stream');
    restore.finish();
    const done = performance.now();
    mark('restored');
    return {
      machine,
      stats: {
        bytes: reader.position,
        dataPages,
        zeroPages,
        sections: sections.count,
        ms: done - t0,
        restoreMs: done - endAt,
      },
    };
  } catch (e) {
    await machine.destroy();
    throw e;
  }
}

function writeLine(out: Writable, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (out.destroyed || !out.writable) return reject(new Error('the connection to the source is closed'));
    out.write(`${line}\n`, (err) => (err ? reject(err) : resolve()));
  });
}

/** Acknowledges a SYNC (best effort: a broken connection shows up on the next read or answer). */
export function sendAck(out: Writable, seq: number): void {
  if (!out.destroyed && out.writable) out.write(`ACK ${seq}\n`);
}

/** This side's share of the downtime, sent with the confirmation for the source's report. */
export interface DestinationTimes {
  restoreMs: number;
  /** From start() to a vCPU running guest code. */
  startMs: number;
  /** From a vCPU running guest code to this answer handed to the socket. */
  answerMs: number;
}

const OK = 'OK running';

/** Tells the source that the guest runs here.  Rejects if the line cannot be handed over. */
export function confirmRunning(out: Writable, times?: DestinationTimes): Promise<void> {
  return writeLine(out, times ? `${OK} ${JSON.stringify(times)}` : OK);
}

/** The destination's times if `line` is its confirmation (`OK running` with optional JSON), else null. */
export function parseConfirmation(line: string): Partial<DestinationTimes> | null {
  if (line === OK) return {};
  if (!line.startsWith(`${OK} {`)) return null;
  try {
    const v = JSON.parse(line.slice(OK.length + 1)) as Record<string, unknown>;
    const out: Partial<DestinationTimes> = {};
    if (typeof v['restoreMs'] === 'number') out.restoreMs = v['restoreMs'];
    if (typeof v['startMs'] === 'number') out.startMs = v['startMs'];
    if (typeof v['answerMs'] === 'number') out.answerMs = v['answerMs'];
    return out;
  } catch {
    return {};
  }
}

/** Tells the source that the migration failed here (best effort). */
export async function refuse(out: Writable, message: string): Promise<void> {
  try {
    await writeLine(out, `ERR ${message.replace(/[\r\n]+/g, ' ').slice(0, 1000)}`);
  } catch {
    /* the source is gone: it resumes on its own */
  }
}
