// Walks a section payload (the vmstate envelope {v, f, s}, src/vmstate/codec.ts)
// alongside the schema the stream embeds for it, and lists every value with
// its path, kind and a setter: the fuzzer then changes fields by meaning
// (a port, a vCPU index, a GPA) rather than bytes at random.
import type { FieldSchema, NamedFieldSchema, SectionSchema } from '../../src/vmstate/schema.js';

export interface FieldRef {
  /** `port_table[3].vcpu`, `/cpu/xen_vcpu.xen_vcpu_info_gpa`. */
  readonly path: string;
  /** The field's own name (array elements inherit it), for meaning-based values. */
  readonly name: string;
  readonly schema: FieldSchema;
  readonly get: () => unknown;
  readonly set: (v: unknown) => void;
}

function isEnvelope(v: unknown): v is { v: unknown; f: unknown; s?: unknown } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function walkField(
  schema: FieldSchema,
  name: string,
  path: string,
  holder: unknown[] | Record<string, unknown>,
  key: number | string,
  out: FieldRef[],
): void {
  const get = (): unknown => (holder as Record<string | number, unknown>)[key];
  const set = (v: unknown): void => {
    (holder as Record<string | number, unknown>)[key] = v;
  };
  out.push({ path, name, schema, get, set });
  const value = get();
  if (!Array.isArray(value)) return;
  if (schema.kind === 'struct') walkStruct(schema.fields, value, path, out);
  else if (schema.kind === 'array' || schema.kind === 'varArray') {
    for (let i = 0; i < value.length; i++) walkField(schema.of, name, `${path}[${i}]`, value, i, out);
  }
}

function walkStruct(fields: readonly NamedFieldSchema[], values: unknown[], prefix: string, out: FieldRef[]): void {
  for (let i = 0; i < fields.length && i < values.length; i++) {
    const f = fields[i]!;
    walkField(f, f.name, prefix ? `${prefix}.${f.name}` : f.name, values, i, out);
  }
}

/** Every field of `payload` (and of its subsections) that `schema` describes. */
export function listFields(schema: SectionSchema, payload: unknown, prefix = ''): FieldRef[] {
  const out: FieldRef[] = [];
  if (!isEnvelope(payload) || !Array.isArray(payload.f)) return out;
  const version = typeof payload.v === 'number' ? payload.v : schema.version;
  const present = schema.fields.filter((f) => f.since === undefined || f.since <= version);
  walkStruct(present, payload.f, prefix, out);
  const subs = payload.s;
  if (isEnvelope(subs)) {
    for (const sub of schema.subsections ?? []) {
      const env = (subs as Record<string, unknown>)[sub.section.name];
      if (env !== undefined) out.push(...listFields(sub.section, env, `/${sub.section.name}`));
    }
  }
  return out;
}

/** Whether a field holds an integer (plain, enum or 64-bit). */
export function isIntField(s: FieldSchema): boolean {
  return s.kind === 'enum' || /^[ui](8|16|32|64)$/.test(s.kind);
}

/** Bits of an integer field (enums by their base). */
export function intBits(s: FieldSchema): number {
  const k = s.kind === 'enum' ? s.base : s.kind;
  const m = /^[ui](8|16|32|64)$/.exec(k);
  return m ? Number(m[1]) : 0;
}
