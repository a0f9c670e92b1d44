// The JSON schema of a descriptor, embedded in every stream, so a section can
// be read with no local descriptor (the inspector, files from other builds).
// The schema is the field tree itself, with struct fields as an ordered list
// (JSON objects do not promise an order) and defaults in JSON form: 64-bit
// integers as decimal strings, bytes as lowercase hex.  A schema read from a
// file is untrusted: `descriptorFromSchema` checks it within DecodeLimits.

import { VmstateError } from '../errors.js';
import { decodeState, DEFAULT_LIMITS } from './codec.js';
import type { DecodeLimits, DecodeOptions } from './codec.js';
import { checkDescriptor } from './define.js';
import type { AnyDescriptor, Subsection } from './define.js';
import type { BigKind, EnumBase, FieldMap, FieldSpec, IntKind } from './fields.js';
import { INT_RANGES } from './fields.js';
import { describe, isRecord, prefixError } from './values.js';
import type { StateRecord } from './values.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

interface Versioned {
  since?: number;
  default?: JsonValue;
}
export type FieldSchema = Versioned &
  (
    | { kind: IntKind | BigKind | 'bool' }
    | { kind: 'bytes'; size: number }
    | { kind: 'array'; of: FieldSchema; length: number }
    | { kind: 'varArray'; of: FieldSchema; lengthField: string; max: number }
    | { kind: 'struct'; fields: NamedFieldSchema[] }
    | { kind: 'enum'; base: EnumBase; values: Record<string, number> }
  );
export type NamedFieldSchema = FieldSchema & { name: string };

export interface SectionSchema {
  name: string;
  version: number;
  minVersion: number;
  fields: NamedFieldSchema[];
  subsections: { optional: boolean; section: SectionSchema }[];
  /** Present when the descriptor computes late fields in an upgrade hook rather than by default. */
  upgrade?: true;
}

export function schemaOf(desc: AnyDescriptor): SectionSchema {
  const out: SectionSchema = {
    name: desc.name,
    version: desc.version,
    minVersion: desc.minVersion,
    fields: namedFields(desc.fields),
    subsections: Object.values(desc.subsections).map((s) => ({ optional: s.optional, section: schemaOf(s.state) })),
  };
  if (desc.upgrade) out.upgrade = true;
  return out;
}

const namedFields = (fields: FieldMap): NamedFieldSchema[] =>
  Object.entries(fields).map(([name, f]) => ({ name, ...fieldSchema(f) }));

function fieldSchema(f: FieldSpec): FieldSchema {
  let out: FieldSchema;
  switch (f.kind) {
    case 'bytes':
      out = { kind: f.kind, size: f.size };
      break;
    case 'array':
      out = { kind: f.kind, of: fieldSchema(f.of), length: f.length };
      break;
    case 'varArray':
      out = { kind: f.kind, of: fieldSchema(f.of), lengthField: f.lengthField, max: f.max };
      break;
    case 'struct':
      out = { kind: f.kind, fields: namedFields(f.fields) };
      break;
    case 'enum':
      out = { kind: f.kind, base: f.base, values: { ...f.values } };
      break;
    default:
      out = { kind: f.kind };
  }
  if (f.since !== undefined) out.since = f.since;
  if ('default' in f) out.default = toJson(f, f.default);
  return out;
}

/** A state value in JSON form (the form schemas and `inspect --json` use). */
export function toJson(f: FieldSpec, v: unknown): JsonValue {
  switch (f.kind) {
    case 'u64':
    case 'i64':
      return String(v);
    case 'bytes':
      return Buffer.from(v as Uint8Array).toString('hex');
    case 'array':
    case 'varArray':
      return (v as unknown[]).map((x) => toJson(f.of, x));
    case 'struct': {
      const o: { [k: string]: JsonValue } = {};
      for (const [k, sf] of Object.entries(f.fields)) o[k] = toJson(sf, (v as StateRecord)[k]);
      return o;
    }
    default:
      return v as JsonValue;
  }
}

/** Inverse of toJson; shapes only, the codec validates ranges and sizes. */
function fromJson(f: FieldSpec, j: unknown): unknown {
  switch (f.kind) {
    case 'u64':
    case 'i64':
      if (typeof j === 'string' && /^-?\d{1,20}$/.test(j)) return BigInt(j);
      break;
    case 'bytes':
      if (typeof j === 'string' && /^(?:[0-9a-f]{2})*$/.test(j)) return new Uint8Array(Buffer.from(j, 'hex'));
      break;
    case 'array':
    case 'varArray':
      if (Array.isArray(j)) return j.map((x) => fromJson(f.of, x));
      break;
    case 'struct':
      if (isRecord(j)) return Object.fromEntries(Object.entries(f.fields).map(([k, sf]) => [k, fromJson(sf, j[k])]));
      break;
    default:
      return j;
  }
  throw new VmstateError(`default ${describe(j)} is not the JSON form of ${f.kind}`);
}

const schemaCache = new WeakMap<object, AnyDescriptor>();

/**
 * Decodes a section with only its schema: plain objects, 64-bit values as
 * bigint, no hooks (so late fields without a default read as zero).  The
 * descriptor rebuilt from a schema object is cached by identity: do not
 * mutate a schema after using it.
 */
export function decodeWithSchema(schema: unknown, value: unknown, opts: DecodeOptions = {}): StateRecord {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  let desc = isRecord(schema) ? schemaCache.get(schema) : undefined;
  if (!desc) {
    try {
      desc = descriptorFromSchema(schema, limits);
    } catch (e) {
      throw e instanceof VmstateError ? e : prefixError(e, '');
    }
    if (isRecord(schema)) schemaCache.set(schema, desc);
  }
  return decodeState(desc, value, opts) as StateRecord;
}

/** Rebuilds a hook-less descriptor from an untrusted schema, or throws VmstateError. */
export function descriptorFromSchema(schema: unknown, limits: DecodeLimits = DEFAULT_LIMITS): AnyDescriptor {
  return section(schema, limits, 0);
}

function section(s: unknown, limits: DecodeLimits, depth: number): AnyDescriptor {
  if (!isRecord(s)) throw new VmstateError(`schema: expected a section, got ${describe(s)}`);
  const name = typeof s.name === 'string' ? s.name : '?';
  try {
    if (depth > limits.maxDepth) throw new VmstateError(`nesting deeper than ${limits.maxDepth}`);
    if (typeof s.name !== 'string') throw new VmstateError('section name must be a string');
    const subs: Record<string, Subsection> = {};
    const list = s.subsections ?? [];
    if (!Array.isArray(list) || list.length > limits.maxSubsections) throw new VmstateError('bad subsection list');
    for (const entry of list) {
      if (!isRecord(entry) || typeof entry.optional !== 'boolean') throw new VmstateError('bad subsection entry');
      const state = section(entry.section, limits, depth + 1);
      subs[state.name.slice(name.length + 1)] = { state, optional: entry.optional };
    }
    const budget = { left: limits.maxElements };
    const desc: AnyDescriptor = {
      name,
      version: s.version as number,
      minVersion: s.minVersion as number,
      fields: structFields(s.fields, limits, depth + 1, budget, 1),
      subsections: subs,
    };
    // Late fields without a default were filled by the writer's upgrade hook; read them as zero.
    if (s.upgrade === true) desc.upgrade = () => {};
    checkDescriptor(desc);
    return desc;
  } catch (e) {
    throw prefixError(e, `schema(${name})`);
  }
}

interface Budget {
  left: number;
}

function structFields(list: unknown, limits: DecodeLimits, depth: number, budget: Budget, copies: number): FieldMap {
  if (!Array.isArray(list) || list.length > limits.maxFields)
    throw new VmstateError(`fields must be a list of at most ${limits.maxFields}`);
  const out: Record<string, FieldSpec> = {};
  for (const f of list) {
    if (!isRecord(f) || typeof f.name !== 'string' || Object.hasOwn(out, f.name))
      throw new VmstateError('bad or repeated field name');
    try {
      out[f.name] = field(f, limits, depth, budget, copies);
    } catch (e) {
      throw prefixError(e, f.name);
    }
  }
  return out;
}

function field(f: unknown, limits: DecodeLimits, depth: number, budget: Budget, copies: number): FieldSpec {
  if (!isRecord(f)) throw new VmstateError(`expected a field, got ${describe(f)}`);
  if (depth > limits.maxDepth) throw new VmstateError(`nesting deeper than ${limits.maxDepth}`);
  const count = (n: unknown, max: number): number => {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > max)
      throw new VmstateError(`size ${describe(n)} is not within 0..${max}`);
    return n;
  };
  // Every scalar or byte string the field can expand to, times the copies its arrays make.
  const spend = (n: number): void => {
    budget.left -= n;
    if (budget.left < 0) throw new VmstateError(`section expands to more than ${limits.maxElements} elements`);
  };
  let spec: FieldSpec;
  switch (f.kind) {
    case 'bytes':
      spec = { kind: 'bytes', size: count(f.size, limits.maxBytes) };
      spend(copies);
      break;
    case 'array':
    case 'varArray': {
      const n = count(f.kind === 'array' ? f.length : f.max, limits.maxArrayLength);
      const of = field(f.of, limits, depth + 1, budget, copies * Math.max(n, 1));
      spec =
        f.kind === 'array'
          ? { kind: 'array', of, length: n }
          : { kind: 'varArray', of, max: n, lengthField: String(f.lengthField) };
      break;
    }
    case 'struct':
      spec = { kind: 'struct', fields: structFields(f.fields, limits, depth + 1, budget, copies) };
      break;
    case 'enum':
      if (!isRecord(f.values)) throw new VmstateError('enum values must be a map');
      spec = { kind: 'enum', base: f.base as EnumBase, values: f.values as Record<string, number> };
      spend(copies);
      break;
    default:
      if (
        typeof f.kind !== 'string' ||
        !(Object.hasOwn(INT_RANGES, f.kind) || ['u64', 'i64', 'bool'].includes(f.kind))
      ) {
        throw new VmstateError(`unknown field kind ${describe(f.kind)}`);
      }
      spec = { kind: f.kind as IntKind };
      spend(copies);
  }
  const out: FieldSpec & { since?: number; default?: unknown } = spec;
  if (f.since !== undefined) out.since = f.since as number;
  if ('default' in f) out.default = fromJson(spec, f.default);
  return out;
}
