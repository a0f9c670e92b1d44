// The mutations.  Each takes a parsed seed stream and changes it in one way
// a hostile or damaged stream could differ from a good one: fields inside
// section bodies by their meaning (decoded with the schema the stream
// embeds), sections missing, repeated or out of range, the header's machine,
// RAM batches (pages outside RAM, batches that inflate to more than they
// say), msgpack nested past the decoder's depth, truncation.  The stream is
// then framed again with valid checksums and END totals (stream.ts), so the
// change reaches the code behind the framing checks.
//
// A mutation also says whether the result breaks a rule (FORMAT.md, or the
// machine's own consistency): such a stream must be refused, and accepting
// it is a finding of its own.  `invalid` names the layer that must notice:
// 'stream' (any full read), 'pages' (whoever inflates page data), 'state'
// (whoever builds a machine from it), 'schema' (whoever reads the schemas
// the header embeds: `schema check`; a loader goes by its own descriptors),
// 'file' (a rule for files only: on a socket, bytes after END belong to the
// migration protocol), 'live' (a rule for a live destination only: SYNC).
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { RecordType, PAGE_SIZE, RAM_HEAD_BYTES } from '../../src/migrate/stream/format.js';
import { componentFor } from '../../src/machine/sections.js';
import type { FieldSchema, SectionSchema } from '../../src/vmstate/schema.js';
import { type FieldRef, intBits, isIntField, listFields } from './fields.js';
import type { Rng } from './rng.js';
import {
  buildStream,
  decodeMsgpack,
  encodeMsgpack,
  endBody,
  fixRamHeadCrc,
  type ParsedStream,
  ramData,
  ramHead,
  ramPagesBody,
  ramPfns,
  ramZeroBody,
  type RawRecord,
  type SectionBody,
  sectionOf,
  sectionRecord,
} from './stream.js';

export type InvalidLayer = 'stream' | 'file' | 'live' | 'pages' | 'state' | 'schema';

export interface Mutation {
  /** One line: what was changed, e.g. `xen_evtchn: port_table[3].vcpu = 2 (>= 2 vCPUs)`. */
  readonly label: string;
  /** Which layer must refuse the result; null when the result may be valid. */
  readonly invalid: InvalidLayer | null;
  /**
   * For a mutation that keeps END's old totals: the layer that must refuse
   * the result if the totals still match the records in the end (another
   * mutation of the case added back what this one took), when `invalid`
   * rested on the mismatch alone.
   */
  readonly ifEndMatches?: InvalidLayer | null;
}

export interface MutatedStream {
  readonly bytes: Uint8Array;
  readonly mutations: readonly Mutation[];
  /** For receive: cut the connection after this many bytes (a truncated stream, EOF after it). */
  readonly truncatedAt?: number;
}

/** What the mutators know about the seed. */
export interface SeedInfo {
  readonly name: string;
  readonly memBytes: number;
  readonly vcpus: number;
  /** Ports in the seed's event channel table. */
  readonly nrPorts: number;
  /** The highest page frame the seed stores. */
  readonly maxPfn: number;
  readonly schemas: Readonly<Record<string, SectionSchema>>;
  /** Deflate streams of zero bytes, by length, prepared once (an over-long batch costs nothing to build). */
  readonly zeros: (bytes: number) => Uint8Array;
}

/** A working copy of the seed: records and decoded header, edited in place by the mutators. */
export interface Work {
  records: RawRecord[];
  header: Record<string, unknown>;
  headerDirty: boolean;
  /** Set by truncation: bytes kept of the framed stream. */
  truncateTo?: number;
  /** Keep END's totals as they were (a mismatch must be caught). */
  keepEnd?: boolean;
  /**
   * Records a mutation made or changed: later mutations of the same case
   * leave them alone, so one cannot quietly undo another (and its verdict).
   */
  touched: Set<RawRecord>;
  headerTouched: boolean;
}

const U64_MAX = (1n << 64n) - 1n;
const NR_VIRQS = 24;

type Mutator = (w: Work, s: SeedInfo, r: Rng) => Mutation | null;

// ---- helpers ---------------------------------------------------------------

/** Marks `rec` as made by this case's mutations and returns it. */
function touch(w: Work, rec: RawRecord): RawRecord {
  w.touched.add(rec);
  return rec;
}

/** Claims the header for one mutation; false if an earlier one changed it. */
function claimHeader(w: Work): boolean {
  if (w.headerTouched) return false;
  w.headerTouched = true;
  w.headerDirty = true;
  return true;
}

function sectionIndexes(w: Work, name?: string): number[] {
  const out: number[] = [];
  w.records.forEach((rec, i) => {
    if (rec.type !== RecordType.SECTION || w.touched.has(rec)) return;
    if (name === undefined) out.push(i);
    else if (sectionOf(rec)?.name === name) out.push(i);
  });
  return out;
}

function ramIndexes(w: Work, type: number = RecordType.RAM_PAGES): number[] {
  const out: number[] = [];
  w.records.forEach((rec, i) => rec.type === type && !w.touched.has(rec) && out.push(i));
  return out;
}

function describeValue(v: unknown): string {
  if (typeof v === 'bigint') return v > 0xffffn ? `0x${v.toString(16)}` : `${v}n`;
  if (typeof v === 'number') return Number.isInteger(v) && Math.abs(v) > 0xffff ? `0x${v.toString(16)}` : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}…` : v);
  if (v instanceof Uint8Array) return `bytes(${v.length})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  if (v === null) return 'nil';
  if (typeof v === 'object') return 'map';
  return String(v);
}

/** An array (or map) nested `depth` levels around `leaf`. */
export function nested(depth: number, leaf: unknown = 0, maps = false): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = maps && i % 2 ? { k: v } : [v];
  return v;
}

function deepDepth(r: Rng): number {
  return r.pick([101, 102, 128, 200, 1000]);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function asNumber(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  return null;
}

/** A value of a wrong type for `s`. */
function wrongType(s: FieldSchema, r: Rng): unknown {
  const choices: unknown[] = ['x', null, 1.5, -0.5, [], {}, new Uint8Array(3), true, Number.NaN];
  if (s.kind === 'bool') choices.push(0, 1);
  if (isIntField(s)) choices.push(String(r.below(100)), 2 ** 64, Number.POSITIVE_INFINITY);
  if (s.kind === 'bytes') choices.push(new Array(s.size).fill(0), 'a'.repeat(s.size));
  return r.pick(choices);
}

/** Values that probe an integer field's range, by its bits and sign. */
function intEdge(s: FieldSchema, r: Rng): { value: unknown; outOfKind: boolean } {
  const bits = intBits(s);
  const signed = s.kind.startsWith('i');
  const big = bits === 64;
  const max = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  const min = signed ? -(1n << BigInt(bits - 1)) : 0n;
  // msgpack holds no integer beyond 64 bits: those go as a float, which is what a writer would have to send.
  const as = (x: bigint): unknown =>
    x > U64_MAX || x < -(1n << 63n)
      ? Number(x)
      : big || x > BigInt(Number.MAX_SAFE_INTEGER) || x < -BigInt(Number.MAX_SAFE_INTEGER)
        ? x
        : Number(x);
  const cases: Array<[bigint, boolean]> = [
    [0n, false],
    [1n, false],
    [max, false],
    [max + 1n, true],
    [min, false],
    [min - 1n, true],
    [U64_MAX, bits < 64 || signed],
    [1n << 53n, bits < 53],
    [BigInt(r.u32()), bits < 32 && r.u32() >= 2 ** bits],
  ];
  const [x, out] = r.pick(cases);
  return { value: as(x), outOfKind: out };
}

// ---- field mutations (by meaning) ------------------------------------------

interface FieldChoice {
  value: unknown;
  /** The resulting state breaks a rule: must be refused before a machine is built. */
  invalid: boolean;
  why?: string;
}

/** Values for a field chosen by what it means, falling back on its kind. */
function valueFor(section: string, ref: FieldRef, holder: FieldRef[], s: SeedInfo, r: Rng): FieldChoice {
  const k = ref.schema.kind;
  const name = ref.name;
  const mem = BigInt(s.memBytes);
  // About one in five: a wrong type or a value outside the field's kind, whatever it means.
  if (r.chance(0.12)) return { value: wrongType(ref.schema, r), invalid: true, why: 'wrong type' };
  if (isIntField(ref.schema) && r.chance(0.1)) {
    const e = intEdge(ref.schema, r);
    return { value: e.value, invalid: e.outOfKind, why: e.outOfKind ? 'outside its kind' : 'edge' };
  }
  if (/gpa/.test(name) && (k === 'u64' || k === 'i64')) {
    const cases: Array<[bigint, boolean, string]> = [
      [U64_MAX, true, 'all ones'],
      [mem, true, 'first byte beyond RAM'],
      [mem + 4096n, true, 'beyond RAM'],
      [mem - 8n, true, 'crosses the end of RAM'],
      [1n << 32n, true, 'at 4 GiB'],
      [0xfffff000n, true, 'in the 32-bit hole'],
      [1n << 52n, true, 'far beyond RAM'],
      [1n, !/vcpu_info|time_info|runstate/.test(name), 'unaligned'],
      [0x1234n, !/vcpu_info|time_info|runstate/.test(name), 'unaligned'],
      [BigInt(r.below(s.memBytes / PAGE_SIZE)) * 4096n, false, 'another page in RAM'],
      [0n, false, 'zero'],
      [r.u64(), true, 'random'],
    ];
    const [value, invalid, why] = r.pick(cases);
    // A random u64 may still land in RAM (rarely): judge it like the rest.
    const bad = why === 'random' ? value >= mem : invalid;
    return { value, invalid: bad, why };
  }
  if (name === 'vcpu' && isIntField(ref.schema)) {
    const v = r.pick([s.vcpus, s.vcpus + 1, 8, 255, 2 ** 31, 2 ** 32 - 1, -1, 0]);
    return { value: v, invalid: v >= s.vcpus || v < 0, why: v >= s.vcpus ? `>= ${s.vcpus} vCPUs` : undefined };
  }
  if (name === 'type' && k === 'enum') {
    const v = r.pick([6, 7, 0xff, 0xffff, -1, 3, 1, 0]);
    return { value: v, invalid: v > 5 || v < 0, why: 'port type' };
  }
  if (name === 'value' && ref.path.startsWith('port_table')) {
    // Port table entry: remote port (interdomain), VIRQ number (virq), pirq...
    const type = asNumber(holder.find((f) => f.path === ref.path.replace(/value$/, 'type'))?.get());
    const v = r.pick([0, s.nrPorts, s.nrPorts + 1, 4095, 4096, 65535, NR_VIRQS, NR_VIRQS - 1, 1]);
    const invalid =
      (type === 2 && (v === 0 || v >= s.nrPorts)) || (type === 4 && v >= NR_VIRQS) || (type === 5 && v >= s.vcpus);
    return { value: v, invalid, why: `type ${type}` };
  }
  if (name === 'xen_virq') {
    const v = r.pick([s.nrPorts, s.nrPorts + 5, 4095, 4096, 65535, 1, 2, 0]);
    return { value: v, invalid: v >= s.nrPorts, why: 'VIRQ port' };
  }
  if (/vector/.test(name)) {
    const v = r.pick([0, 1, 2, 8, 14, 15, 16, 0x20, 0xef, 0xff]);
    return { value: v, invalid: v < 16, why: 'vector' };
  }
  if (name === 'callback_param') {
    const v = r.pick([
      (2n << 56n) | 0n,
      (2n << 56n) | 2n,
      (2n << 56n) | 0xf3n,
      (1n << 56n) | 5n,
      (3n << 56n) | 0xf3n,
      (0xffn << 56n) | 0xf3n,
      U64_MAX,
      0n,
    ]);
    return { value: v, invalid: v === U64_MAX || (v >> 56n === 2n && (v & 0xffn) < 16n), why: 'callback' };
  }
  if (name === 'nr_ports' || /_count$|^nr_|_lines$/.test(name)) {
    const arrays = holder.filter((f) => f.schema.kind === 'varArray' && 'lengthField' in f.schema);
    const arr = arrays.find((f) => (f.schema as { lengthField: string }).lengthField === name);
    const actual = Array.isArray(arr?.get()) ? (arr!.get() as unknown[]).length : 0;
    const max = arr ? (arr.schema as { max: number }).max : 4096;
    const v = r.pick([0, actual - 1, actual + 1, max, max + 1, 2 ** 32 - 1, 2 ** 31]);
    return { value: v, invalid: v !== actual, why: `count (holds ${actual})` };
  }
  if (name === 'tsc_khz') {
    const v = r.pick([0, 1, 0xffffffff, 1_000_000, 100_000_000]);
    // The vCPU's rate goes to KVM (KVM_SET_TSC_KHZ); xen_time's is what the guest was told.
    return {
      value: v,
      invalid: section === 'cpu' && (v === 0 || v === 0xffffffff),
      why: 'TSC rate',
    };
  }
  if (name === 'index' && ref.path.includes('msrs')) {
    const v = r.pick([0xdeadbeef, 0xffffffff, 0, 0x10, 0xc0000080, 0x40000000]);
    return { value: v, invalid: false, why: 'MSR index' };
  }
  if (/timer|_ns$|period/.test(name)) {
    const v = r.pick([1n, 1000n, U64_MAX, 1n << 63n, 0n]);
    return { value: v, invalid: false, why: 'time' };
  }
  if (k === 'bytes') {
    const n = ref.schema.kind === 'bytes' ? ref.schema.size : 0;
    const choice = r.below(5);
    if (choice === 0) return { value: r.bytes(n), invalid: false, why: 'random bytes' };
    if (choice === 1) return { value: new Uint8Array(n).fill(0xff), invalid: false, why: 'all ones' };
    if (choice === 2) return { value: new Uint8Array(n), invalid: false, why: 'zeros' };
    return { value: r.bytes(r.pick([0, n - 1, n + 1, 1 << 20])), invalid: true, why: 'wrong size' };
  }
  if (k === 'array' || k === 'varArray') {
    const cur = ref.get();
    const arr = Array.isArray(cur) ? cur.slice() : [];
    const choice = r.below(4);
    if (choice === 0) return { value: arr.slice(0, Math.max(0, arr.length - 1)), invalid: true, why: 'one short' };
    if (choice === 1) return { value: [...arr, arr[0] ?? 0], invalid: true, why: 'one extra' };
    if (choice === 2) return { value: [], invalid: arr.length > 0, why: 'empty' };
    return { value: new Array(r.pick([4097, 70_000])).fill(arr[0] ?? 0), invalid: true, why: 'huge' };
  }
  if (k === 'struct') {
    const cur = ref.get();
    const arr = Array.isArray(cur) ? cur.slice() : [];
    return r.chance(0.5)
      ? { value: arr.slice(0, arr.length - 1), invalid: true, why: 'struct one short' }
      : { value: [...arr, 0], invalid: true, why: 'struct one extra' };
  }
  if (k === 'bool') return { value: r.pick([true, false]), invalid: false };
  if (k === 'enum') {
    const values = Object.values(ref.schema.kind === 'enum' ? ref.schema.values : {});
    const v = r.chance(0.5) ? r.pick(values) : r.pick([Math.max(...values) + 1, 0xff, 0xffff]);
    return { value: v, invalid: !values.includes(v), why: 'enum' };
  }
  if (isIntField(ref.schema)) {
    const e = intEdge(ref.schema, r);
    return { value: e.value, invalid: e.outOfKind, why: e.outOfKind ? 'outside its kind' : 'edge' };
  }
  return { value: wrongType(ref.schema, r), invalid: true, why: 'wrong type' };
}

/** The names the fuzzer favours: the VMM's own state, where consistency rules live. */
const FAVOURED = /gpa|vcpu|vector|virq|port|value|type|callback|nr_|_count|tsc_khz|timer|period|msrs|mp_state/;

/** Sections of the VMM's own state (the guest cannot break them by running), picked more often. */
const SECTION_WEIGHT: Readonly<Record<string, number>> = {
  xen_evtchn: 5,
  xen_overlay: 4,
  cpu: 4,
  xen_time: 2,
  kvmclock: 2,
  xen_hvm: 1,
  irqchip: 1,
};

function pickSection(w: Work, r: Rng): number | null {
  const idx = sectionIndexes(w);
  if (idx.length === 0) return null;
  const weighted: number[] = [];
  for (const i of idx) {
    const sec = sectionAt(w, i);
    if (sec === null) continue;
    const name = sec.name;
    const n = typeof name === 'string' ? (SECTION_WEIGHT[name] ?? 1) : 1;
    for (let k = 0; k < n; k++) weighted.push(i);
  }
  return weighted.length > 0 ? r.pick(weighted) : null;
}

/** A section pickSection chose (its body is a map). */
function sectionAt(w: Work, i: number): SectionBody {
  return sectionOf(w.records[i]!)!;
}

const mutateField: Mutator = (w, s, r) => {
  const i = pickSection(w, r);
  if (i === null) return null;
  const sec = sectionAt(w, i);
  const schema = typeof sec.name === 'string' ? s.schemas[sec.name] : undefined;
  if (!schema) return null;
  const refs = listFields(schema, sec.payload);
  if (refs.length === 0) return null;
  // Leaves named by meaning first; containers (arrays, structs) sometimes.
  const favoured = refs.filter((f) => FAVOURED.test(f.name) || FAVOURED.test(f.path));
  const ref = favoured.length > 0 && r.chance(0.75) ? r.pick(favoured) : r.pick(refs);
  const old = ref.get();
  const c = valueFor(String(sec.name), ref, refs, s, r);
  ref.set(c.value);
  w.records[i] = touch(w, sectionRecord(sec));
  const who = `${String(sec.name)}[${String(sec.instance)}]`;
  return {
    label: `${who} ${ref.path}: ${describeValue(old)} -> ${describeValue(c.value)}${c.why ? ` (${c.why})` : ''}`,
    invalid: c.invalid ? 'state' : null,
  };
};

// ---- envelope and section records ------------------------------------------

const mutateEnvelope: Mutator = (w, _s, r) => {
  const i = pickSection(w, r);
  if (i === null) return null;
  const sec = sectionAt(w, i);
  const env = sec.payload as Record<string, unknown>;
  const who = `${String(sec.name)}[${String(sec.instance)}]`;
  if (typeof env !== 'object' || env === null) return null;
  const choice = r.below(9);
  let label: string;
  switch (choice) {
    case 0:
      env['v'] = r.pick([0, -1, 99, 2 ** 32, 1.5, 'x', null]);
      label = `envelope v = ${describeValue(env['v'])}`;
      break;
    case 1:
      env['f'] = Array.isArray(env['f'])
        ? (env['f'] as unknown[]).slice(0, r.below((env['f'] as unknown[]).length))
        : [];
      label = `envelope f cut to ${(env['f'] as unknown[]).length} fields`;
      break;
    case 2:
      env['f'] = [...(Array.isArray(env['f']) ? env['f'] : []), 0, 'extra'];
      label = 'envelope f with 2 extra fields';
      break;
    case 3:
      env['f'] = r.pick([{}, null, 'f', new Uint8Array(8)]);
      label = `envelope f = ${describeValue(env['f'])}`;
      break;
    case 4:
      if (env['s'] === undefined) return null;
      delete env['s'];
      label = 'subsections removed';
      break;
    case 5:
      env['s'] = { ...((env['s'] as object) ?? {}), [`${String(sec.name)}/bogus`]: { v: 1, f: [] } };
      label = 'unknown mandatory subsection';
      break;
    case 6:
      env['s'] = { ...((env['s'] as object) ?? {}), 'other/bogus': { v: 1, f: [1, 2], o: true } };
      label = 'unknown optional subsection';
      break;
    case 7:
      env['s'] = r.pick([[], 'x', null, 5]);
      label = `subsections = ${describeValue(env['s'])}`;
      break;
    default:
      env['s'] = Object.fromEntries(Array.from({ length: 70 }, (_, k) => [`x/${k}`, { v: 1, f: [], o: true }]));
      label = '70 optional subsections';
  }
  w.records[i] = touch(w, sectionRecord(sec));
  // Only the optional subsection is allowed to pass.
  return { label: `${who} ${label}`, invalid: choice === 6 ? null : 'state' };
};

const mutateSectionRecord: Mutator = (w, s, r) => {
  const i = pickSection(w, r);
  if (i === null) return null;
  const sec = sectionAt(w, i);
  const who = `${String(sec.name)}[${String(sec.instance)}]`;
  const choice = r.below(12);
  switch (choice) {
    case 0: {
      w.records.splice(i, 1);
      // A section older builds did not write may be missing (Component.optional).
      const c = typeof sec.name === 'string' ? componentFor(sec.name) : undefined;
      return { label: `${who} removed`, invalid: c?.optional ? null : 'state' };
    }
    case 1: {
      w.records.splice(i + r.below(2), 0, touch(w, { ...w.records[i]! }));
      return { label: `${who} repeated`, invalid: 'state' };
    }
    case 2: {
      const cpu = sectionIndexes(w, 'cpu');
      if (cpu.length === 0) return null;
      const src = sectionAt(w, cpu[0]!);
      const inst = r.pick([s.vcpus, s.vcpus + 1, 7, 8, 255, 2 ** 31]);
      src.instance = inst;
      w.records.splice(cpu[cpu.length - 1]! + 1, 0, touch(w, sectionRecord(src)));
      return { label: `extra cpu[${inst}] (header says ${s.vcpus} vCPUs)`, invalid: 'state' };
    }
    case 3: {
      const inst = r.pick([s.vcpus, 1, 8, 255, 2 ** 32, 2 ** 53, -1, 1.5, 'x', null]);
      sec.instance = inst;
      w.records[i] = touch(w, sectionRecord(sec));
      return { label: `${who} instance -> ${describeValue(inst)}`, invalid: 'state' };
    }
    case 4: {
      const name = r.pick(['', 'bogus', 'cpu/xen_vcpu', 'CPU', 'xen_evtchn', 'cpu', 5, null, 'a'.repeat(300)]);
      if (name === sec.name) return null;
      sec.name = name;
      w.records[i] = touch(w, sectionRecord(sec));
      return { label: `${who} renamed to ${describeValue(name)}`, invalid: 'state' };
    }
    case 5: {
      const v = r.pick([0, 2, 3, 99, 2 ** 32, -1, 'x']);
      sec.version = v;
      w.records[i] = touch(w, sectionRecord(sec));
      return { label: `${who} version -> ${describeValue(v)}`, invalid: 'state' };
    }
    case 6: {
      delete sec.payload;
      w.records[i] = touch(w, sectionRecord(sec));
      return { label: `${who} payload removed`, invalid: 'state' };
    }
    case 7: {
      const p = r.pick([null, 'x', 5, [], {}, new Uint8Array(4), true]);
      sec.payload = p;
      w.records[i] = touch(w, sectionRecord(sec));
      return { label: `${who} payload = ${describeValue(p)}`, invalid: 'state' };
    }
    case 8: {
      sec['extra'] = r.pick([1, 'x', nested(3)]);
      w.records[i] = touch(w, sectionRecord(sec));
      return { label: `${who} extra key in the record`, invalid: null };
    }
    case 9: {
      // Sections of one name moved together to another place (order rules: cpu first, RAM before or after).
      const j = r.below(w.records.length - 1) + 1;
      const [rec] = w.records.splice(i, 1);
      w.records.splice(Math.min(j, w.records.length - 1), 0, rec!);
      return { label: `${who} moved to record ${j}`, invalid: null };
    }
    case 10: {
      // Two instances swapped: cpu[0] and cpu[1] exchange places (and state).
      const same = sectionIndexes(w, sec.name as string).filter((x) => x !== i);
      if (same.length === 0) return null;
      const j = r.pick(same);
      const a = w.records[i]!;
      w.records[i] = w.records[j]!;
      w.records[j] = a;
      return { label: `${who} swapped with another instance`, invalid: null };
    }
    default: {
      // The whole record body is not a map.
      w.records[i] = touch(w, {
        type: RecordType.SECTION,
        flags: 0,
        body: encodeMsgpack(r.pick([[1, 2], 'x', null, 7])),
      });
      return { label: `${who} body is not a map`, invalid: 'stream' };
    }
  }
};

// ---- header ----------------------------------------------------------------

const mutateHeader: Mutator = (w, s, r) => {
  if (!claimHeader(w)) return null;
  const h = w.header;
  const machine: Record<string, unknown> = isMap(h['machine']) ? h['machine'] : {};
  const choice = r.below(10);
  switch (choice) {
    case 0:
    case 1: {
      const v = r.pick([0, s.vcpus - 1, s.vcpus + 1, 8, 9, 255, -1, 2 ** 31, '2', 1.5, null]);
      machine['vcpus'] = v;
      h['machine'] = machine;
      return { label: `header vcpus ${s.vcpus} -> ${describeValue(v)}`, invalid: 'state' };
    }
    case 2: {
      const MiB = 1 << 20;
      // Sizes past 4 GiB are rare: each costs a worker (an abort in the FFI layer today).
      const v = r.pick([
        0,
        4096,
        s.memBytes + 4096,
        s.memBytes / 2,
        s.memBytes * 2,
        4 * MiB,
        2 ** 31,
        3 * 2 ** 30,
        r.chance(0.2) ? 5 * 2 ** 30 : 2 ** 30,
        r.chance(0.1) ? 2 ** 40 : 64 * MiB,
        2 ** 53,
        -MiB,
        '16M',
        BigInt(s.memBytes),
      ]);
      machine['memBytes'] = v;
      h['machine'] = machine;
      const cut = typeof v === 'number' && v <= s.maxPfn * PAGE_SIZE;
      return {
        label: `header memBytes ${s.memBytes} -> ${describeValue(v)}`,
        // Too small for the pages the seed stores, or an odd size (the header's own rule).
        invalid: typeof v !== 'number' || cut || v <= 0 || v % (2 * MiB) !== 0 || v > 2 ** 40 ? 'state' : null,
      };
    }
    case 3: {
      h['machine'] = r.pick([null, 'x', [], 5]);
      return { label: `header machine = ${describeValue(h['machine'])}`, invalid: 'state' };
    }
    case 4: {
      const schemas = h['schemas'];
      if (!isMap(schemas) || Object.keys(schemas).length === 0) return null;
      const n = r.pick(Object.keys(schemas));
      delete schemas[n];
      return { label: `header: schema of ${n} removed`, invalid: null };
    }
    case 5:
    case 6: {
      const schemas = h['schemas'];
      if (!isMap(schemas)) return null;
      const names = Object.keys(schemas).filter((k) => isMap(schemas[k]));
      if (names.length === 0) return null;
      const n = r.pick(names);
      const sch = schemas[n] as Record<string, unknown>;
      const what = r.below(9);
      let label: string;
      if (what === 0) {
        sch['fields'] = r.pick([null, 'x', {}, 5]);
        label = `fields = ${describeValue(sch['fields'])}`;
      } else if (what === 1) {
        // Read as no subsections at all: a schema that says less, not a broken one.
        delete sch['subsections'];
        w.headerDirty = true;
        return { label: `header: schema of ${n}: subsections removed`, invalid: null };
      } else if (what === 2) {
        const v = r.pick([null, 'x', [{}], [{ optional: 1 }], [{ section: null }]]);
        sch['subsections'] = v;
        // None (null) reads as no subsections, as a missing list does.
        return {
          label: `header: schema of ${n}: subsections = ${describeValue(v)}`,
          invalid: v === null ? null : 'schema',
        };
      } else if (what === 3) {
        const v = r.pick([-1, 0, 2 ** 32, 'x', null, 1.5]);
        sch['version'] = v;
        // A version is any non-negative integer; 0 is below minVersion (1), which is refused.
        return {
          label: `header: schema of ${n}: version = ${describeValue(v)}`,
          invalid: v === 2 ** 32 ? null : 'schema',
        };
      } else if (what === 4) {
        sch['minVersion'] = r.pick([99, -1, 'x']);
        label = `minVersion = ${describeValue(sch['minVersion'])}`;
      } else if (what === 5) {
        sch['name'] = r.pick(['other', '', 5]);
        label = `name = ${describeValue(sch['name'])}`;
      } else if (what === 6) {
        const fields = sch['fields'];
        if (!Array.isArray(fields) || fields.length === 0) return null;
        const f = r.pick(fields) as Record<string, unknown>;
        const key = r.pick(['kind', 'size', 'length', 'of', 'fields', 'lengthField', 'max', 'values', 'name', 'since']);
        // Keys a field of this kind has; others are ignored by whoever reads the schema.
        const own: Readonly<Record<string, readonly string[]>> = {
          bytes: ['size'],
          array: ['of', 'length'],
          varArray: ['of', 'lengthField', 'max'],
          struct: ['fields'],
          enum: ['values', 'base'],
        };
        const matters =
          key === 'kind' || key === 'name' || key === 'since' || (own[String(f['kind'])] ?? []).includes(key);
        f[key] = r.pick(['u128', 'struct', -1, 2 ** 40, null, 'nope', [], {}, nested(120)]);
        // A field renamed to another string is a schema that differs (a verdict), not a broken one.
        const renamed = key === 'name' && typeof f[key] === 'string';
        w.headerDirty = true;
        return {
          label: `header: schema of ${n}: field ${String(f['name'])}.${key} = ${describeValue(f[key])}`,
          invalid: matters && !renamed ? 'schema' : null,
        };
      } else if (what === 7) {
        delete sch['fields'];
        label = 'fields removed';
      } else {
        sch['fields'] = nested(deepDepth(r), { name: 'x', kind: 'u8' });
        label = 'fields nested deep';
      }
      return { label: `header: schema of ${n}: ${label}`, invalid: 'schema' };
    }
    case 7: {
      const v = r.pick([{}, null, [], 'x']);
      h['schemas'] = v;
      // No map at all breaks the format (FORMAT.md "HEADER"); an empty one only leaves nothing to check.
      return {
        label: `header schemas = ${describeValue(v)}`,
        invalid: Array.isArray(v) || typeof v !== 'object' || v === null ? 'stream' : null,
      };
    }
    case 8: {
      const k = r.pick(['producer', 'format']);
      h[k] = r.pick([5, null, [1, 1], [2, 0], k === 'format' ? 'x' : new Uint8Array(2), [1]]);
      return { label: `header ${k} = ${describeValue(h[k])}`, invalid: 'stream' };
    }
    default: {
      h[r.pick(['future', 'machine2', ''])] = r.pick([1, 'x', nested(5)]);
      return { label: 'header: an unknown key', invalid: null };
    }
  }
};

// ---- deep nesting ----------------------------------------------------------

const mutateDeep: Mutator = (w, s, r) => {
  const depth = deepDepth(r);
  const maps = r.chance(0.3);
  const where = r.below(4);
  if (where === 0) {
    if (!claimHeader(w)) return null;
    w.header[r.pick(['machine', 'extra', 'schemas'])] = nested(depth, 0, maps);
    return { label: `header value nested ${depth} deep${maps ? ' (maps)' : ''}`, invalid: 'stream' };
  }
  const i = pickSection(w, r);
  if (i === null) return null;
  const sec = sectionAt(w, i);
  const who = `${String(sec.name)}[${String(sec.instance)}]`;
  if (where === 1) {
    sec.payload = nested(depth, 0, maps);
  } else {
    const schema = typeof sec.name === 'string' ? s.schemas[sec.name] : undefined;
    const refs = schema ? listFields(schema, sec.payload) : [];
    if (refs.length === 0) sec.payload = nested(depth, 0, maps);
    else r.pick(refs).set(nested(depth, 0, maps));
  }
  w.records[i] = touch(w, sectionRecord(sec));
  return { label: `${who} value nested ${depth} deep${maps ? ' (maps)' : ''}`, invalid: 'stream' };
};

// ---- RAM -------------------------------------------------------------------

/**
 * Values a RAM_PAGES head field may be set to, each one a change: offset 4
 * is the one-byte encoding, so the u32 candidates count by their low byte
 * there (16385 would write 1, which a deflated batch already holds).
 */
export function headFieldValues(field: number, was: number, bodyBytes: number): number[] {
  const all = [0, 1, 0xffffffff, 16385, RAM_HEAD_BYTES - 1, bodyBytes, 2].map((x) =>
    field === 4 ? x & 0xff : x >>> 0,
  );
  return [...new Set(all)].filter((x) => x !== was);
}

export const mutateRam: Mutator = (w, s, r) => {
  const pages = ramIndexes(w);
  const guestPages = s.memBytes / PAGE_SIZE;
  const choice = r.below(10);
  if (choice <= 1) {
    // A page number outside RAM (or beyond 2^53).
    if (pages.length === 0) return null;
    const i = r.pick(pages);
    const body = w.records[i]!.body;
    const h = ramHead(body);
    const k = r.below(h.count);
    const pfn = r.pick<bigint>([
      BigInt(guestPages),
      BigInt(guestPages) + 1n,
      1n << 32n,
      1n << 52n,
      (1n << 53n) + 1n,
      U64_MAX,
      0xfffffn,
    ]);
    const out = body.slice();
    new DataView(out.buffer, out.byteOffset, out.length).setBigUint64(h.pfnOffset + k * 8, pfn, true);
    fixRamHeadCrc(out);
    w.records[i] = touch(w, { ...w.records[i]!, body: out });
    return {
      label: `RAM batch ${i}: page ${k} -> frame 0x${pfn.toString(16)} (RAM has ${guestPages})`,
      invalid: 'state',
    };
  }
  if (choice <= 4) {
    // A batch that inflates to more (or less) than count x 4096 bytes.
    if (pages.length === 0) return null;
    const i = r.pick(pages);
    const pfns = ramPfns(w.records[i]!.body);
    const want = pfns.length * PAGE_SIZE;
    const extra = r.pick([1, 4096, want, 64 << 20, 256 << 20, -1, -4096]);
    const data = s.zeros(want + extra);
    w.records[i] = touch(w, { ...w.records[i]!, body: ramPagesBody(data, pfns, 1) });
    return {
      label: `RAM batch ${i}: deflated data inflates to ${want + extra} bytes for ${pfns.length} pages (${extra > 0 ? '+' : ''}${extra})`,
      invalid: 'pages',
    };
  }
  if (choice === 5) {
    if (pages.length === 0) return null;
    const i = r.pick(pages);
    const body = w.records[i]!.body;
    const pfns = ramPfns(body);
    const what = r.below(3);
    // The same pages deflated again (at another level): valid, and the guest keeps its memory.
    const pagesOf = (): Uint8Array => {
      const d = ramData(body);
      try {
        return ramHead(body).encoding === 1 ? inflateRawSync(d) : d;
      } catch {
        return new Uint8Array(pfns.length * PAGE_SIZE); // an earlier mutation broke it: zeros, still valid
      }
    };
    const data =
      what === 0
        ? r.bytes(r.pick([1, 100, 5000]))
        : what === 1
          ? ramData(body).subarray(0, Math.max(1, ramData(body).length >> 1))
          : deflateRawSync(pagesOf(), { level: r.range(1, 9) });
    w.records[i] = touch(w, { ...w.records[i]!, body: ramPagesBody(data, pfns, 1) });
    return {
      label: `RAM batch ${i}: deflated data ${['garbage', 'cut in half', 'deflated again (valid)'][what]}`,
      invalid: what === 2 ? null : 'pages',
    };
  }
  if (choice === 6) {
    // RAM_ZERO listing pages outside RAM, or a huge count.
    const pfns = r.chance(0.5) ? [BigInt(guestPages) + BigInt(r.below(4))] : [0n, U64_MAX];
    const at = 1 + r.below(Math.max(1, w.records.length - 2));
    w.records.splice(at, 0, touch(w, { type: RecordType.RAM_ZERO, flags: 0, body: ramZeroBody(pfns) }));
    return {
      label: `RAM_ZERO of ${pfns.map((p) => `0x${p.toString(16)}`).join(',')} at record ${at}`,
      invalid: 'state',
    };
  }
  if (choice === 7) {
    // Head fields that disagree with the body (the head's CRC recomputed).
    if (pages.length === 0) return null;
    const i = r.pick(pages);
    const out = w.records[i]!.body.slice();
    const v = new DataView(out.buffer, out.byteOffset, out.length);
    const field = r.pick([0, 4, 8, 12, 16]);
    const was = field === 4 ? v.getUint8(4) : v.getUint32(field, true);
    const now = r.pick(headFieldValues(field, was, out.length));
    if (field === 4) v.setUint8(4, now);
    else v.setUint32(field, now, true);
    fixRamHeadCrc(out);
    w.records[i] = touch(w, { ...w.records[i]!, body: out });
    return {
      label: `RAM batch ${i}: head field at ${field} = ${now}`,
      // Raw pages said to be deflated: only whoever inflates them can tell.
      invalid: field === 4 && now === 1 ? 'pages' : 'stream',
    };
  }
  if (choice === 8) {
    // A page repeated within one batch, or a whole batch repeated (the later copy wins: valid).
    // Both copies are this mutation's: the earlier one's data is never read by
    // a reader that reads only the pages it needs (diff), so breaking it later
    // would be a change no such reader can see (FORMAT.md: data is checked when read).
    if (pages.length === 0) return null;
    const i = r.pick(pages);
    touch(w, w.records[i]!);
    w.records.splice(i + 1, 0, touch(w, { ...w.records[i]! }));
    return { label: `RAM batch ${i} repeated`, invalid: null };
  }
  // A RAM record where it does not belong: before any section or after all of them.
  if (pages.length === 0) return null;
  const i = r.pick(pages);
  const [rec] = w.records.splice(i, 1);
  const at = r.chance(0.5) ? 1 : w.records.length - 1;
  w.records.splice(at, 0, rec!);
  return { label: `RAM batch ${i} moved to record ${at}`, invalid: null };
};

// ---- the stream's structure ------------------------------------------------

/**
 * The records between the first (HEADER) and the first END with the
 * sections grouped before the rest (`sectionsFirst`) or after it.  Only
 * SECTION records move: a second HEADER or a record after END that another
 * mutation put there stays what it was.
 */
export function regroupSections(records: readonly RawRecord[], sectionsFirst: boolean): RawRecord[] {
  const endAt = records.findIndex((x) => x.type === RecordType.END);
  const stop = endAt < 0 ? records.length : endAt;
  const middle = records.slice(1, stop);
  const secs = middle.filter((x) => x.type === RecordType.SECTION);
  const rest = middle.filter((x) => x.type !== RecordType.SECTION);
  return [records[0]!, ...(sectionsFirst ? [...secs, ...rest] : [...rest, ...secs]), ...records.slice(stop)];
}

/**
 * END kept with the seed's totals is a rule break only while the totals
 * disagree with the records: a removed record and an added one of the same
 * kind cancel out.  Mutations that rested on the mismatch then say what they
 * break without it.
 */
export function settleEnd(w: Work, mutations: Mutation[]): void {
  if (!w.keepEnd) return;
  const endAt = w.records.findIndex((x) => x.type === RecordType.END);
  if (endAt < 0 || !sameBytes(w.records[endAt]!.body, endBody(w.records.slice(0, endAt)))) return;
  mutations.forEach((m, k) => {
    if (m.ifEndMatches === undefined) return;
    mutations[k] = { label: `${m.label} (totals still match)`, invalid: m.ifEndMatches };
  });
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, k) => x === b[k]);
}

const mutateStructure: Mutator = (w, _s, r) => {
  const choice = r.below(9);
  const endAt = w.records.findIndex((x) => x.type === RecordType.END);
  switch (choice) {
    case 0:
    case 1:
      w.truncateTo = -1; // decided once framed: a random cut
      return { label: 'truncated', invalid: 'stream' };
    case 2:
      const free = w.records
        .map((x, k) => (k > 0 && x.type !== RecordType.END && !w.touched.has(x) ? k : -1))
        .filter((k) => k >= 0);
      if (free.length === 0) return null;
      w.keepEnd = true;
      const [gone] = w.records.splice(r.pick(free), 1);
      return {
        label: 'a record removed, END left as it was',
        invalid: 'stream',
        // Totals made good again: a removed batch is pages left zero; a removed section is missing.
        ifEndMatches: gone!.type === RecordType.SECTION ? 'state' : null,
      };
    case 3:
      if (endAt >= 0 && w.touched.has(w.records[endAt]!)) return null;
      if (endAt >= 0) w.records.splice(endAt, 1);
      return { label: 'END removed', invalid: 'stream' };
    case 4:
      w.records.push(
        touch(w, {
          type: RecordType.SECTION,
          flags: 0,
          body: encodeMsgpack({ name: 'cpu', instance: 0, version: 1, payload: null }),
        }),
      );
      return { label: 'a record after END', invalid: 'file' };
    case 5: {
      const type = r.pick([0x8000_0123, 0x8000_0010, 0x0000_0077, 0x0000_0001]);
      const body = type === 0x8000_0010 ? r.bytes(r.pick([0, 7, 8, 9])) : r.bytes(r.below(64));
      w.records.splice(1 + r.below(Math.max(1, w.records.length - 1)), 0, touch(w, { type, flags: r.below(2), body }));
      return {
        label: `record of type 0x${type.toString(16)} inserted`,
        // A short SYNC is only an error to a live destination: others skip SYNCs unread.
        invalid:
          type === 0x0000_0077 || type === 1 ? 'stream' : type === 0x8000_0010 && body.length < 8 ? 'live' : null,
      };
    }
    case 6: {
      // SYNC records with odd sequence numbers: a live destination acknowledges them.
      const body = new Uint8Array(8);
      new DataView(body.buffer, body.byteOffset, body.length).setBigUint64(0, r.pick([0n, 1n, 999n, U64_MAX]), true);
      w.records.splice(
        1 + r.below(Math.max(1, w.records.length - 1)),
        0,
        touch(w, { type: 0x8000_0010, flags: 0, body }),
      );
      return { label: 'SYNC inserted', invalid: null };
    }
    case 7: {
      if (endAt < 0 || w.touched.has(w.records[endAt]!)) return null;
      w.keepEnd = true;
      const body = w.records[endAt]!.body.slice();
      const v = new DataView(body.buffer, body.byteOffset, body.length);
      v.setUint32(r.pick([0, 8, 16, 24]), r.u32(), true);
      w.records[endAt] = touch(w, { ...w.records[endAt]!, body });
      return { label: 'END totals changed', invalid: 'stream', ifEndMatches: null };
    }
    default: {
      // Every section before RAM moved after it (or the reverse): the order a migration uses.
      const ramFirst =
        w.records.findIndex((x) => x.type === RecordType.SECTION) >
        w.records.findIndex((x) => x.type === RecordType.RAM_PAGES);
      w.records = regroupSections(w.records, ramFirst);
      return { label: ramFirst ? 'sections moved before RAM' : 'sections moved after RAM', invalid: null };
    }
  }
};

const MUTATORS: ReadonlyArray<[Mutator, number]> = [
  [mutateField, 40],
  [mutateEnvelope, 6],
  [mutateSectionRecord, 14],
  [mutateHeader, 10],
  [mutateDeep, 5],
  [mutateRam, 13],
  [mutateStructure, 12],
];

function pickMutator(r: Rng): Mutator {
  const total = MUTATORS.reduce((a, [, wt]) => a + wt, 0);
  let x = r.below(total);
  for (const [m, wt] of MUTATORS) {
    if (x < wt) return m;
    x -= wt;
  }
  return MUTATORS[0]![0];
}

/** Applies 1 to 3 mutations to `seed` and frames the result. */
export function mutateStream(seed: ParsedStream, info: SeedInfo, r: Rng): MutatedStream {
  const w: Work = {
    records: seed.records.map((x) => ({ ...x })),
    header: decodeMsgpack(seed.records[0]!.body) as Record<string, unknown>,
    headerDirty: false,
    touched: new Set(),
    headerTouched: false,
  };
  const n = r.chance(0.8) ? 1 : r.range(2, 3);
  const mutations: Mutation[] = [];
  for (let tries = 0; mutations.length < n && tries < 20; tries++) {
    const m = pickMutator(r)(w, info, r);
    if (m) mutations.push(m);
  }
  if (w.headerDirty) w.records[0] = { ...w.records[0]!, body: encodeMsgpack(w.header) };
  settleEnd(w, mutations);
  let bytes = buildFramed(w);
  let truncatedAt: number | undefined;
  if (w.truncateTo === -1) {
    truncatedAt = r.below(bytes.length);
    bytes = bytes.subarray(0, truncatedAt);
  }
  return truncatedAt === undefined ? { bytes, mutations } : { bytes, mutations, truncatedAt };
}

function buildFramed(w: Work): Uint8Array {
  return buildStream({ preamble: new Uint8Array(0), records: w.records }, { keepEnd: w.keepEnd ?? false });
}
