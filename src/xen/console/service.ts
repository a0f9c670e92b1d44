// What the console backend does, without threads or I/O: moves guest output
// from the ring into the console log (and hands it to the caller to print),
// and moves input the user typed into the guest's input ring.
//
// Input is queued here first, up to PENDING_INPUT_MAX bytes: a guest that
// stops reading its console must not make the emulator wait, so the queue
// is bounded and `queueInput` accepts only what fits.  Whoever feeds it
// decides what happens to the rest (the run's stdin stops being read until
// the guest catches up; a control-socket client is told how much was taken).
// The queue is part of the machine's state (state.ts): input typed just
// before a snapshot reaches the guest after the restore.
import { ConsoleLog } from './log.js';
import { CONSOLE_IN_SIZE, CONSOLE_OUT_SIZE, ConsoleRing, isRingFault, type RingFault } from './ring.js';

/** Input held for a guest that is not reading (bytes). */
export const PENDING_INPUT_MAX = 16 * 1024;
/** Recent console output the emulator keeps (bytes). */
export const CONSOLE_LOG_MAX = 64 * 1024;
/** Output taken from the ring in one pass: a guest that writes without pause cannot hold the caller forever. */
export const MAX_OUTPUT_PER_PASS = 64 * 1024;

export interface PassResult {
  /** Guest output taken from the ring on this pass (already in the log). */
  readonly output: Uint8Array;
  /** Input bytes put into the guest's ring. */
  readonly delivered: number;
  /** Whether the guest should be notified (either index moved). */
  readonly moved: boolean;
  /** Faults to report: each direction's first fault only (the log says so once). */
  readonly faults: readonly RingFault[];
}

export class ConsoleService {
  readonly log = new ConsoleLog(CONSOLE_LOG_MAX);
  private pending: Uint8Array = new Uint8Array(0);
  /** Bytes taken from the guest's output ring, and put into its input ring, since it was built. */
  outTotal = 0;
  inTotal = 0;
  private readonly reported = new Set<RingFault['direction']>();

  /** Input waiting for room in the guest's ring. */
  get pendingInput(): Uint8Array {
    return this.pending;
  }

  /** Queues what fits of `bytes` (see PENDING_INPUT_MAX); returns how many were taken. */
  queueInput(bytes: Uint8Array): number {
    const n = Math.min(bytes.length, PENDING_INPUT_MAX - this.pending.length);
    if (n <= 0) return 0;
    const next = new Uint8Array(this.pending.length + n);
    next.set(this.pending);
    next.set(bytes.subarray(0, n), this.pending.length);
    this.pending = next;
    return n;
  }

  /** Console output that did not come through the ring (console_io, the debug port): logged alike. */
  record(bytes: Uint8Array): void {
    if (bytes.length > 0) this.log.append(bytes);
  }

  /** One pass over the ring: output out, input in. */
  pass(ring: ConsoleRing): PassResult {
    const faults: RingFault[] = [];
    const taken: Uint8Array[] = [];
    let size = 0;
    while (size < MAX_OUTPUT_PER_PASS) {
      const r = ring.takeOutput(MAX_OUTPUT_PER_PASS - size);
      if (isRingFault(r)) {
        this.noteFault(r, faults);
        break;
      }
      if (r.length === 0) break;
      taken.push(r);
      size += r.length;
    }
    const output = concat(taken, size);
    this.outTotal += size;
    this.record(output);
    let delivered = 0;
    if (this.pending.length > 0) {
      const r = ring.putInput(this.pending);
      if (isRingFault(r)) this.noteFault(r, faults);
      else if (r > 0) {
        this.pending = this.pending.slice(r);
        delivered = r;
        this.inTotal += r;
      }
    }
    return { output, delivered, moved: size > 0 || delivered > 0, faults };
  }

  /** Restores what a saved machine's backend held. */
  load(st: { pending: Uint8Array; log: Uint8Array; logTotal: number; outTotal: number; inTotal: number }): void {
    this.pending = st.pending.slice(0, PENDING_INPUT_MAX);
    this.log.load(st.log, st.logTotal);
    this.outTotal = st.outTotal;
    this.inTotal = st.inTotal;
  }

  private noteFault(f: RingFault, out: RingFault[]): void {
    if (this.reported.has(f.direction)) return;
    this.reported.add(f.direction);
    out.push(f);
  }
}

function concat(parts: readonly Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One line for the emulator's log about a ring the guest broke. */
export function describeFault(f: RingFault): string {
  const size = f.direction === 'out' ? CONSOLE_OUT_SIZE : CONSOLE_IN_SIZE;
  return `the guest's console ${f.direction === 'out' ? 'output' : 'input'} ring claims ${f.used} bytes used of ${size} (prod - cons): not served until the guest repairs its indexes`;
}
