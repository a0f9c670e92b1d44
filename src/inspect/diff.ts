// `diff`: two snapshots compared field by field and page by page; the
// result as data, and as lines for people.
import type { JsonValue } from '../vmstate/index.js';
import { PAGE_SIZE } from '../migrate/index.js';
import type { InspectContext } from './context.js';
import { diffMemory, type MemoryDiff } from './mem-diff.js';
import type { PageReader } from '../migrate/index.js';
import { changeValueText, diffSections, type IgnoreSet, type SectionsDiff } from './state-diff.js';
import { bytesText, hex, PLAIN, type Style } from './text.js';

export interface SnapshotDiff {
  a: string;
  b: string;
  sections: SectionsDiff;
  memory: MemoryDiff;
  /** Sections compared (present in both). */
  comparedSections: number;
  identical: boolean;
}

export async function diffSnapshots(
  a: InspectContext,
  b: InspectContext,
  ignore: IgnoreSet,
  onProgress?: (done: number, total: number) => void,
): Promise<SnapshotDiff> {
  const sections = diffSections(a, b, ignore);
  const memory = await diffMemory(a.snap.pages, b.snap.pages, onProgress);
  const comparedSections = a.decoded.length - sections.onlyInA.length;
  const identical =
    sections.changes.length === 0 &&
    sections.onlyInA.length === 0 &&
    sections.onlyInB.length === 0 &&
    memory.differingPages === 0;
  return { a: a.snap.path, b: b.snap.path, sections, memory, comparedSections, identical };
}

const gpaRange = (r: { pfn: number; pages: number }): string =>
  `${hex(r.pfn * PAGE_SIZE)}-${hex((r.pfn + r.pages) * PAGE_SIZE - 1)}`;
/** Ranges shown without --pages. */
const RANGES_SHOWN = 8;

export function renderDiff(d: SnapshotDiff, opts: { pages?: boolean; style?: Style } = {}): string[] {
  const st = opts.style ?? PLAIN;
  const lines: string[] = [];
  for (const c of d.sections.changes) {
    lines.push(
      `${c.path}: ${st.red(changeValueText(c.a, c.spec, c.path))} → ${st.green(changeValueText(c.b, c.spec, c.path))}`,
    );
  }
  for (const s of d.sections.onlyInA) lines.push(st.red(`only in ${d.a}: section ${s}`));
  for (const s of d.sections.onlyInB) lines.push(st.green(`only in ${d.b}: section ${s}`));
  for (const s of d.sections.raw)
    lines.push(st.yellow(`note: ${s} could not be decoded in both files; its raw payloads were compared`));
  const m = d.memory;
  if (m.differingPages > 0) {
    const shown = opts.pages ? m.ranges : m.ranges.slice(0, RANGES_SHOWN);
    lines.push(
      `memory: ${m.differingPages} of ${m.comparedPages} pages differ (${bytesText(m.differingPages * PAGE_SIZE)}) in ${m.ranges.length} range${m.ranges.length === 1 ? '' : 's'}`,
    );
    for (const r of shown) lines.push(`  ${gpaRange(r)}  ${r.pages} page${r.pages === 1 ? '' : 's'}`);
    if (shown.length < m.ranges.length)
      lines.push(st.dim(`  ... ${m.ranges.length - shown.length} more ranges (--pages lists them all)`));
  }
  const fields = d.sections.changes.length;
  const only = d.sections.onlyInA.length + d.sections.onlyInB.length;
  if (d.identical) lines.push(`identical: ${d.comparedSections} sections and ${m.comparedPages} pages of memory`);
  else {
    const parts: string[] = [];
    if (fields) parts.push(fields === 1 ? '1 field differs' : `${fields} fields differ`);
    if (only) parts.push(`${only} section${only === 1 ? '' : 's'} in one file only`);
    parts.push(`${m.differingPages} of ${m.comparedPages} pages differ`);
    lines.push(st.bold(`different: ${parts.join(', ')}`));
  }
  return lines;
}

function valueJson(v: unknown): JsonValue {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (v === undefined) return null;
  return JSON.parse(
    JSON.stringify(v, (_k, x: unknown) =>
      typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x,
    ),
  ) as JsonValue;
}

export function diffJson(d: SnapshotDiff): JsonValue {
  return {
    a: d.a,
    b: d.b,
    identical: d.identical,
    changes: d.sections.changes.map((c) => ({ path: c.path, a: valueJson(c.a), b: valueJson(c.b) })),
    onlyInA: d.sections.onlyInA,
    onlyInB: d.sections.onlyInB,
    rawCompared: d.sections.raw,
    memory: {
      comparedPages: d.memory.comparedPages,
      differingPages: d.memory.differingPages,
      zeroInA: d.memory.zeroInA,
      zeroInB: d.memory.zeroInB,
      ranges: d.memory.ranges.map((r) => ({ gpa: hex(r.pfn * PAGE_SIZE), pages: r.pages })),
    },
  };
}

/** Longest --hexdump: 64 KiB, 8192 lines of output. */
export const HEXDUMP_MAX = 64 << 10;

/** Both sides of `gpa .. gpa+length`, 16 bytes a row; a row that differs shows B under A with the differing bytes marked. */
export async function hexdumpBoth(
  a: PageReader,
  b: PageReader,
  gpa: number,
  length: number,
  st: Style = PLAIN,
): Promise<{ lines: string[]; json: JsonValue }> {
  const [ba, bb] = await Promise.all([a.readGuest(gpa, length), b.readGuest(gpa, length)]);
  const lines: string[] = [];
  const w = hex(gpa + length).length;
  for (let off = 0; off < length; off += 16) {
    const n = Math.min(16, length - off);
    const ra = ba.subarray(off, off + n);
    const rb = bb.subarray(off, off + n);
    const same = Buffer.from(ra).equals(rb);
    const cells = (r: Uint8Array, other: Uint8Array, color: (s: string) => string): string =>
      Array.from(r, (x, i) => {
        const t = x.toString(16).padStart(2, '0');
        return x !== other[i] ? color(t) : t;
      }).join(' ');
    const ascii = (r: Uint8Array): string =>
      Array.from(r, (x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    const addr = hex(gpa + off).padStart(w);
    if (same) {
      lines.push(`${addr}  = ${cells(ra, rb, st.red)}${'   '.repeat(16 - n)}  |${ascii(ra)}|`);
      continue;
    }
    lines.push(`${addr}  a ${cells(ra, rb, st.red)}${'   '.repeat(16 - n)}  |${ascii(ra)}|`);
    lines.push(`${' '.repeat(w)}  b ${cells(rb, ra, st.green)}${'   '.repeat(16 - n)}  |${ascii(rb)}|`);
    if (!st.enabled) {
      // Without colour, a marker row says which bytes differ.
      lines.push(
        `${' '.repeat(w)}    ${Array.from(ra, (x, i) => (x !== rb[i] ? '^^' : '  '))
          .join(' ')
          .trimEnd()}`,
      );
    }
  }
  return {
    lines,
    json: { gpa: hex(gpa), length, a: Buffer.from(ba).toString('hex'), b: Buffer.from(bb).toString('hex') },
  };
}

/** `GPA[,LEN]`: hex (0x...) or decimal; LEN defaults to 256 bytes. */
export function parseHexdumpArg(text: string): { gpa: number; length: number } | string {
  const m = /^\s*(0x[0-9a-f]+|\d+)\s*(?:,\s*(0x[0-9a-f]+|\d+)\s*)?$/i.exec(text);
  if (!m) return `--hexdump wants GPA[,LEN], e.g. 0x1fe000,64; got '${text}'`;
  const gpa = Number(m[1]);
  const length = m[2] === undefined ? 256 : Number(m[2]);
  if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || length <= 0)
    return `--hexdump: bad address or length in '${text}'`;
  if (length > HEXDUMP_MAX) return `--hexdump: length ${length} is above the limit of ${HEXDUMP_MAX} bytes`;
  return { gpa, length };
}
