// Field-level diff of two snapshots' sections.  Paths read as people name
// state: `cpu[1].regs.rip`, `cpu[1]/xen_vcpu.xen_virq[0]` (a subsection after
// `/`), `kvmclock.clock`, `cpu[0].lapic[912..915]` (bytes as ranges), and MSRs
// by name rather than by their position in the saved list
// (`cpu[0].msrs.IA32_TSC`), since the list's order means nothing.
import { diffStates, globToRegExp, type AnyDescriptor, type FieldSpec, type StateRecord } from '../vmstate/index.js';
import { isRecord } from '../vmstate/values.js';
import type { InspectContext } from './context.js';
import type { DecodedSection } from './decode.js';
import { msrKey } from './msr-names.js';
import { enumName } from './view-generic.js';
import { hex } from './text.js';
import { xenstoreDiffForm } from './view-xenstore.js';

/** Sections compared in a form of their own rather than field by field (a node by its path, not its chunk). */
const DIFF_FORMS: ReadonlyMap<string, (state: StateRecord) => StateRecord> = new Map([['xenstore', xenstoreDiffForm]]);

/**
 * What `--ignore-volatile` ignores: fields that move whenever a guest runs,
 * so two saves of the same idle guest still differ in them.
 *   kvmclock.clock/realtime/host_tsc  the KVM clock and the host time it was read at
 *   cpu.msrs.IA32_TSC                 the TSC of each vCPU
 *   xen_time.guest_ns                 Xen guest system time at the save
 *   xen_time.wc_sec/wc_nsec           the wallclock base (host real time minus guest time), reset by every restore
 *   cpu.lapic[912..915]               LAPIC timer current count (APIC register 0x390)
 */
export const VOLATILE_FIELDS: readonly string[] = [
  'kvmclock.clock',
  'kvmclock.realtime',
  'kvmclock.host_tsc',
  'cpu.msrs.IA32_TSC',
  'xen_time.guest_ns',
  'xen_time.wc_sec',
  'xen_time.wc_nsec',
  'cpu.lapic[912..915]',
];

export interface FieldChange {
  /** Full path: `cpu[1]/xen_vcpu.xen_virq[0]`. */
  path: string;
  a: unknown;
  b: unknown;
  /** The field's spec when known (for enum names and hex). */
  spec?: FieldSpec;
}

export interface SectionsDiff {
  changes: FieldChange[];
  /** Sections (labels) present in only one file. */
  onlyInA: string[];
  onlyInB: string[];
  /** Sections compared without a descriptor (undecodable in a file): raw payloads. */
  raw: string[];
}

const RANGE = /^(.*)\[(\d+)(?:\.\.(\d+))?\]$/;

/** Ignore patterns, compiled: plain globs, and byte-range patterns `PATH[a..b]` that cut ranges out of byte diffs. */
export class IgnoreSet {
  private readonly globs: RegExp[] = [];
  private readonly ranges: { path: RegExp; lo: number; hi: number }[] = [];

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      const m = RANGE.exec(p);
      if (m && m[3] !== undefined)
        this.ranges.push({
          path: globToRegExp(m[1]!, true),
          lo: Number(m[2]),
          hi: Number(m[3]),
        });
      else this.globs.push(globToRegExp(p));
    }
  }

  get empty(): boolean {
    return this.globs.length === 0 && this.ranges.length === 0;
  }

  /** True when `paths` (the full path and its instance-less form) are all covered. */
  ignores(paths: readonly string[]): boolean {
    return paths.some((p) => this.globs.some((re) => re.test(p)));
  }

  /** Byte ranges to cut from a bytes field at one of `paths`. */
  cuts(paths: readonly string[]): { lo: number; hi: number }[] {
    return this.ranges.filter((r) => paths.some((p) => r.path.test(p)));
  }
}

/** The state as the diff sees it: subsections split off, MSR lists keyed by MSR. */
function diffParts(desc: AnyDescriptor | undefined, state: unknown): Map<string, unknown> {
  const parts = new Map<string, unknown>();
  if (!isRecord(state)) {
    parts.set('', state);
    return parts;
  }
  const subs = desc ? Object.keys(desc.subsections) : [];
  const main: StateRecord = {};
  for (const [k, v] of Object.entries(state)) {
    if (subs.includes(k)) continue;
    if (
      k === 'msrs' &&
      Array.isArray(v) &&
      v.every((e) => isRecord(e) && typeof e['index'] === 'number' && 'data' in e)
    ) {
      main[k] = Object.fromEntries((v as StateRecord[]).map((e) => [msrKey(e['index'] as number), e['data']]));
    } else main[k] = v;
  }
  parts.set('', main);
  for (const k of subs) {
    if (state[k] === undefined) continue;
    for (const [p, v] of diffParts(desc!.subsections[k]!.state, state[k])) parts.set(`/${k}${p}`, v);
  }
  return parts;
}

/** The spec of the field at `path` inside `desc` (an MSR key reads as its data). */
function specAt(desc: AnyDescriptor | undefined, part: string, path: string): FieldSpec | undefined {
  let d = desc;
  for (const k of part.split('/').filter(Boolean)) d = d?.subsections[k]?.state;
  if (!d) return undefined;
  let spec = { kind: 'struct', fields: d.fields } as FieldSpec | undefined;
  for (const tok of path.match(/[^.[\]]+|\[[^\]]*\]/g) ?? []) {
    if (!spec) return undefined;
    if (tok.startsWith('['))
      spec = spec.kind === 'array' || spec.kind === 'varArray' ? spec.of : spec.kind === 'bytes' ? spec : undefined;
    else if (spec.kind === 'struct') spec = spec.fields[tok];
    else if (spec.kind === 'varArray' && spec.of.kind === 'struct') spec = spec.of.fields['data'];
    else return undefined;
  }
  return spec;
}

/** Cuts ignored byte ranges out of a byte-range change; returns what is left. */
function cutRanges(
  c: { path: string; a: unknown; b: unknown },
  cuts: { lo: number; hi: number }[],
): { path: string; a: unknown; b: unknown }[] {
  const m = RANGE.exec(c.path);
  if (!m || !(c.a instanceof Uint8Array) || !(c.b instanceof Uint8Array) || cuts.length === 0) return [c];
  const lo = Number(m[2]);
  const hi = m[3] === undefined ? lo : Number(m[3]);
  const keep = new Array<boolean>(hi - lo + 1).fill(true);
  for (const cut of cuts) for (let i = Math.max(lo, cut.lo); i <= Math.min(hi, cut.hi); i++) keep[i - lo] = false;
  const out: { path: string; a: unknown; b: unknown }[] = [];
  for (let i = 0; i < keep.length;) {
    if (!keep[i]) {
      i++;
      continue;
    }
    const s = i;
    while (i < keep.length && keep[i]) i++;
    const p = i - s === 1 ? `${m[1]}[${lo + s}]` : `${m[1]}[${lo + s}..${lo + i - 1}]`;
    out.push({ path: p, a: c.a.subarray(s, i), b: c.b.subarray(s, i) });
  }
  return out;
}

function sectionChanges(
  ctxLabel: string,
  name: string,
  da: DecodedSection,
  db: DecodedSection,
  ignore: IgnoreSet,
  raw: string[],
): FieldChange[] {
  const decoded = da.state !== undefined && db.state !== undefined;
  if (!decoded) raw.push(ctxLabel);
  const form = DIFF_FORMS.get(name);
  const parts = (d: DecodedSection): Map<string, unknown> =>
    !decoded
      ? new Map([['', d.raw.payload]])
      : form && isRecord(d.state)
        ? new Map([['', form(d.state)]])
        : diffParts(d.desc, d.state);
  const pa = parts(da);
  const pb = parts(db);
  const out: FieldChange[] = [];
  for (const part of new Set([...pa.keys(), ...pb.keys()])) {
    for (const c of diffStates(pa.get(part), pb.get(part))) {
      const tail = c.path === '' ? '' : c.path.startsWith('[') ? c.path : `.${c.path}`;
      const full = `${ctxLabel}${part}${tail}`;
      const generic = `${name}${part}${tail}`;
      const paths = [full, generic];
      if (ignore.ignores(paths)) continue;
      const cuts = ignore.cuts([full.replace(RANGE, '$1'), generic.replace(RANGE, '$1')]);
      const spec = decoded && !form ? specAt(da.desc, part, c.path) : undefined;
      for (const piece of cutRanges(c, cuts)) {
        const sep = piece.path === '' || piece.path.startsWith('[') ? '' : '.';
        out.push({ path: `${ctxLabel}${part}${sep}${piece.path}`, a: piece.a, b: piece.b, ...(spec ? { spec } : {}) });
      }
    }
  }
  return out;
}

export function diffSections(a: InspectContext, b: InspectContext, ignore: IgnoreSet): SectionsDiff {
  const out: SectionsDiff = { changes: [], onlyInA: [], onlyInB: [], raw: [] };
  const key = (d: DecodedSection): string => `${d.name}\u0000${d.instance}`;
  const inB = new Map(b.decoded.map((d) => [key(d), d]));
  // Header fields first: producer and machine configuration.
  const hdr = (ctx: InspectContext) => ({
    producer: ctx.snap.header.producer,
    format: `${ctx.snap.header.formatMajor}.${ctx.snap.header.formatMinor}`,
    machine: ctx.snap.header.machine,
  });
  for (const c of diffStates(hdr(a), hdr(b))) if (!ignore.ignores([c.path])) out.changes.push(c);
  for (const da of a.decoded) {
    const label = a.label(da.name, da.instance);
    const db = inB.get(key(da));
    if (!db) {
      out.onlyInA.push(label);
      continue;
    }
    inB.delete(key(da));
    if (da.version !== db.version && !ignore.ignores([`${label}#version`]))
      out.changes.push({ path: `${label} (version)`, a: da.version, b: db.version });
    out.changes.push(...sectionChanges(label, da.name, da, db, ignore, out.raw));
  }
  for (const db of inB.values()) out.onlyInB.push(b.label(db.name, db.instance));
  return out;
}

const hexBytes = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');

/** Whether a 64-bit field at `path` counts time or events (shown in decimal) rather than addressing (hex). */
function isDecimalField(path: string): boolean {
  const leaf = path.split(/[./]/).pop() ?? '';
  return /(ns|nsec|sec|khz|count|period|clock|time|tsc|guest_ns)(\W|$)|TSC$/i.test(leaf) && !/TSC_DEADLINE/.test(path);
}

/** A value in a diff line: enum names, hex for addresses, byte strings in hex. */
export function changeValueText(v: unknown, spec: FieldSpec | undefined, path: string): string {
  if (v === undefined) return '(absent)';
  if (spec?.kind === 'enum' && typeof v === 'number') return enumName(spec, v);
  if (v instanceof Uint8Array)
    return v.length <= 16 ? hexBytes(v) : `${hexBytes(v.subarray(0, 16))} … (${v.length} bytes)`;
  const big = (x: bigint): string => (isDecimalField(path) ? x.toString() : hex(x));
  if (typeof v === 'bigint') return big(v);
  if (typeof v === 'string') return JSON.stringify(v);
  // A whole list (one that changed length): its 64-bit values as the field's own would be.
  if (typeof v === 'object' && v !== null)
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? big(x) : x));
  return String(v);
}
