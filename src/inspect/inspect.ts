// `inspect`: the summary of a snapshot, and one section decoded.  Returns
// data (for --json) and lines (for people); printing is the CLI's job.
import { InputError } from '../errors.js';
import type { JsonValue } from '../vmstate/index.js';
import { InspectContext, type SectionView } from './context.js';
import type { DecodedSection } from './decode.js';
import { bytesText, jsonText, keyValues, PLAIN, table, type Style } from './text.js';
import { cpuView } from './view-cpu.js';
import { consoleView } from './view-console.js';
import { evtchnView } from './view-evtchn.js';
import { gnttabView } from './view-gnttab.js';
import { memoryView } from './view-memory.js';
import { renderSection, sectionJson } from './view-generic.js';
import { xenVcpuView } from './view-xen-vcpu.js';
import { xenstoreView } from './view-xenstore.js';
import { PAGE_SIZE } from '../migrate/index.js';

/** Views by section name (and `name/sub` for a subsection); anything else gets the generic view. */
const VIEWS: ReadonlyMap<string, SectionView> = new Map([
  ['cpu', cpuView],
  ['cpu/xen_vcpu', xenVcpuView],
  ['xen_evtchn', evtchnView],
  ['gnttab', gnttabView],
  ['xenstore', xenstoreView],
  ['xen_console', consoleView],
  ['xen_memory', memoryView],
]);

export interface SectionRow {
  section: string;
  name: string;
  instance: number;
  version: number;
  bytes: number;
  decodedBy: 'local' | 'schema' | null;
  error: string | null;
}

export interface MemorySummary {
  guestPages: number;
  guestBytes: number;
  /** Distinct pages stored with data. */
  storedPages: number;
  /** Guest pages not stored: zero. */
  zeroPages: number;
  /** Page data bytes in the file (after compression). */
  storedBytes: number;
  /** The same pages uncompressed. */
  rawBytes: number;
  batches: number;
  deflatedBatches: number;
  /** rawBytes / storedBytes when any batch is deflated, else null. */
  compressionRatio: number | null;
  /** Every batch raw and page-aligned: a restore can map the file. */
  mappable: boolean;
  /** Page records beyond the first for the same page (a migration stream saved as it arrived). */
  repeatedPages: number;
}

export interface InspectSummary {
  file: string;
  fileBytes: number;
  format: string;
  producer: string;
  /** The machine configuration as written (64-bit integers as decimal strings). */
  machine: JsonValue;
  sections: SectionRow[];
  memory: MemorySummary;
  warnings: string[];
}

function machineJson(v: unknown): JsonValue {
  return JSON.parse(jsonText(v ?? null, 0)) as JsonValue;
}

export function summarize(ctx: InspectContext): InspectSummary {
  const snap = ctx.snap;
  const s = snap.pages.index.stats;
  return {
    file: snap.path,
    fileBytes: snap.size,
    format: `${snap.header.formatMajor}.${snap.header.formatMinor}`,
    producer: snap.header.producer,
    machine: machineJson(snap.header.machine),
    sections: ctx.decoded.map((d) => ({
      section: ctx.label(d.name, d.instance),
      name: d.name,
      instance: d.instance,
      version: d.version,
      bytes: d.raw.bytes,
      decodedBy: d.decodedBy ?? null,
      error: d.error ?? null,
    })),
    memory: {
      guestPages: s.guestPages,
      guestBytes: s.guestPages * PAGE_SIZE,
      storedPages: s.storedPages,
      zeroPages: s.guestPages - s.storedPages,
      storedBytes: s.storedBytes,
      rawBytes: s.rawBytes,
      batches: s.batches,
      deflatedBatches: s.deflatedBatches,
      compressionRatio: s.deflatedBatches > 0 && s.storedBytes > 0 ? s.rawBytes / s.storedBytes : null,
      mappable: s.alignedBatches === s.batches,
      repeatedPages: s.dataPageRecords - s.storedPages,
    },
    warnings: snap.warnings.map((w) => w.message),
  };
}

function machineLines(m: JsonValue): string[] {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) return [`  ${JSON.stringify(m)}`];
  const pairs = Object.entries(m).map(([k, v]): [string, string] => {
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (/bytes$/i.test(k) && typeof n === 'number') return [k, `${n} (${bytesText(n)})`];
    return [k, typeof v === 'string' ? v : JSON.stringify(v)];
  });
  return keyValues(pairs, '  ');
}

export function renderSummary(sum: InspectSummary, st: Style = PLAIN): string[] {
  const m = sum.memory;
  const lines = [
    `${st.bold(sum.file)}: xenkvm snapshot, format ${sum.format}, ${bytesText(sum.fileBytes)}`,
    `producer  ${sum.producer}`,
    'machine',
    ...machineLines(sum.machine),
    '',
  ];
  const rows = sum.sections.map((r) => [
    r.section,
    String(r.version),
    bytesText(r.bytes),
    r.error ? st.red(`cannot decode: ${r.error}`) : r.decodedBy === 'local' ? 'this build' : 'embedded schema',
  ]);
  lines.push(...table(['SECTION', 'VERSION', 'SIZE', 'DECODED WITH'], rows, { right: [1, 2], style: st }), '');
  const pct = (n: number): string => (m.guestPages ? `${((100 * n) / m.guestPages).toFixed(1)}%` : '-');
  const mem: [string, string][] = [
    ['guest', `${bytesText(m.guestBytes)} (${m.guestPages} pages)`],
    [
      'stored',
      `${m.storedPages} pages (${pct(m.storedPages)}) in ${m.batches} batch${m.batches === 1 ? '' : 'es'}, ${bytesText(m.storedBytes)} of data`,
    ],
    ['zero', `${m.zeroPages} pages (${pct(m.zeroPages)}), not stored`],
    [
      'compression',
      m.compressionRatio === null
        ? 'none'
        : `deflate in ${m.deflatedBatches} of ${m.batches} batch${m.batches === 1 ? '' : 'es'}, ${m.compressionRatio.toFixed(2)}x (${bytesText(m.rawBytes)} → ${bytesText(m.storedBytes)})`,
    ],
    ['restore', m.mappable ? 'pages page-aligned: can be mapped' : 'some batches compressed or unaligned: copied'],
  ];
  if (m.repeatedPages > 0)
    mem.push(['repeats', `${m.repeatedPages} pages stored more than once (the last copy counts)`]);
  lines.push('memory', ...keyValues(mem, '  '));
  for (const w of sum.warnings) lines.push(st.yellow(`warning: ${w}`));
  return lines;
}

/** `cpu`, `cpu[1]`, `cpu/xen_vcpu`, `cpu[0]/xen_vcpu`, `xen_evtchn`. */
export function parseSelector(text: string): { name: string; instance: number | null; sub: string | null } {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?(?:\/([A-Za-z_][A-Za-z0-9_]*))?$/.exec(text.trim());
  if (!m)
    throw new InputError(
      `bad section name '${text}': expected NAME, NAME[INSTANCE] or NAME[INSTANCE]/SUBSECTION, e.g. cpu[1]/xen_vcpu`,
    );
  return { name: m[1]!, instance: m[2] === undefined ? null : Number(m[2]), sub: m[3] ?? null };
}

export interface SectionReport {
  json: JsonValue;
  lines: string[];
}

export async function inspectSection(ctx: InspectContext, selector: string, st: Style = PLAIN): Promise<SectionReport> {
  const sel = parseSelector(selector);
  const available = (): string => [...new Set(ctx.decoded.map((d) => ctx.label(d.name, d.instance)))].join(', ');
  let chosen: DecodedSection[] = ctx.all(sel.name);
  if (chosen.length === 0)
    throw new InputError(`${ctx.snap.path} has no section '${sel.name}'; it has ${available() || 'none'}`);
  if (sel.instance !== null) {
    chosen = chosen.filter((d) => d.instance === sel.instance);
    if (chosen.length === 0)
      throw new InputError(`${ctx.snap.path} has no section ${sel.name}[${sel.instance}]; it has ${available()}`);
  }
  const key = sel.sub === null ? sel.name : `${sel.name}/${sel.sub}`;
  if (sel.sub !== null && !chosen.some((d) => d.desc?.subsections[sel.sub!] !== undefined)) {
    throw new InputError(`section ${sel.name} has no subsection ${sel.sub}`);
  }
  const lines: string[] = [];
  const json: JsonValue[] = [];
  const ok = chosen.filter((d) => d.state !== undefined);
  for (const d of chosen) {
    if (d.state !== undefined) continue;
    lines.push(
      st.red(`${ctx.label(d.name, d.instance)} (version ${d.version}): cannot decode: ${d.error}`),
      'raw payload:',
      ...jsonText(d.raw.payload)
        .split('\n')
        .map((l) => `  ${l}`),
      '',
    );
    json.push({
      section: ctx.label(d.name, d.instance),
      name: d.name,
      instance: d.instance,
      version: d.version,
      error: d.error ?? null,
      payload: JSON.parse(jsonText(d.raw.payload, 0)) as JsonValue,
    });
  }
  if (ok.length === 0) return { json, lines };
  const head = ok.map(
    (d) =>
      `${ctx.label(d.name, d.instance)} version ${d.version}${d.decodedBy === 'schema' ? ' (decoded with the embedded schema)' : ''}`,
  );
  lines.push(st.bold(head.join(', ')), '');
  const view = VIEWS.get(key);
  let viewJson: JsonValue | null = null;
  if (view) {
    const out = await view.render(ctx, ok, st);
    lines.push(...out.lines);
    viewJson = out.view;
  } else {
    for (const d of ok) {
      let desc = d.desc!;
      let state = d.state!;
      if (sel.sub !== null) {
        desc = desc.subsections[sel.sub]!.state;
        state = state[sel.sub] as typeof state;
        if (state === undefined) {
          lines.push(`${ctx.label(d.name, d.instance)}/${sel.sub}: not present`, '');
          continue;
        }
      }
      if (ok.length > 1) lines.push(st.bold(`${ctx.label(d.name, d.instance)}${sel.sub ? `/${sel.sub}` : ''}`));
      lines.push(...renderSection(desc, state, ok.length > 1 ? '  ' : ''), '');
    }
    while (lines[lines.length - 1] === '') lines.pop();
  }
  for (const d of ok) {
    json.push({
      section: ctx.label(d.name, d.instance),
      name: d.name,
      instance: d.instance,
      version: d.version,
      decodedBy: d.decodedBy ?? null,
      state: sectionJson(d.desc!, d.state!),
    });
  }
  return { json: { sections: json, view: viewJson }, lines };
}
