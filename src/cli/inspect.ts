// `xenkvm inspect FILE [--section NAME] [--json]`: what a snapshot holds.
// Thin: the work is in src/inspect; this prints it.  Exit status 0, or 2
// with one line on stderr for any bad input (unreadable, truncated, corrupt
// file, unknown section).
import { XenkvmError } from '../errors.js';
import { defineCommand } from './command.js';

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

export const command = defineCommand({
  command: 'inspect <file>',
  describe: 'Show what a snapshot holds (versions, machine, sections, memory), or one section decoded',
  builder: (y) =>
    y
      .positional('file', {
        type: 'string',
        demandOption: true,
        describe: 'snapshot file (xenkvm snapshot -o FILE)',
      })
      .option('section', {
        alias: 's',
        type: 'string',
        describe:
          'decode one section: cpu, cpu[1], cpu/xen_vcpu, cpu[0]/xen_vcpu, xen_evtchn, kvmclock, ... (names as the summary lists them)',
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe:
          'print JSON for scripts: 64-bit state values as decimal strings, bytes as hex, addresses in views as "0x…" strings',
      })
      .example('$0 inspect vm.xks', 'format and producer versions, machine, sections with sizes, memory statistics')
      .example('$0 inspect vm.xks -s cpu', 'registers of every vCPU side by side, in hex; segments; MSRs by name')
      .example(
        "$0 inspect vm.xks -s 'cpu[1]/xen_vcpu'",
        "vCPU 1's VIRQ bindings and Xen timers (time left at the save)",
      )
      .example('$0 inspect vm.xks -s xen_evtchn', 'event channel ports: type, vCPU, VIRQ, remote port, pending, masked')
      .epilogue(
        'Sections this build has no descriptor for (or of another version) are decoded with the schema embedded in the file.\n\nExit status: 0 success, 2 unreadable, truncated or corrupt file, or no such section.',
      ),
  run: (a) => inspectCommand({ file: a.file, section: a.section, json: a.json }),
});

export interface Printers {
  out: (text: string) => void;
  err: (text: string) => void;
  color: boolean;
}

/** Output defaults; `colorFor` is the inspector's (loaded with it). */
export function printers(
  args: { out?: (t: string) => void; err?: (t: string) => void; color?: boolean },
  colorFor: (stream: { isTTY?: boolean }) => boolean,
): Printers {
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
  // Loaded when the command runs (command.ts).
  const { colorFor, InspectContext, inspectSection, jsonText, loadSnapshot, renderSummary, style, summarize } =
    await import('../inspect/index.js');
  const p = printers(args, colorFor);
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
