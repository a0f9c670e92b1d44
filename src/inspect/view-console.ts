// `xen_console`: the console backend's state as text: the input typed but
// not yet delivered to the guest, how many bytes went each way, and the tail
// of the console log, control characters escaped.  The ring itself is in
// the console page (the emulator's pages), not in this section.
import type { JsonValue, StateRecord } from '../vmstate/index.js';
import type { InspectContext, SectionView, ViewOutput } from './context.js';
import type { DecodedSection } from './decode.js';
import type { Style } from './text.js';

/** Log lines shown by the text view. */
const TAIL_LINES = 20;

function joinChunks(st: StateRecord, name: string): Uint8Array {
  const len = typeof st[`${name}_len`] === 'number' ? (st[`${name}_len`] as number) : 0;
  const chunks = Array.isArray(st[name]) ? (st[name] as unknown[]) : [];
  const parts = chunks.filter((c): c is Uint8Array => c instanceof Uint8Array);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all.subarray(0, Math.min(len, all.length));
}

/** Printable ASCII as is; everything else as \r, \n, \t, \e or \xNN. */
export function escapeBytes(b: Uint8Array): string {
  let out = '';
  for (const c of b) {
    if (c >= 0x20 && c < 0x7f && c !== 0x5c) out += String.fromCharCode(c);
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x1b) out += '\\e';
    else out += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** The last `n` lines of the log, each escaped (its newline dropped). */
function tail(log: Uint8Array, n: number): string[] {
  const lines: string[] = [];
  let end = log.length;
  while (end > 0 && lines.length < n) {
    const start = end >= 2 ? log.lastIndexOf(0x0a, end - 2) + 1 : 0;
    const line = log.subarray(start, end);
    lines.unshift(escapeBytes(line[line.length - 1] === 0x0a ? line.subarray(0, -1) : line));
    end = start;
  }
  return lines;
}

export const consoleView: SectionView = {
  async render(_ctx: InspectContext, sections: readonly DecodedSection[], st: Style): Promise<ViewOutput> {
    const lines: string[] = [];
    const views: JsonValue[] = [];
    for (const d of sections) {
      const s = d.state!;
      const pending = joinChunks(s, 'pending');
      const log = joinChunks(s, 'log');
      const num = (k: string) => String(s[k] ?? '?');
      lines.push(
        `output taken from the guest's ring: ${num('out_total')} bytes; input put into it: ${num('in_total')} bytes`,
        pending.length === 0
          ? 'input waiting for the guest: none'
          : `input waiting for the guest: ${pending.length} bytes: ${st.yellow(`"${escapeBytes(pending)}"`)}`,
        `console log: the last ${log.length} of ${num('log_total')} bytes the guest printed${log.length ? ', ending:' : ''}`,
      );
      for (const l of tail(log, TAIL_LINES)) lines.push(`  | ${l}`);
      views.push({ pending: escapeBytes(pending), log_tail: escapeBytes(log.subarray(-1024)) });
    }
    return { view: views.length === 1 ? views[0]! : views, lines };
  },
};
