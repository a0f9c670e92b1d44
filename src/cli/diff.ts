// `xenkvm diff A B`: what differs between two snapshots, field by field and
// page by page.  Exit status as diff(1): 0 identical, 1 different, 2 trouble
// (unreadable or corrupt file, bad option), with one line on stderr.
import { InputError } from '../errors.js';
import { PAGE_SIZE } from '../migrate/index.js';
import {
  diffJson,
  diffSnapshots,
  hexdumpBoth,
  IgnoreSet,
  InspectContext,
  jsonText,
  loadSnapshot,
  parseHexdumpArg,
  renderDiff,
  style,
  VOLATILE_FIELDS,
  type LoadedSnapshot,
} from '../inspect/index.js';
import { printers, reportError } from './inspect.js';

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

export async function diffCommand(args: DiffArgs): Promise<number> {
  const p = printers(args);
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
