// Helpers over state values shared by the codec, the schema and the diff.

import { VmstateError } from '../errors.js';
import type { FieldSpec } from './fields.js';

/** A plain state object: what structs and sections decode to. */
export type StateRecord = Record<string, unknown>;

export function isRecord(v: unknown): v is StateRecord {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** The value a field has when nothing else is known: all zero, first enum value. */
export function zeroOf(spec: FieldSpec): unknown {
  switch (spec.kind) {
    case 'u64':
    case 'i64':
      return 0n;
    case 'bool':
      return false;
    case 'bytes':
      return new Uint8Array(spec.size);
    case 'array':
      return Array.from({ length: spec.length }, () => zeroOf(spec.of));
    case 'varArray':
      return [];
    case 'struct': {
      const out: StateRecord = {};
      for (const [k, f] of Object.entries(spec.fields)) out[k] = zeroOf(f);
      return out;
    }
    case 'enum': {
      const values = Object.values(spec.values);
      return values.includes(0) ? 0 : (values[0] ?? 0);
    }
    default:
      return 0;
  }
}

/** Deep copy, so a default or a decoded value is never shared with another state. */
export function cloneValue<T>(v: T): T {
  if (v instanceof Uint8Array) return v.slice() as T;
  if (Array.isArray(v)) return v.map(cloneValue) as T;
  if (isRecord(v)) {
    const out: StateRecord = {};
    for (const [k, x] of Object.entries(v)) out[k] = cloneValue(x);
    return out as T;
  }
  return v;
}

/** Short description of a value for error messages: never dumps large input. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v instanceof Uint8Array) return `bytes(${v.length})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  switch (typeof v) {
    case 'number':
      return Number.isInteger(v) ? `${v}` : `non-integer ${v}`;
    case 'bigint':
      return `${v}n`;
    case 'string':
      return `string ${JSON.stringify(v.length > 32 ? v.slice(0, 32) + '…' : v)}`;
    case 'object':
      return 'map';
    default:
      return typeof v;
  }
}

/**
 * Runs `fn` and gives any error the path segment `seg`; anything that is not
 * a VmstateError (a bug or a hook's own error) is wrapped, so callers of the
 * decoder only ever see VmstateError.
 */
export function atPath<T>(seg: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw prefixError(e, seg);
  }
}

export function prefixError(e: unknown, seg: string): VmstateError {
  if (e instanceof VmstateError) return e.withPrefix(seg);
  const msg = e instanceof Error ? e.message : String(e);
  return new VmstateError(`unexpected failure: ${msg}`, seg, { cause: e });
}
