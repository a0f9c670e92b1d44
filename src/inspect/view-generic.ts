// Any section, rendered from its descriptor alone: the fallback view, and the
// one used for sections decoded from an embedded schema.  Enum values get
// their names, 64-bit addresses are hex, byte strings are summarised.
import type { AnyDescriptor, FieldMap, FieldSpec, JsonValue, StateRecord } from '../vmstate/index.js';
import { toJson } from '../vmstate/index.js';
import { hex } from './text.js';

/** A section state in JSON form (`toJson`: 64-bit integers as decimal strings, bytes as hex), subsections under their keys. */
export function sectionJson(desc: AnyDescriptor, state: StateRecord): { [k: string]: JsonValue } {
  const out: { [k: string]: JsonValue } = {};
  for (const [k, f] of Object.entries(desc.fields)) out[k] = toJson(f, state[k]);
  for (const [k, sub] of Object.entries(desc.subsections)) {
    const s = state[k];
    if (s !== undefined) out[`/${k}`] = sectionJson(sub.state, s as StateRecord);
  }
  return out;
}

/** Names whose 64-bit values are quantities, not addresses: shown in decimal. */
const QUANTITY = /(ns$|_ns_|nsec|_sec$|sec$|khz|count|period|^nr_|_nr$|clock|time|tsc)/;
/** Names whose small integers read better in hex. */
const HEXISH = /(gpa|addr|base|vector|flags|index|function|^e[abcd]x$|selector|limit|xcr|type$)/;

export function enumName(f: FieldSpec & { kind: 'enum' }, v: number): string {
  const name = Object.entries(f.values).find(([, x]) => x === v)?.[0];
  return name === undefined ? `${v} (no name)` : `${name} (${v})`;
}

/** One scalar as text; `name` picks hex or decimal. */
export function scalarText(f: FieldSpec, v: unknown, name: string): string {
  switch (f.kind) {
    case 'u64':
    case 'i64':
      return QUANTITY.test(name) ? String(v) : hex(v as bigint);
    case 'bool':
      return v ? 'yes' : 'no';
    case 'enum':
      return enumName(f, v as number);
    case 'bytes':
      return bytesSummary(v as Uint8Array);
    default:
      return HEXISH.test(name) && typeof v === 'number' ? hex(v) : String(v);
  }
}

export function bytesSummary(b: Uint8Array): string {
  let nz = 0;
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) nz++;
  if (b.length <= 16) return b.length === 0 ? '(empty)' : Buffer.from(b).toString('hex');
  if (nz === 0) return `${b.length} bytes, all zero`;
  return `${b.length} bytes, ${nz} non-zero: ${Buffer.from(b.subarray(0, 16)).toString('hex')}…`;
}

const isScalar = (f: FieldSpec): boolean => f.kind !== 'struct' && f.kind !== 'array' && f.kind !== 'varArray';

/** Lines for the fields of a struct or section, nested by two spaces. */
export function renderFields(fields: FieldMap, state: StateRecord, indent = ''): string[] {
  const out: string[] = [];
  const scalars = Object.entries(fields).filter(([, f]) => isScalar(f));
  const w = Math.max(0, ...scalars.map(([k]) => k.length));
  for (const [k, f] of Object.entries(fields)) {
    const v = state[k];
    if (isScalar(f)) {
      out.push(`${indent}${k.padEnd(w)}  ${scalarText(f, v, k)}`);
    } else if (f.kind === 'struct') {
      out.push(`${indent}${k}:`, ...renderFields(f.fields, v as StateRecord, `${indent}  `));
    } else if (f.kind === 'array' || f.kind === 'varArray') {
      out.push(...renderArray(k, f.of, v as unknown[], indent));
    }
  }
  return out;
}

function renderArray(name: string, of: FieldSpec, items: unknown[], indent: string): string[] {
  if (items.length === 0) return [`${indent}${name}: (none)`];
  if (isScalar(of)) {
    const texts = items.map((x) => scalarText(of, x, name));
    if (items.length <= 8) return [`${indent}${name}: [${texts.join(', ')}]`];
    // Long arrays (HVM params, VIRQ ports) are mostly zero: list the others by index.
    const nonZero = texts.map((t, i) => [i, t] as const).filter(([i]) => !isZeroValue(items[i]));
    if (nonZero.length === 0) return [`${indent}${name}: ${items.length} entries, all zero`];
    return [
      `${indent}${name}: ${items.length} entries, ${nonZero.length} non-zero:`,
      ...nonZero.map(([i, t]) => `${indent}  [${i}] ${t}`),
    ];
  }
  if (of.kind === 'struct' && Object.values(of.fields).every(isScalar)) {
    const keys = Object.keys(of.fields);
    const rows = (items as StateRecord[]).map((r, i) => [
      String(i),
      ...keys.map((k) => scalarText(of.fields[k]!, r[k], k)),
    ]);
    const w = ['#', ...keys].map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
    const line = (cells: string[]): string => `${indent}  ${cells.map((c, i) => c.padStart(w[i]!)).join('  ')}`;
    return [`${indent}${name}: ${items.length} entries`, line(['#', ...keys]), ...rows.map(line)];
  }
  return items.flatMap((x, i) =>
    of.kind === 'struct'
      ? [`${indent}${name}[${i}]:`, ...renderFields(of.fields, x as StateRecord, `${indent}  `)]
      : renderArray(
          `${name}[${i}]`,
          of.kind === 'array' || of.kind === 'varArray' ? of.of : of,
          x as unknown[],
          indent,
        ),
  );
}

function isZeroValue(v: unknown): boolean {
  if (typeof v === 'bigint') return v === 0n;
  if (typeof v === 'number') return v === 0;
  if (typeof v === 'boolean') return !v;
  if (v instanceof Uint8Array) return v.every((b) => b === 0);
  return false;
}

/** A whole section: its fields, then each subsection present, as `/key`. */
export function renderSection(desc: AnyDescriptor, state: StateRecord, indent = ''): string[] {
  const out = renderFields(desc.fields, state, indent);
  for (const [k, sub] of Object.entries(desc.subsections)) {
    const s = state[k];
    if (s === undefined) continue;
    out.push(
      `${indent}/${k} (${sub.state.name} version ${sub.state.version}${sub.optional ? ', optional' : ''}):`,
      ...renderSection(sub.state, s as StateRecord, `${indent}  `),
    );
  }
  return out;
}
