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
import { restoreMachineState } from '../../xen/machine-state.js';
import { XenMachine } from '../../xen/machine.js';
import { assertHostCanRun, checkMachineConfig, SectionCollector } from '../incoming.js';
import { applyRamRecord } from '../ram.js';
import { readableSource } from '../source.js';
import { StreamReader } from '../stream-reader.js';

export interface ReceiveOptions {
  console: (bytes: Uint8Array) => void;
  log: (message: string) => void;
  /** Called once the HEADER is read, with the machine it describes. */
  onHeader?: (info: { producer: string; memBytes: number; vcpus: number }) => void;
  /** Called per RAM record with the stream bytes read so far. */
  onProgress?: (bytesRead: number) => void;
}

export interface ReceiveStats {
  bytes: number;
  dataPages: number;
  zeroPages: number;
  sections: number;
  ms: number;
}

/**
 * Reads one migration stream from `input` into a new machine, restored and
 * ready to start.  Throws (with the machine destroyed) on any bad or
 * truncated input; it is then the caller's to `refuse`.
 */
export async function receiveMachine(input: Readable, opts: ReceiveOptions): Promise<{ machine: XenMachine; stats: ReceiveStats }> {
  const t0 = performance.now();
  const reader = await StreamReader.open(readableSource(input), { onWarning: (w) => opts.log(`migration stream: ${w.message}`) });
  const config = checkMachineConfig(reader.header.machine, 'migration stream');
  opts.onHeader?.({ producer: reader.header.producer, ...config });
  const machine = XenMachine.create({ memBytes: config.memBytes, vcpus: config.vcpus, console: opts.console, log: opts.log });
  try {
    const ram = machine.ram.bytes;
    const sections = new SectionCollector('migration stream');
    let dataPages = 0;
    let zeroPages = 0;
    for await (const rec of reader) {
      if (rec.kind === 'ram' || rec.kind === 'zero') {
        if (rec.kind === 'ram') dataPages += applyRamRecord(ram, rec);
        else zeroPages += applyRamRecord(ram, rec);
        opts.onProgress?.(reader.position);
      } else if (rec.kind === 'section') {
        sections.add(rec.section);
      }
    }
    // The sections come last in a migration: the host check (as for a
    // restore) runs once vCPU 0's state is known, before any is written.
    const cpu0 = sections.cpu0;
    if (!cpu0) throw new FormatError('migration stream: no cpu section');
    assertHostCanRun(machine, cpu0, 'migration stream');
    restoreMachineState(machine, sections.states);
    return { machine, stats: { bytes: reader.position, dataPages, zeroPages, sections: sections.count, ms: performance.now() - t0 } };
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

/** Tells the source that the guest runs here.  Rejects if the line cannot be handed over. */
export function confirmRunning(out: Writable): Promise<void> {
  return writeLine(out, 'OK running');
}

/** Tells the source that the migration failed here (best effort). */
export async function refuse(out: Writable, message: string): Promise<void> {
  try {
    await writeLine(out, `ERR ${message.replace(/[\r\n]+/g, ' ').slice(0, 1000)}`);
  } catch {
    /* the source is gone: it resumes on its own */
  }
}

/**
 * After `machine.start()`: resolves once a vCPU thread is really running
 * guest code (thread start-up is most of the destination's share of the
 * downtime), so the confirmation does not claim it early.
 */
export async function waitUntilRunning(machine: XenMachine, timeoutMs = 10_000): Promise<void> {
  const t0 = performance.now();
  while (machine.status !== 'running') {
    if (machine.status === 'shutdown') throw new Error('the guest stopped before it ran');
    if (performance.now() - t0 > timeoutMs) throw new Error(`the guest did not start running within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}
