// The receiving half of a live migration.  Reads the record stream as it
// comes (StreamReader over the socket), creates the machine when the HEADER
// names it, writes RAM records into guest memory as they arrive (a later
// round's page, or its RAM_ZERO, overwrites an earlier copy), decodes the
// sections sent in the final round, and at END restores them.
//
// `receiveMigration` holds the destination's side of the protocol around
// that: an `ACK <seq>` for each round's SYNC, the real-time window from the
// first ACK until the answer is out (pause/realtime.ts), `ERR <message>` on
// any failure (the source then resumes its guest, and the machine is
// destroyed here), and once the caller has started the guest, `OK running`
// with this side's times, then a moment for the source to hang up.
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { FormatError, XenkvmError } from '../../errors.js';
import { checkMachineState, MachineRestore } from '../../machine/state.js';
import { collectYoung } from './pause/gc.js';
import { rehearseReceive } from './pause/rehearse.js';
import { flushTrace, mark, TRACING } from '../../trace.js';
import { realtimeWindow } from './pause/realtime.js';
import { XenMachine } from '../../machine/machine.js';
import { assertHostCanRun, checkMachineConfig, SectionCollector } from '../sections-in.js';
import { applyRamRecordChunks } from '../ram/chunked.js';
import { type ByteSource, isByteSource, readableSource } from '../stream/byte-source.js';
import { StreamReader } from '../stream/reader.js';
import { socketSource } from '../stream/socket-byte-source.js';
import { confirmRunning, refuse, sendAck } from './answers.js';

export interface ReceiveOptions {
  console: (bytes: Uint8Array) => void;
  log: (message: string) => void;
  /** Called once the HEADER is read, with the machine it describes. */
  onHeader?: (info: { producer: string; memBytes: number; vcpus: number }) => void;
  /** Called once the machine exists, before any RAM is read into it (its threads are still starting). */
  onMachine?: (machine: XenMachine) => void;
  /** Called per RAM record with the stream bytes read so far. */
  onProgress?: (bytesRead: number) => void;
  /** Called when the HEADER and then each record has been read: the stream is alive. */
  onRecord?: () => void;
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
  opts.onRecord?.();
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
    const ram = machine.ram.chunks;
    const sections = new SectionCollector('migration stream');
    // Each section is applied as it arrives, while the source still saves
    // and sends the next; the host check comes first, with vCPU 0's state.
    const restore = new MachineRestore(machine, sections.states);
    let hostChecked = false;
    let dataPages = 0;
    let zeroPages = 0;
    for await (const rec of reader) {
      opts.onRecord?.();
      if (rec.kind === 'ram' || rec.kind === 'zero') {
        // Restoring writes guest RAM (time areas): no page may land on top of it.
        if (sections.count > 0)
          throw new FormatError(`migration stream: RAM record at offset ${rec.offset} after the state sections`);
        if (rec.kind === 'ram') dataPages += applyRamRecordChunks(ram, rec);
        else zeroPages += applyRamRecordChunks(ram, rec);
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

/** A migration that did not complete here; the source was told (`ERR <message>`) and keeps its guest. */
export class ReceiveError extends XenkvmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_IO', message, options);
  }
}

/** Where one migration stream comes from, and where the destination's answers go. */
export interface IncomingConnection {
  readonly input: Readable | ByteSource;
  readonly output: Writable;
  /** Whether this side ends `output` when done with it (a socket, not stdout). */
  readonly endOutput: boolean;
}

/**
 * An accepted socket as a migration connection; aborting `signal` destroys
 * it.  A plain socket is read by the kernel straight into a ring
 * (socket-byte-source.ts), TLS as a stream.
 */
export function socketConnection(sock: Socket, plain: boolean, signal: AbortSignal): IncomingConnection {
  const direct = plain ? socketSource(sock) : null;
  const conn = direct ? direct.socket : sock;
  signal.addEventListener('abort', () => conn.destroy(new Error('interrupted')), { once: true });
  return { input: direct ? direct.source : sock, output: conn, endOutput: true };
}

export interface IncomingOptions extends Pick<ReceiveOptions, 'console' | 'log' | 'onHeader'> {
  /** Aborted: the migration fails (the source is told), before the guest starts. */
  signal: AbortSignal;
  /** Called once the source has the confirmation (and has hung up, or had its moment to). */
  onConfirmed?: () => void;
  /** Drop a source that completes no record for this long (default STALL_MS). */
  stallMs?: number;
}

export interface IncomingMigration {
  machine: XenMachine;
  stats: ReceiveStats;
  /**
   * To run right after the guest is started (runToCompletion's onStarted):
   * once a vCPU runs guest code, tells the source.  If the answer cannot be
   * handed over, the source resumes its guest, so this copy is stopped (a
   * fault) instead of running on.
   */
  confirm: () => Promise<void>;
}

/** How long the destination holds back its own start-up work for the source to hang up. */
const SOURCE_GONE_WAIT_MS = 500;

/**
 * A source that completes no record for this long (sends nothing, stops
 * mid-record, or dribbles a few bytes at a time) is dropped.  A healthy
 * source completes a record at least every round of a migration, and a
 * RAM batch (2 MiB) in well under a second on any link worth migrating over.
 */
export const STALL_MS = 10_000;

/** Calls `onStall` once when `alive()` has not been called for `ms`; returns the alive function and a stop. */
function stallWatch(ms: number, onStall: () => void): { alive: () => void; stop: () => void } {
  let last = performance.now();
  const timer = setInterval(
    () => {
      if (performance.now() - last < ms) return;
      clearInterval(timer);
      onStall();
    },
    Math.min(1000, ms / 4),
  );
  timer.unref();
  return { alive: () => void (last = performance.now()), stop: () => clearInterval(timer) };
}

/** Resolves when the peer of `conn` has ended or closed it, or after `ms`. */
function sourceGone(conn: Writable, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      conn.off('end', done);
      conn.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    conn.on('end', done);
    conn.on('close', done);
    if (conn.destroyed || (conn as { readableEnded?: boolean }).readableEnded === true) done();
  });
}

/**
 * The destination's side of one migration over `conn`: receives the machine,
 * restored and ready to start, acknowledging each round.  On any failure
 * tells the source and throws ReceiveError with what it told it.
 */
export async function receiveMigration(conn: IncomingConnection, opts: IncomingOptions): Promise<IncomingMigration> {
  const { output, endOutput } = conn;
  /** Set at the first ACK: ends the real-time window (realtime.ts). */
  let leaveRealtime = null as (() => void) | null;
  let incoming: XenMachine | null = null;
  let received: { machine: XenMachine; stats: ReceiveStats };
  let stalled = false;
  const stallMs = opts.stallMs ?? STALL_MS;
  const stallMessage = `the source sent no complete record for ${(stallMs / 1000).toFixed(0)} s; dropped`;
  const watch = stallWatch(stallMs, () => {
    stalled = true;
    // Tell the source first: ending the reader also ends the connection.
    void refuse(output, stallMessage).finally(() => {
      (output as Writable & { destroy(e?: Error): void }).destroy(new Error('stalled'));
      if ('destroy' in conn.input && typeof conn.input.destroy === 'function') conn.input.destroy();
    });
  });
  try {
    received = await receiveMachine(conn.input, {
      console: opts.console,
      log: opts.log,
      onRecord: watch.alive,
      onMachine: (im) => {
        incoming = im;
      },
      // From the first round's end until the answer is out: the pause comes after one of these (realtime.ts).
      ack: (seq) => {
        sendAck(output, seq);
        leaveRealtime ??= realtimeWindow(incoming?.pauseThreadIds() ?? []);
      },
      onHeader: opts.onHeader,
    });
    mark('received');
    if (opts.signal.aborted) {
      await received.machine.destroy();
      throw new Error('interrupted');
    }
  } catch (e) {
    leaveRealtime?.();
    const msg = opts.signal.aborted
      ? 'interrupted on the destination'
      : stalled
        ? stallMessage
        : e instanceof Error
          ? e.message
          : String(e);
    await refuse(output, msg);
    if (endOutput) output.end();
    throw new ReceiveError(msg, { cause: e });
  } finally {
    watch.stop();
  }
  return { ...received, confirm: confirmation(received, conn, leaveRealtime, opts.onConfirmed) };
}

/** IncomingMigration's `confirm` for `received` over `conn`; `leaveRealtime` ends the real-time window. */
function confirmation(
  received: { machine: XenMachine; stats: ReceiveStats },
  conn: IncomingConnection,
  leaveRealtime: (() => void) | null,
  onConfirmed: (() => void) | undefined,
): () => Promise<void> {
  const { output, endOutput } = conn;
  const m = received.machine;
  const restoreMs = received.stats.restoreMs;
  return (): Promise<void> => {
    const t = performance.now();
    mark('confirm');
    return m
      .whenRunning()
      .then(() => {
        const runningAt = performance.now();
        mark('running');
        const p = confirmRunning(output, {
          restoreMs,
          startMs: runningAt - t,
          answerMs: performance.now() - runningAt,
        });
        mark('okWrite');
        return p;
      })
      .then(
        async () => {
          mark('okWritten');
          leaveRealtime?.();
          if (endOutput) {
            output.end();
            // The source stops its copy once it has read the answer; until it hangs up, leave
            // the CPU to it: opening the control socket next (loading and compiling its
            // modules) took cycles from the source exactly while it waited for them.
            await sourceGone(output, SOURCE_GONE_WAIT_MS);
          }
          flushTrace('destination');
          onConfirmed?.();
        },
        (e: Error) => {
          leaveRealtime?.();
          m.requestStop({
            kind: 'fault',
            detail: `the source did not get the confirmation (${e.message}); it keeps the guest, this copy is discarded`,
          });
        },
      );
  };
}
