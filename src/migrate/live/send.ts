// The sending half of a live migration (pre-copy).  Over one connected
// duplex stream it writes the same record stream a snapshot file holds:
//
//   HEADER (producer, machine {memBytes, vcpus}, schemas)
//   round 0: every non-zero page          (guest running, dirty logging on)
//   round k: the pages dirtied meanwhile, zero pages listed as RAM_ZERO
//   final:   pause; the last dirty pages plus every emulator-owned page;
//            every SECTION (saveMachineState); END
//
// and then reads one line back on the same stream: `OK running` (with the
// destination's restore and start times as JSON) once the destination runs
// the guest, or `ERR <message>`.  Only an OK lets the source
// go; anything else (an ERR, end of stream, a broken connection, no answer in
// time, a cancel) resumes the source guest if this paused it, and fails.
//
// Rounds stop when the pages still dirty would take less than `downtimeMs` to
// send at the bandwidth measured so far, or after `maxRounds` rounds or
// `timeoutMs`, when `onTimeout` decides: 'pause' finishes anyway (a longer
// pause), 'cancel' gives up and leaves the guest running here.
import type { Duplex } from 'node:stream';
import { XenkvmError } from '../../errors.js';
import type { XenMachine } from '../../machine/machine.js';
import { PAGE_SIZE } from '../stream/format.js';
import { machineHeader, streamMachineState } from '../sections-out.js';
import { BatchBuffers, writeRam } from '../ram/write.js';
import { writableSink } from '../stream/byte-sink.js';
import { StreamWriter } from '../stream/writer.js';
import { parseConfirmation } from './receive.js';
import { DirtyLog } from './dirty-log.js';
import { rehearseSend } from './pause/rehearse.js';
import { collectAll, collectYoung } from './pause/gc.js';
import { flushTrace, mark, markAt, TRACING } from '../../trace.js';
import { realtimeWindow } from './pause/realtime.js';

export interface RoundProgress {
  /** 0 = the full copy; the final (paused) round is reported with `final: true`. */
  round: number;
  final: boolean;
  /** Stream bytes sent so far, all rounds. */
  sentBytes: number;
  /** Pages this round sends. */
  dirtyPages: number;
  /** Bandwidth measured so far, MiB/s. */
  mbps: number;
  /** How fast the guest dirtied pages during the previous round, MiB/s. */
  dirtyMiBs: number;
  /** Time the pages still dirty would take to send: the pause if we stopped now. */
  expectedDowntimeMs: number;
}

export interface MigrationReport {
  totalMs: number;
  /** From the pause to the destination's confirmation. */
  downtimeMs: number;
  /**
   * From the pause to the guest running on the destination: `downtimeMs`
   * less the destination's time from its vCPU running to its answer sent,
   * so no clock is compared across hosts; the answer's one-way trip is still
   * in it.  Absent when the destination does not report that time.
   */
  guestDowntimeMs?: number;
  bytes: number;
  /** Rounds while running (round 0 included), not counting the final one. */
  rounds: number;
  dataPages: number;
  zeroPages: number;
  /** Pages sent while paused. */
  finalPages: number;
  mbps: number;
  /** Why iteration stopped. */
  converged: 'downtime' | 'max-rounds' | 'timeout';
  /**
   * Where the downtime went: stopping the vCPUs, the last dirty pages, saving
   * and sending the state, then waiting for the answer, of which the
   * destination reports its restore and its start.
   */
  phases: {
    pauseMs: number;
    finalPagesMs: number;
    stateMs: number;
    confirmMs: number;
    restoreMs?: number;
    startMs?: number;
    answerMs?: number;
  };
}

export interface MigrateOptions {
  /** Target pause; default 300 ms. */
  downtimeMs?: number;
  /** Default 30. */
  maxRounds?: number;
  /** Limit on the iterative phase; default 60 s. */
  timeoutMs?: number;
  /** At maxRounds/timeout: 'pause' (default) finishes anyway, 'cancel' gives up. */
  onTimeout?: 'pause' | 'cancel';
  /** How long to wait for the destination's answer after END; default 30 s. */
  confirmTimeoutMs?: number;
  /** The destination stopped reading for this long: give up; default 20 s. */
  stallMs?: number;
  onProgress?: (p: RoundProgress) => void;
  /** Aborting cancels the migration (until END is sent) and resumes the guest. */
  signal?: AbortSignal;
  /** Called when the guest is paused for the final round, and if it is resumed after a failure. */
  onPause?: () => void;
  onResume?: () => void;
}

/** A migration that did not complete; the source guest is running (or as paused as it was before). */
export class MigrationError extends XenkvmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_IO', message, options);
  }
}

const MiB = 1 << 20;
/**
 * Final rounds of up to this many pages (256 KiB) are not worth another
 * pre-copy round (see worthAnotherRound).  Each round costs a SYNC/ACK
 * round trip of running time, but pages sent in the pause cost downtime;
 * 64 gave a shorter pause than 256 at level total time (chosen by
 * `npm run bench -- migrate`; see docs/benchmarks.md, "Log").
 */
const FINAL_PAGES_FLOOR = 64;

/**
 * Reads what the destination says on the way back: `ACK <seq>` lines (it has
 * applied everything up to our SYNC <seq>) and then its one answer line
 * (`OK running ...` or `ERR ...`).  Fails the transfer early when the peer
 * answers before the end (ERR) or goes away.
 */
class PeerAnswer {
  private pending = '';
  private answer: string | null = null;
  private ended: string | null = null;
  private waiters: Array<() => void> = [];
  /** Highest SYNC sequence number acknowledged. */
  acked = 0;
  constructor(sock: Duplex) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      mark('data');
      this.pending += d;
      for (let nl = this.pending.indexOf('\n'); nl >= 0 && this.answer === null; nl = this.pending.indexOf('\n')) {
        const l = this.pending.slice(0, nl).replace(/\r$/, '');
        this.pending = this.pending.slice(nl + 1);
        const ack = /^ACK (\d{1,15})$/.exec(l);
        if (ack) this.acked = Math.max(this.acked, Number(ack[1]));
        else this.answer = l;
      }
      // A peer that babbles without newlines: its text is the answer (and not OK).
      if (this.answer === null && this.pending.length > 4096) this.answer = this.pending.slice(0, 200);
      this.wake();
    });
    sock.on('end', () => this.close('the destination closed the connection'));
    sock.on('close', () => this.close('the connection closed'));
    sock.on('error', (e: Error) => this.close(`connection error: ${e.message}`));
  }
  private close(why: string): void {
    this.ended ??= why;
    this.wake();
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  /** The answer line, if it has arrived. */
  line(): string | null {
    return this.answer;
  }
  /** Why no (more) answer can come, or null. */
  get gone(): string | null {
    return this.ended;
  }
  changed(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }
}

/**
 * Migrates `machine` over `sock`.  Resolves once the destination confirmed
 * that the guest runs there; the source machine is then left paused (the
 * caller stops it).  Rejects with MigrationError otherwise, the guest running
 * here as before.
 */
export async function migrate(machine: XenMachine, sock: Duplex, opts: MigrateOptions = {}): Promise<MigrationReport> {
  const downtimeMs = opts.downtimeMs ?? 300;
  const maxRounds = opts.maxRounds ?? 30;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const onTimeout = opts.onTimeout ?? 'pause';
  const confirmTimeoutMs = opts.confirmTimeoutMs ?? 30_000;
  const stallMs = opts.stallMs ?? 20_000;
  if (machine.status === 'shutdown') throw new MigrationError('the guest has stopped: nothing to migrate');
  const wasRunning = machine.status === 'running';

  const t0 = performance.now();
  const answer = new PeerAnswer(sock);
  const log = new DirtyLog(machine);
  let paused = false;
  let pausedAt = 0;
  let endSent = false;
  let leaveRealtime = (): void => {};
  // Anything that must end the transfer at once destroys the socket: pending writes then fail.
  let failure: string | null = null;
  const fail = (why: string): void => {
    if (failure !== null) return;
    failure = why;
    sock.destroy();
  };
  // Once END is out the destination may already run the guest: a cancel then would risk two copies.
  const onAbort = (): void => {
    if (!endSent) fail('cancelled');
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  // The destination answers early only to refuse (ERR) or by going away.
  const watchAnswer = (async () => {
    while (failure === null && !endSent) {
      const l = answer.line();
      // OK may overtake our own flush of END; the final check below reads it.
      if (l !== null && parseConfirmation(l) !== null) return;
      if (l !== null)
        return fail(
          l.startsWith('ERR ')
            ? `the destination failed: ${l.slice(4)}`
            : `unexpected answer from the destination before the end of the stream: ${l.slice(0, 200)}`,
        );
      if (answer.gone !== null) return endSent ? undefined : fail(answer.gone);
      await answer.changed();
    }
  })();
  // A destination that stops reading leaves writes waiting for 'drain' for ever.
  let lastWritten = -1;
  let lastMove = performance.now();
  const stallTimer = setInterval(() => {
    const w = (sock as { bytesWritten?: number }).bytesWritten ?? 0;
    const now = performance.now();
    if (w !== lastWritten || sock.writableLength === 0) {
      lastWritten = w;
      lastMove = now;
    } else if (now - lastMove > stallMs) fail(`the destination stopped reading for ${Math.round(stallMs / 1000)} s`);
  }, 500);

  const why = (e: unknown): string => failure ?? (e instanceof Error ? e.message : String(e));
  try {
    const writer = await StreamWriter.start(writableSink(sock), machineHeader(machine), { alignPages: false });
    const ram = machine.ram.bytes;
    // One set of batch buffers for every round, so the paused one touches no fresh memory.
    const buffers = new BatchBuffers();
    let dataPages = 0;
    let zeroPages = 0;
    const tally = (s: { dataPages: number; zeroPages: number }): void => {
      dataPages += s.dataPages;
      zeroPages += s.zeroPages;
    };
    // Each round ends with a SYNC and waits for its ACK: the destination has
    // then applied the round, so the bandwidth measured is end to end, and
    // the pause never starts with megabytes still queued in socket buffers
    // (that backlog was once most of the downtime; docs/benchmarks.md).
    let seq = 0;
    /** Ends a round with SYNC; syncRound then waits for its ACK. */
    const endRound = (): Promise<void> => writer.sync(++seq);
    const syncRound = async (alreadyEnded = false): Promise<void> => {
      if (!alreadyEnded) await endRound();
      const deadline = performance.now() + confirmTimeoutMs;
      while (answer.acked < seq) {
        if (failure !== null) throw new MigrationError(failure);
        if (answer.gone !== null) throw new MigrationError(answer.gone);
        const left = deadline - performance.now();
        if (left <= 0)
          throw new MigrationError(`the destination did not acknowledge round ${seq} within ${confirmTimeoutMs} ms`);
        await Promise.race([answer.changed(), new Promise((r) => setTimeout(r, left).unref())]);
      }
    };
    log.start();
    // Round 0: everything; the destination's fresh RAM is zero, so zero pages are left out.
    let roundStart = performance.now();
    // Manual dirty logging starting all-dirty (dirty-log.ts): each range is re-armed as round 0 reaches it.
    tally(await writeRam(writer, ram, { zeroPages: 'omit', buffers, ...log.rearmBeforeRead() }));
    // While the destination catches up with round 0 (its SYNC is out): warm
    // the final round's code (rehearse.ts), and collect garbage now rather
    // than right before the pause, where V8's sweeping after it took a core
    // from the paused round (gc.ts).
    await endRound();
    await rehearseSend(machine, log, () => answer.acked < seq && failure === null);
    collectAll();
    await syncRound(true);
    let sendMs = performance.now() - roundStart;
    let sentBytes = writer.position;
    let mbps = sentBytes / MiB / Math.max(sendMs / 1000, 1e-3);
    let rounds = 1;
    let dirtyMiBs = 0;
    let lastCollect = performance.now();
    opts.onProgress?.({
      round: 0,
      final: false,
      sentBytes,
      dirtyPages: dataPages,
      mbps,
      dirtyMiBs: 0,
      expectedDowntimeMs: 0,
    });
    let bitmap = log.newBitmap();
    let lastRoundPages = dataPages;
    let converged: MigrationReport['converged'];
    for (;;) {
      if (failure !== null) throw new MigrationError(failure);
      bitmap.fill(0);
      const dirty = log.collect(bitmap);
      const now = performance.now();
      dirtyMiBs = (dirty * PAGE_SIZE) / MiB / Math.max((now - lastCollect) / 1000, 1e-3);
      lastCollect = now;
      const expectedDowntimeMs = ((dirty * PAGE_SIZE) / MiB / Math.max(mbps, 1)) * 1000;
      // Within the target, one more round still pays while each round leaves
      // less than half the pages of the one before (the guest dirties far
      // slower than we send): it costs about expectedDowntimeMs of running
      // time and takes most of those pages out of the pause.  The estimate
      // counts only the pages; the state and the destination's start come
      // on top (docs/migration.md, "Pre-copy rounds"; figures in
      // docs/benchmarks.md).
      const worthAnotherRound = dirty > FINAL_PAGES_FLOOR && dirty * 2 < lastRoundPages && rounds < maxRounds;
      if (expectedDowntimeMs <= downtimeMs && !worthAnotherRound) {
        converged = 'downtime';
        break;
      }
      if (rounds >= maxRounds || now - t0 >= timeoutMs) {
        converged = rounds >= maxRounds ? 'max-rounds' : 'timeout';
        if (onTimeout === 'cancel')
          throw new MigrationError(
            `did not converge after ${rounds} rounds in ${Math.round(now - t0)} ms (${dirty} pages dirty, about ${Math.round(expectedDowntimeMs)} ms to send; limit ${downtimeMs} ms); cancelled, the guest runs on here`,
          );
        break;
      }
      lastRoundPages = dirty;
      roundStart = performance.now();
      tally(await writeRam(writer, ram, { bitmap, zeroPages: 'list', buffers, ...log.rearmBeforeRead(bitmap) }));
      await syncRound();
      sendMs += performance.now() - roundStart;
      sentBytes = writer.position;
      // Bandwidth over every round so far, so one short round does not swing the estimate.
      mbps = sentBytes / MiB / Math.max(sendMs / 1000, 1e-3);
      opts.onProgress?.({
        round: rounds,
        final: false,
        sentBytes,
        dirtyPages: dirty,
        mbps,
        dirtyMiBs,
        expectedDowntimeMs,
      });
      rounds++;
    }

    // Final round, paused: pages dirtied since the last collect, plus every page the emulator owns.
    if (failure !== null) throw new MigrationError(failure);
    // While the guest still runs, so that no scavenge falls into the pause (gc.ts).
    collectYoung();
    mark('collectedGarbage');
    leaveRealtime = realtimeWindow(machine.pauseThreadIds());
    pausedAt = performance.now();
    if (wasRunning) {
      await machine.pause();
      paused = true;
      opts.onPause?.();
    }
    const pausedDone = performance.now();
    markAt('pause', pausedAt);
    markAt('paused', pausedDone);
    // Logging stays on until the answer (close() in finally; the catch stops
    // it before resuming): switching it off rewrites the memslot, in the pause.
    // Counted as they are merged: a separate count ran cold (first use in the pause).
    const finalPages = log.collect(bitmap) + log.markEmulatorPages(bitmap);
    mark('collected');
    tally(await writeRam(writer, ram, { bitmap, zeroPages: 'list', buffers }));
    const pagesDone = performance.now();
    markAt('pages', pagesDone);
    if (TRACING) mark(`queued.${sock.writableLength}`);
    await streamMachineState(writer, machine);
    await writer.end();
    endSent = true;
    const endAt = performance.now();
    markAt('ended', endAt);
    sentBytes = writer.position;
    opts.onProgress?.({
      round: rounds,
      final: true,
      sentBytes,
      dirtyPages: finalPages,
      mbps,
      dirtyMiBs,
      expectedDowntimeMs: 0,
    });

    // The answer.
    const deadline = performance.now() + confirmTimeoutMs;
    let remote: ReturnType<typeof parseConfirmation> = null;
    for (;;) {
      const l = answer.line();
      if (l !== null) {
        remote = parseConfirmation(l);
        if (remote !== null) break;
        throw new MigrationError(
          l.startsWith('ERR ')
            ? `the destination failed: ${l.slice(4)}`
            : `unexpected answer from the destination: ${l.slice(0, 200)}`,
        );
      }
      if (answer.gone !== null) throw new MigrationError(`no confirmation from the destination: ${answer.gone}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new MigrationError(`no confirmation from the destination within ${confirmTimeoutMs} ms`);
      await Promise.race([answer.changed(), new Promise((r) => setTimeout(r, left).unref())]);
    }
    const end = performance.now();
    markAt('answered', end);
    leaveRealtime();
    flushTrace('source');
    sock.end();
    const downtime = end - pausedAt;
    return {
      totalMs: end - t0,
      downtimeMs: downtime,
      ...(remote?.answerMs !== undefined ? { guestDowntimeMs: Math.max(0, downtime - remote.answerMs) } : {}),
      bytes: sentBytes,
      rounds,
      dataPages,
      zeroPages,
      finalPages,
      mbps,
      converged,
      phases: {
        pauseMs: pausedDone - pausedAt,
        finalPagesMs: pagesDone - pausedDone,
        stateMs: endAt - pagesDone,
        confirmMs: end - endAt,
        ...(remote ?? {}),
      },
    };
  } catch (e) {
    sock.destroy();
    log.stop();
    // Before the vCPUs run again: real-time vCPUs running guest code would crowd out the rest.
    leaveRealtime();
    if (paused) {
      machine.resume();
      opts.onResume?.();
    }
    if (e instanceof MigrationError) throw e;
    throw new MigrationError(why(e), { cause: e });
  } finally {
    clearInterval(stallTimer);
    opts.signal?.removeEventListener('abort', onAbort);
    endSent = true;
    failure ??= 'done';
    log.close();
    void watchAnswer;
  }
}
