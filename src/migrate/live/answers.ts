// What the destination says back on a migration connection, a line each:
// `ACK <seq>` once it has applied everything up to the source's SYNC <seq>,
// then one answer, `OK running` (with its share of the downtime as JSON)
// once the guest runs there, or `ERR <message>`.  Written by receive.ts,
// read by send.ts.
import type { Writable } from 'node:stream';

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
