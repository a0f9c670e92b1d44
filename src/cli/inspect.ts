// `xenkvm inspect FILE [--section NAME] [--json]`: what a snapshot holds.
// Thin: the work is in src/inspect; this prints it.  Exit status 0, or 2
// with one line on stderr for any bad input (unreadable, truncated, corrupt
// file, unknown section).
import { XenkvmError } from '../errors.js';
import {
  colorFor,
  InspectContext,
  inspectSection,
  jsonText,
  loadSnapshot,
  renderSummary,
  style,
  summarize,
} from '../inspect/index.js';

export interface InspectArgs {
  readonly file: string;
  /** `cpu`, `cpu[1]`, `cpu/xen_vcpu`, `xen_evtchn`, ... */
  readonly section?: string;
  readonly json?: boolean;
  /** Where output goes; default the process's stdout/stderr (tests pass their own). */
  readonly out?: (text: string) => void;
  readonly err?: (text: string) => void;
  /** Force colour on or off; default: stdout is a TTY and NO_COLOR is unset. */
  readonly color?: boolean;
}

export interface Printers {
  out: (text: string) => void;
  err: (text: string) => void;
  color: boolean;
}

export function printers(args: { out?: (t: string) => void; err?: (t: string) => void; color?: boolean }): Printers {
  return {
    out: args.out ?? ((t) => void process.stdout.write(t)),
    err: args.err ?? ((t) => void process.stderr.write(t)),
    color: args.color ?? (args.out === undefined && colorFor(process.stdout)),
  };
}

/**
 * One line for any failure, never a stack trace: our errors carry a message
 * a person can act on; anything else is a bug, shown as such (with the stack
 * only under XENKVM_DEBUG).  Returns the exit status, 2 (as diff(1) does).
 */
export function reportError(e: unknown, err: (t: string) => void): number {
  if (e instanceof XenkvmError) err(`xenkvm: ${e.message}\n`);
  else {
    err(`xenkvm: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
    if (process.env['XENKVM_DEBUG'] && e instanceof Error) err(`${e.stack ?? ''}\n`);
  }
  return 2;
}

export async function inspectCommand(args: InspectArgs): Promise<number> {
  const p = printers(args);
  const st = style(p.color && !args.json);
  try {
    const snap = await loadSnapshot(args.file);
    try {
      const ctx = new InspectContext(snap);
      if (args.section !== undefined) {
        const r = await inspectSection(ctx, args.section, st);
        p.out(args.json ? `${jsonText(r.json)}\n` : `${r.lines.join('\n')}\n`);
      } else {
        const sum = summarize(ctx);
        p.out(args.json ? `${jsonText(sum)}\n` : `${renderSummary(sum, st).join('\n')}\n`);
      }
      return 0;
    } finally {
      await snap.close();
    }
  } catch (e) {
    return reportError(e, p.err);
  }
}
