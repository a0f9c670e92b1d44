// The console backend's section, `xen_console`: what the backend holds
// outside the console page.  The ring itself (its bytes and four indexes) is
// in the console page, which travels with the emulator's pages; here are the
// input not yet delivered, the recent-output log a later `xenkvm console`
// shows, and how many bytes went each way (the backend's cursors, so
// `xenkvm diff` shows how far the console moved between two snapshots).
//
// Byte strings are cut into CHUNK-byte pieces: the state language has no
// variable-length byte kind, and a decoded schema may expand to a bounded
// number of elements (one per chunk).
import { FormatError } from '../../errors.js';
import { bytes, defineState, u16, u64, u32, varArray, type StateOf } from '../../vmstate/index.js';
import { CONSOLE_LOG_MAX, ConsoleService, PENDING_INPUT_MAX } from './service.js';

export const CHUNK = 256;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export const xenConsoleState = defineState({
  name: 'xen_console',
  version: 1,
  fields: {
    /** Input queued for the guest, not yet in its ring. */
    pending_len: u16(),
    pending_chunks: u16(),
    pending: varArray(bytes(CHUNK), { lengthField: 'pending_chunks', max: PENDING_INPUT_MAX / CHUNK }),
    /** The newest console output kept (oldest first), and how many bytes the guest ever wrote. */
    log_len: u32(),
    log_chunks: u16(),
    log: varArray(bytes(CHUNK), { lengthField: 'log_chunks', max: CONSOLE_LOG_MAX / CHUNK }),
    log_total: u64(),
    /** Bytes taken from the guest's output ring, and put into its input ring. */
    out_total: u64(),
    in_total: u64(),
  },
});
export type XenConsoleState = StateOf<typeof xenConsoleState>;

function toChunks(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < b.length; at += CHUNK) {
    const c = new Uint8Array(CHUNK);
    c.set(b.subarray(at, at + CHUNK));
    out.push(c);
  }
  return out;
}

function fromChunks(len: number, chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.length * CHUNK);
  chunks.forEach((c, i) => out.set(c, i * CHUNK));
  return out.slice(0, len);
}

/** The state of a machine that never had a console backend (older snapshots): nothing queued, nothing logged. */
export function initialConsoleState(): XenConsoleState {
  return saveConsole(new ConsoleService());
}

export function saveConsole(s: ConsoleService): XenConsoleState {
  const pending = s.pendingInput;
  const log = s.log.contents();
  return {
    pending_len: pending.length,
    pending_chunks: Math.ceil(pending.length / CHUNK),
    pending: toChunks(pending),
    log_len: log.length,
    log_chunks: Math.ceil(log.length / CHUNK),
    log: toChunks(log),
    log_total: BigInt(s.log.total),
    out_total: BigInt(s.outTotal),
    in_total: BigInt(s.inTotal),
  };
}

/** Applies a checked state (checkConsole) to a fresh backend. */
export function restoreConsole(s: ConsoleService, st: XenConsoleState): void {
  s.load({
    pending: fromChunks(st.pending_len, st.pending),
    log: fromChunks(st.log_len, st.log),
    logTotal: Number(st.log_total),
    outTotal: Number(st.out_total),
    inTotal: Number(st.in_total),
  });
}

function fail(what: string): never {
  throw new FormatError(`xen_console: ${what}`);
}

/** A length and its chunks must agree, and the padding of the last chunk must be zero. */
function checkBlob(name: string, len: number, chunks: readonly Uint8Array[], max: number): void {
  if (len > max) fail(`${name}_len ${len} is more than ${max}`);
  if (chunks.length !== Math.ceil(len / CHUNK))
    fail(`${name}_len ${len} needs ${Math.ceil(len / CHUNK)} chunks of ${CHUNK}, the section has ${chunks.length}`);
  const last = chunks[chunks.length - 1];
  if (last && last.subarray(len - (chunks.length - 1) * CHUNK).some((b) => b !== 0))
    fail(`${name}: bytes after ${name}_len are not zero`);
}

/** Validates a decoded section before restore trusts it. */
export function checkConsole(st: XenConsoleState): void {
  checkBlob('pending', st.pending_len, st.pending, PENDING_INPUT_MAX);
  checkBlob('log', st.log_len, st.log, CONSOLE_LOG_MAX);
  for (const f of ['log_total', 'out_total', 'in_total'] as const)
    if (st[f] > MAX_SAFE) fail(`${f} ${st[f]} is beyond 2^53`);
  if (st.log_total < BigInt(st.log_len)) fail(`log_total ${st.log_total} is less than the ${st.log_len} bytes kept`);
}
