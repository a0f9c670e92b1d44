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
import { BatchBuffers } from '../ram/write.js';
import { writeRamChunks } from '../ram/chunked.js';
import { writableSink } from '../stream/byte-sink.js';
import { StreamWriter } from '../stream/writer.js';
import { type DestinationTimes, parseConfirmation } from './answers.js';
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
 * round trip of running time, but pages sent in the pause cost downtime:
 * at 256 pages the final round held 100-400 pages (about 1 ms of the
 * pause); at 64, 30-200, for 0.4 ms less pause at 64 and 256 MiB/s and
 * level total time (5-run bench, interleaved).
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
  /** Highest SYNC sequence number sent: an ACK beyond it, or out of turn, is no answer a destination gives. */
  synced = 0;
  constructor(sock: Duplex) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      mark('data');
      this.pending += d;
      for (let nl = this.pending.indexOf('\n'); nl >= 0 && this.answer === null; nl = this.pending.indexOf('\n')) {
        const l = this.pending.slice(0, nl).replace(/\r$/, '');
        this.pending = this.pending.slice(nl + 1);
        const ack = /^ACK (\d{1,15})$/.exec(l);
        const n = ack ? Number(ack[1]) : 0;
        if (!ack) this.answer = l;
        // A destination acknowledges each SYNC once, in order, after it was sent; anything
        // else ends the transfer now, not at a timeout with the guest paused.
        else if (n !== this.acked + 1 || n > this.synced)
          this.answer = `out-of-turn ACK ${n} (acknowledged ${this.acked}, sent ${this.synced})`;
        else this.acked = n;
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
  /**
   * Resolves with what `ready()` returns once that is not null; `ready` is
   * asked first and after every change, and may throw to give up.  Rejects
   * when the peer is gone (`gone(why)` says so) or after `ms` (`late()`).
   */
  async until<T>(ready: () => T | null, ms: number, gone: (why: string) => string, late: () => string): Promise<T> {
    const deadline = performance.now() + ms;
    for (;;) {
      const v = ready();
      if (v !== null) return v;
      if (this.ended !== null) throw new MigrationError(gone(this.ended));
      const left = deadline - performance.now();
      if (left <= 0) throw new MigrationError(late());
      await Promise.race([this.changed(), new Promise((r) => setTimeout(r, left).unref())]);
    }
  }
}

/** MigrateOptions' limits, defaults filled in. */
type Limits = Required<
  Pick<MigrateOptions, 'downtimeMs' | 'maxRounds' | 'timeoutMs' | 'onTimeout' | 'confirmTimeoutMs' | 'stallMs'>
>;

function limitsOf(opts: MigrateOptions): Limits {
  return {
    downtimeMs: opts.downtimeMs ?? 300,
    maxRounds: opts.maxRounds ?? 30,
    timeoutMs: opts.timeoutMs ?? 60_000,
    onTimeout: opts.onTimeout ?? 'pause',
    confirmTimeoutMs: opts.confirmTimeoutMs ?? 30_000,
    stallMs: opts.stallMs ?? 20_000,
  };
}

/**
 * Migrates `machine` over `sock`.  Resolves once the destination confirmed
 * that the guest runs there; the source machine is then left paused (the
 * caller stops it).  Rejects with MigrationError otherwise, the guest running
 * here as before.
 */
export async function migrate(machine: XenMachine, sock: Duplex, opts: MigrateOptions = {}): Promise<MigrationReport> {
  const limits = limitsOf(opts);
  if (machine.status === 'shutdown') throw new MigrationError('the guest has stopped: nothing to migrate');
  const m = new Migration(machine, sock, opts, limits);
  try {
    const writer = await m.sendHeader();
    const converged = await m.precopy(writer);
    await m.finalRound(writer);
    return m.report(converged, await m.confirmation());
  } catch (e) {
    throw m.abandon(e);
  } finally {
    m.close();
  }
}

/**
 * One migration, phase by phase: connected (the constructor listens for the
 * destination's answers, a cancel and a stalled transfer), the HEADER, the
 * pre-copy rounds, the final round with the guest paused, and the
 * destination's answer.  Anything that must end the transfer at once
 * destroys the socket, so that pending writes fail, and leaves its reason in
 * `failure`.
 */
class Migration {
  private readonly wasRunning: boolean;
  private readonly t0: number;
  private readonly answer: PeerAnswer;
  private readonly log: DirtyLog;
  private paused = false;
  private endSent = false;
  private leaveRealtime = (): void => {};
  private failure: string | null = null;
  // Once END is out the destination may already run the guest: a cancel then would risk two copies.
  private readonly onAbort = (): void => {
    if (!this.endSent) this.fail('cancelled');
  };
  private readonly stallTimer: NodeJS.Timeout;

  /** The last SYNC sent; its ACK ends the round. */
  private seq = 0;
  // One set of batch buffers for every round, so the paused one touches no fresh memory.
  private readonly buffers = new BatchBuffers();
  /** The pages of the next round (of the final round once the rounds are done). */
  private bitmap: Uint8Array = new Uint8Array(0);
  private dataPages = 0;
  private zeroPages = 0;
  private sentBytes = 0;
  private sendMs = 0;
  private mbps = 0;
  /** Rounds sent while running, round 0 included. */
  private rounds = 0;
  private dirtyMiBs = 0;
  private lastCollect = 0;
  private lastRoundPages = 0;
  private finalPages = 0;
  // The final round's steps, for the report's phases.
  private pausedAt = 0;
  private pausedDone = 0;
  private pagesDone = 0;
  private endAt = 0;

  constructor(
    private readonly machine: XenMachine,
    private readonly sock: Duplex,
    private readonly opts: MigrateOptions,
    private readonly limits: Limits,
  ) {
    this.wasRunning = machine.status === 'running';
    this.t0 = performance.now();
    this.answer = new PeerAnswer(sock);
    this.log = new DirtyLog(machine);
    opts.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (opts.signal?.aborted) this.onAbort();
    void this.watchForRefusal();
    this.stallTimer = this.watchForStall();
  }

  private fail(why: string): void {
    if (this.failure !== null) return;
    this.failure = why;
    this.sock.destroy();
  }

  private check(): void {
    if (this.failure !== null) throw new MigrationError(this.failure);
  }

  /** The destination answers early only to refuse (ERR) or by going away. */
  private async watchForRefusal(): Promise<void> {
    const answer = this.answer;
    while (this.failure === null && !this.endSent) {
      const l = answer.line();
      // OK may overtake our own flush of END; the final check below reads it.
      if (l !== null && parseConfirmation(l) !== null) return;
      if (l !== null)
        return this.fail(
          l.startsWith('ERR ')
            ? `the destination failed: ${l.slice(4)}`
            : `unexpected answer from the destination before the end of the stream: ${l.slice(0, 200)}`,
        );
      if (answer.gone !== null) return this.endSent ? undefined : this.fail(answer.gone);
      await answer.changed();
    }
  }

  /** A destination that stops reading leaves writes waiting for 'drain' for ever. */
  private watchForStall(): NodeJS.Timeout {
    const sock = this.sock;
    const stallMs = this.limits.stallMs;
    let lastWritten = -1;
    let lastMove = performance.now();
    return setInterval(() => {
      const w = (sock as { bytesWritten?: number }).bytesWritten ?? 0;
      const now = performance.now();
      if (w !== lastWritten || sock.writableLength === 0) {
        lastWritten = w;
        lastMove = now;
      } else if (now - lastMove > stallMs)
        this.fail(`the destination stopped reading for ${Math.round(stallMs / 1000)} s`);
    }, 500);
  }

  /** Phase 1: the HEADER (producer, machine, schemas). */
  sendHeader(): Promise<StreamWriter> {
    return StreamWriter.start(writableSink(this.sock), machineHeader(this.machine), { alignPages: false });
  }

  private tally(s: { dataPages: number; zeroPages: number }): void {
    this.dataPages += s.dataPages;
    this.zeroPages += s.zeroPages;
  }

  // Each round ends with a SYNC and waits for its ACK: the destination has
  // then applied the round, so the bandwidth measured is end to end, and
  // the pause never starts with megabytes still queued in socket buffers
  // (that backlog was most of the downtime: 30-50 ms of a 60 ms pause).

  /** Ends a round with SYNC; awaitAck then waits for its ACK. */
  private endRound(writer: StreamWriter): Promise<void> {
    this.answer.synced = ++this.seq;
    return writer.sync(this.seq);
  }

  private async awaitAck(): Promise<void> {
    const seq = this.seq;
    const ms = this.limits.confirmTimeoutMs;
    await this.answer.until(
      () => {
        if (this.answer.acked >= seq) return true;
        this.check();
        return null;
      },
      ms,
      (gone) => gone,
      () => `the destination did not acknowledge round ${seq} within ${ms} ms`,
    );
  }

  /**
   * Phase 2: round 0, then the pages dirtied meanwhile, round after round,
   * until the rest would fit in the target pause, or the limits end it.
   */
  async precopy(writer: StreamWriter): Promise<MigrationReport['converged']> {
    await this.firstRound(writer);
    for (;;) {
      this.check();
      const bitmap = this.bitmap;
      bitmap.fill(0);
      const dirty = this.log.collect(bitmap);
      const now = performance.now();
      this.dirtyMiBs = (dirty * PAGE_SIZE) / MiB / Math.max((now - this.lastCollect) / 1000, 1e-3);
      this.lastCollect = now;
      const expectedDowntimeMs = ((dirty * PAGE_SIZE) / MiB / Math.max(this.mbps, 1)) * 1000;
      const converged = this.converged(dirty, expectedDowntimeMs, now);
      if (converged) return converged;
      await this.nextRound(writer, dirty, expectedDowntimeMs);
    }
  }

  /** Round 0: everything; the destination's fresh RAM is zero, so zero pages are left out. */
  private async firstRound(writer: StreamWriter): Promise<void> {
    const { machine, log, opts } = this;
    log.start();
    const roundStart = performance.now();
    // Manual dirty logging starting all-dirty (dirty-log.ts): each range is re-armed as round 0 reaches it.
    this.tally(
      await writeRamChunks(writer, machine.ram.chunks, {
        zeroPages: 'omit',
        buffers: this.buffers,
        ...log.rearmBeforeRead(),
      }),
    );
    // While the destination catches up with round 0 (its SYNC is out): warm
    // the final round's code (rehearse.ts), and collect garbage now rather
    // than right before the pause, where V8's sweeping after it took a core
    // from the paused round for 10-15 ms (gc.ts).
    await this.endRound(writer);
    await rehearseSend(machine, log, () => this.answer.acked < this.seq && this.failure === null);
    collectAll();
    await this.awaitAck();
    this.sendMs = performance.now() - roundStart;
    this.sentBytes = writer.position;
    this.mbps = this.sentBytes / MiB / Math.max(this.sendMs / 1000, 1e-3);
    this.rounds = 1;
    this.dirtyMiBs = 0;
    this.lastCollect = performance.now();
    opts.onProgress?.({
      round: 0,
      final: false,
      sentBytes: this.sentBytes,
      dirtyPages: this.dataPages,
      mbps: this.mbps,
      dirtyMiBs: 0,
      expectedDowntimeMs: 0,
    });
    this.bitmap = log.newBitmap();
    this.lastRoundPages = this.dataPages;
  }

  /** Why the rounds stop with `dirty` pages left, or null for another round. */
  private converged(dirty: number, expectedDowntimeMs: number, now: number): MigrationReport['converged'] | null {
    const { downtimeMs, maxRounds, timeoutMs, onTimeout } = this.limits;
    const rounds = this.rounds;
    // Within the target, one more round still pays while each round leaves
    // less than half the pages of the one before (the guest dirties far
    // slower than we send): it costs about expectedDowntimeMs of running
    // time and takes most of those pages out of the pause.  The estimate
    // counts only the pages; the state and the destination's start come
    // on top (at 64 MiB/s a final round of ~900 pages took 6-8 ms of a
    // 20-30 ms pause; one round later it held ~200).
    const worthAnotherRound = dirty > FINAL_PAGES_FLOOR && dirty * 2 < this.lastRoundPages && rounds < maxRounds;
    if (expectedDowntimeMs <= downtimeMs && !worthAnotherRound) return 'downtime';
    if (rounds >= maxRounds || now - this.t0 >= timeoutMs) {
      if (onTimeout === 'cancel')
        throw new MigrationError(
          `did not converge after ${rounds} rounds in ${Math.round(now - this.t0)} ms (${dirty} pages dirty, about ${Math.round(expectedDowntimeMs)} ms to send; limit ${downtimeMs} ms); cancelled, the guest runs on here`,
        );
      return rounds >= maxRounds ? 'max-rounds' : 'timeout';
    }
    return null;
  }

  /** One more round while running: the `dirty` pages collected into the bitmap. */
  private async nextRound(writer: StreamWriter, dirty: number, expectedDowntimeMs: number): Promise<void> {
    const bitmap = this.bitmap;
    this.lastRoundPages = dirty;
    const roundStart = performance.now();
    this.tally(
      await writeRamChunks(writer, this.machine.ram.chunks, {
        bitmap,
        zeroPages: 'list',
        buffers: this.buffers,
        ...this.log.rearmBeforeRead(bitmap),
      }),
    );
    await this.endRound(writer);
    await this.awaitAck();
    this.sendMs += performance.now() - roundStart;
    this.sentBytes = writer.position;
    // Bandwidth over every round so far, so one short round does not swing the estimate.
    this.mbps = this.sentBytes / MiB / Math.max(this.sendMs / 1000, 1e-3);
    this.opts.onProgress?.({
      round: this.rounds,
      final: false,
      sentBytes: this.sentBytes,
      dirtyPages: dirty,
      mbps: this.mbps,
      dirtyMiBs: this.dirtyMiBs,
      expectedDowntimeMs,
    });
    this.rounds++;
  }

  /**
   * Phase 3, the guest paused: the pages dirtied since the last collect plus
   * every page the emulator owns, every SECTION, END.  Tuned step by step
   * (see README, Benchmarks): nothing may be added or reordered here.
   */
  async finalRound(writer: StreamWriter): Promise<void> {
    const { machine, log, opts, bitmap, sock } = this;
    this.check();
    // While the guest still runs, so that no scavenge falls into the pause (gc.ts).
    collectYoung();
    mark('collectedGarbage');
    this.leaveRealtime = realtimeWindow(machine.pauseThreadIds());
    const pausedAt = performance.now();
    this.pausedAt = pausedAt;
    if (this.wasRunning) {
      await machine.pause();
      this.paused = true;
      opts.onPause?.();
    }
    const pausedDone = performance.now();
    markAt('pause', pausedAt);
    markAt('paused', pausedDone);
    // A guest that ended (powered off, crashed) while its memory was copied is
    // not moved: its state is after its last instruction, and it stays ended here.
    if (machine.status === 'shutdown') throw new MigrationError('the guest stopped during the migration');
    // Logging stays on until the answer (close() at the end; abandon() stops
    // it before resuming): switching it off rewrites the memslot, in the pause.
    // Counted as they are merged: a separate count ran cold (first use in the pause).
    const finalPages = log.collect(bitmap) + log.markEmulatorPages(bitmap);
    mark('collected');
    this.tally(await writeRamChunks(writer, machine.ram.chunks, { bitmap, zeroPages: 'list', buffers: this.buffers }));
    const pagesDone = performance.now();
    markAt('pages', pagesDone);
    if (TRACING) mark(`queued.${sock.writableLength}`);
    await streamMachineState(writer, machine);
    await writer.end();
    this.endSent = true;
    const endAt = performance.now();
    markAt('ended', endAt);
    this.sentBytes = writer.position;
    opts.onProgress?.({
      round: this.rounds,
      final: true,
      sentBytes: this.sentBytes,
      dirtyPages: finalPages,
      mbps: this.mbps,
      dirtyMiBs: this.dirtyMiBs,
      expectedDowntimeMs: 0,
    });
    this.pausedDone = pausedDone;
    this.pagesDone = pagesDone;
    this.endAt = endAt;
    this.finalPages = finalPages;
  }

  /** Phase 4: the destination's answer to END, its confirmation (with its times) or ERR; and when it came. */
  async confirmation(): Promise<{ remote: Partial<DestinationTimes>; end: number }> {
    const answer = this.answer;
    const ms = this.limits.confirmTimeoutMs;
    let end = 0;
    const remote = await answer.until(
      () => {
        const l = answer.line();
        if (l === null) return null;
        const r = parseConfirmation(l);
        if (r === null)
          throw new MigrationError(
            l.startsWith('ERR ')
              ? `the destination failed: ${l.slice(4)}`
              : `unexpected answer from the destination: ${l.slice(0, 200)}`,
          );
        end = performance.now();
        return r;
      },
      ms,
      (gone) => `no confirmation from the destination: ${gone}`,
      () => `no confirmation from the destination within ${ms} ms`,
    );
    markAt('answered', end);
    this.leaveRealtime();
    flushTrace('source');
    this.sock.end();
    return { remote, end };
  }

  report(
    converged: MigrationReport['converged'],
    { remote, end }: { remote: Partial<DestinationTimes>; end: number },
  ): MigrationReport {
    const downtime = end - this.pausedAt;
    return {
      totalMs: end - this.t0,
      downtimeMs: downtime,
      ...(remote.answerMs !== undefined ? { guestDowntimeMs: Math.max(0, downtime - remote.answerMs) } : {}),
      bytes: this.sentBytes,
      rounds: this.rounds,
      dataPages: this.dataPages,
      zeroPages: this.zeroPages,
      finalPages: this.finalPages,
      mbps: this.mbps,
      converged,
      phases: {
        pauseMs: this.pausedDone - this.pausedAt,
        finalPagesMs: this.pagesDone - this.pausedDone,
        stateMs: this.endAt - this.pagesDone,
        confirmMs: end - this.endAt,
        ...remote,
      },
    };
  }

  /** After a failure: the guest runs here again.  Returns the error to throw. */
  abandon(e: unknown): MigrationError {
    this.sock.destroy();
    this.log.stop();
    // Before the vCPUs run again: real-time vCPUs running guest code would crowd out the rest.
    this.leaveRealtime();
    if (this.paused) {
      this.machine.resume();
      this.opts.onResume?.();
    }
    if (e instanceof MigrationError) return e;
    return new MigrationError(this.failure ?? (e instanceof Error ? e.message : String(e)), { cause: e });
  }

  close(): void {
    clearInterval(this.stallTimer);
    this.opts.signal?.removeEventListener('abort', this.onAbort);
    this.endSent = true;
    this.failure ??= 'done';
    this.log.close();
  }
}
