// `xenkvm diff A B`: what differs between two snapshots, field by field and
// page by page.  Exit status as diff(1): 0 identical, 1 different, 2 trouble
// (unreadable or corrupt file, bad option), with one line on stderr.
import { InputError } from '../errors.js';
import type { LoadedSnapshot } from '../inspect/index.js';
import { printers, reportError } from './inspect.js';
import { defineCommand } from './command.js';

export const DIFF_EXIT = { identical: 0, different: 1, trouble: 2 } as const;

export interface DiffArgs {
  readonly a: string;
  readonly b: string;
  readonly json?: boolean;
  /** List every differing page range (default: the first 8). */
  readonly pages?: boolean;
  /** `GPA[,LEN]`: show those guest bytes of both files. */
  readonly hexdump?: string;
  /** Paths to leave out (`kvmclock.clock`, `*.tsc`, `cpu.lapic[912..915]`). */
  readonly ignore?: readonly string[];
  /** Also leave out VOLATILE_FIELDS (clock, TSC, guest time, LAPIC timer count). */
  readonly ignoreVolatile?: boolean;
  readonly out?: (text: string) => void;
  readonly err?: (text: string) => void;
  readonly color?: boolean;
}

export const command = defineCommand({
  command: 'diff <a> <b>',
  describe: 'Compare two snapshots field by field and page by page',
  builder: (y) =>
    y
      .positional('a', { type: 'string', demandOption: true, describe: 'first snapshot' })
      .positional('b', { type: 'string', demandOption: true, describe: 'second snapshot' })
      .option('pages', {
        type: 'boolean',
        default: false,
        describe: 'list every range of differing pages (default: the first 8)',
      })
      .option('hexdump', {
        type: 'string',
        describe: 'also show guest bytes GPA[,LEN] of both files (LEN default 256, at most 65536)',
      })
      .option('ignore', {
        type: 'string',
        array: true,
        default: [] as string[],
        describe: 'leave out a field (repeatable); * matches any text, PATH[a..b] cuts a byte range',
      })
      .option('ignore-volatile', {
        type: 'boolean',
        default: false,
        describe:
          'leave out what moves whenever a guest runs: kvmclock.clock/realtime/host_tsc, cpu.msrs.IA32_TSC, xen_time.guest_ns/wc_sec/wc_nsec, cpu.lapic[912..915] (LAPIC timer count)',
      })
      .option('json', { type: 'boolean', default: false, describe: 'print JSON for scripts' })
      .example(
        '$0 diff before.xks after.xks',
        'every changed field (cpu[1]/xen_vcpu.xen_virq[0]: 0 → 5) and the GPA ranges of changed pages',
      )
      .example('$0 diff a.xks b.xks --ignore-volatile --ignore "*.rflags"', 'leave out clocks, TSC and every rflags')
      .example(
        '$0 diff a.xks b.xks --pages --hexdump 0x1fe000,64',
        'all differing ranges, and 64 bytes at 0x1fe000 from both files',
      )
      .epilogue(
        'Paths: cpu[1].regs.rip, cpu[1]/xen_vcpu.xen_virq[0] (a subsection after /), cpu[0].msrs.IA32_TSC (MSRs by name), cpu[0].lapic[912..915] (bytes as ranges). A pattern without an instance (cpu.regs.rip) matches every vCPU. Memory is compared page by page while both files are read, never loaded whole.\n\nExit status (as diff(1)): 0 identical, 1 different, 2 trouble (unreadable or corrupt file, bad option).',
      ),
  run: (a) =>
    diffCommand({
      a: a.a,
      b: a.b,
      pages: a.pages,
      hexdump: a.hexdump,
      ignore: a.ignore,
      ignoreVolatile: a['ignore-volatile'],
      json: a.json,
    }),
});

export async function diffCommand(args: DiffArgs): Promise<number> {
  // Loaded when the command runs (command.ts).
  const [{ PAGE_SIZE }, lib] = await Promise.all([import('../migrate/index.js'), import('../inspect/index.js')]);
  const { colorFor, diffJson, diffSnapshots, hexdumpBoth, IgnoreSet, InspectContext, jsonText, loadSnapshot } = lib;
  const { parseHexdumpArg, renderDiff, style, VOLATILE_FIELDS } = lib;
  const p = printers(args, colorFor);
  const st = style(p.color && !args.json);
  const opened: LoadedSnapshot[] = [];
  try {
    const dump = args.hexdump === undefined ? null : parseHexdumpArg(args.hexdump);
    if (typeof dump === 'string') throw new InputError(dump);
    const ignore = new IgnoreSet([...(args.ignore ?? []), ...(args.ignoreVolatile ? VOLATILE_FIELDS : [])]);
    for (const path of [args.a, args.b]) opened.push(await loadSnapshot(path));
    const [sa, sb] = opened as [LoadedSnapshot, LoadedSnapshot];
    const ca = new InspectContext(sa, sb.sections);
    const cb = new InspectContext(sb, sa.sections);
    if (dump && dump.gpa + dump.length > Math.max(sa.pages.index.guestPages, sb.pages.index.guestPages) * PAGE_SIZE) {
      throw new InputError(
        `--hexdump ${args.hexdump}: beyond guest memory (${Math.max(sa.pages.index.guestPages, sb.pages.index.guestPages) * PAGE_SIZE} bytes)`,
      );
    }
    const d = await diffSnapshots(ca, cb, ignore);
    const hd = dump ? await hexdumpBoth(sa.pages, sb.pages, dump.gpa, dump.length, st) : null;
    if (args.json) {
      const j = diffJson(d) as Record<string, unknown>;
      if (hd) j['hexdump'] = hd.json;
      p.out(`${jsonText(j)}\n`);
    } else {
      const lines = renderDiff(d, { pages: args.pages ?? false, style: st });
      if (hd)
        lines.push(
          '',
          st.bold(
            `hexdump of ${dump!.length} bytes at ${args.hexdump!.split(',')[0]} (a = ${args.a}, b = ${args.b}, = both)`,
          ),
          ...hd.lines,
        );
      p.out(`${lines.join('\n')}\n`);
    }
    return d.identical ? DIFF_EXIT.identical : DIFF_EXIT.different;
  } catch (e) {
    return reportError(e, p.err);
  } finally {
    for (const s of opened) await s.close().catch(() => undefined);
  }
}
