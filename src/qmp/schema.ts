// Argument schemas for QMP commands: a schema is a plain value that also
// carries the TypeScript type of the arguments it accepts (`ArgsOf<S>`), so a
// handler is typed by the very object that validates its input.  Deliberately
// small: flat objects of scalars, enums and string arrays are all commands need.

import { InputError } from '../errors.js';
import type { JsonValue } from './protocol.js';

type Kind = 'string' | 'integer' | 'number' | 'boolean' | 'enum' | 'string-array';

/** One argument.  `T` is phantom: the type a valid value has. */
export interface Field<T, Optional extends boolean = boolean> {
  readonly kind: Kind;
  readonly optional: Optional;
  /** Inclusive bounds for integer and number; maximum length for string and string-array. */
  readonly min?: number;
  readonly max?: number;
  readonly values?: readonly string[];
  readonly describe?: string;
  /** Never set; only here so `Field<number>` and `Field<string>` differ. */
  readonly __type?: T;
}

export type ArgSchema = { readonly [name: string]: Field<unknown, boolean> };

type Required<S extends ArgSchema> = { [K in keyof S]: S[K] extends Field<unknown, false> ? K : never }[keyof S];
type Optional<S extends ArgSchema> = { [K in keyof S]: S[K] extends Field<unknown, false> ? never : K }[keyof S];
type FieldType<F> = F extends Field<infer T, boolean> ? T : never;
type Flatten<T> = { [K in keyof T]: T[K] };

/** The arguments a handler receives for schema `S`. */
export type ArgsOf<S extends ArgSchema> = Flatten<
  { readonly [K in Required<S>]: FieldType<S[K]> } & { readonly [K in Optional<S>]?: FieldType<S[K]> }
>;

interface Bounds {
  readonly min?: number;
  readonly max?: number;
  readonly describe?: string;
}

export const arg = {
  string: (o: { maxLength?: number; describe?: string } = {}): Field<string, false> => ({
    kind: 'string',
    optional: false,
    max: o.maxLength,
    describe: o.describe,
  }),
  /** A safe integer, optionally bounded. */
  integer: (o: Bounds = {}): Field<number, false> => ({ kind: 'integer', optional: false, ...o }),
  /** Any finite number, optionally bounded. */
  number: (o: Bounds = {}): Field<number, false> => ({ kind: 'number', optional: false, ...o }),
  boolean: (o: { describe?: string } = {}): Field<boolean, false> => ({ kind: 'boolean', optional: false, ...o }),
  enum: <const V extends string>(values: readonly V[], o: { describe?: string } = {}): Field<V, false> => ({
    kind: 'enum',
    optional: false,
    values,
    ...o,
  }),
  stringArray: (o: { maxItems?: number; describe?: string } = {}): Field<readonly string[], false> => ({
    kind: 'string-array',
    optional: false,
    max: o.maxItems,
    describe: o.describe,
  }),
  optional: <T>(f: Field<T, false>): Field<T, true> => ({ ...f, optional: true }),
};

/** How a field is named in messages and in `query-commands`. */
export function describeKind(f: Field<unknown, boolean>): string {
  if (f.kind === 'enum') return (f.values ?? []).map((v) => `'${v}'`).join(' | ');
  return f.kind;
}

/**
 * Checks `input` (a request's `arguments`, or undefined when absent) against
 * `schema` and returns a fresh object holding only the declared fields.
 * Messages follow QEMU's ("Parameter 'port' is missing").
 */
export function validateArgs<S extends ArgSchema>(schema: S, input: JsonValue | undefined): ArgsOf<S> {
  if (input !== undefined && (typeof input !== 'object' || input === null || Array.isArray(input))) {
    throw new InputError("QMP input member 'arguments' must be an object");
  }
  const given = input ?? {};
  // A null-prototype result: a '__proto__' key in the request cannot reach a prototype.
  const out: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(schema, key)) throw new InputError(`Parameter '${key}' is unexpected`);
  }
  for (const [name, field] of Object.entries(schema)) {
    const value = Object.hasOwn(given, name) ? given[name] : undefined;
    if (value === undefined) {
      if (!field.optional) throw new InputError(`Parameter '${name}' is missing`);
      continue;
    }
    const problem = checkField(field, value);
    if (problem) throw new InputError(`Parameter '${name}' ${problem}`);
    out[name] = value;
  }
  return out as ArgsOf<S>;
}

/** Why `value` does not fit `f`, or null when it does. */
function checkField(f: Field<unknown, boolean>, value: JsonValue): string | null {
  const expects = `expects ${describeKind(f)}`;
  switch (f.kind) {
    case 'string':
      if (typeof value !== 'string') return expects;
      if (f.max !== undefined && value.length > f.max) return `is longer than ${f.max} characters`;
      return null;
    case 'boolean':
      return typeof value === 'boolean' ? null : expects;
    case 'enum':
      return typeof value === 'string' && (f.values ?? []).includes(value) ? null : `expects one of ${describeKind(f)}`;
    case 'string-array':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) return 'expects an array of strings';
      if (f.max !== undefined && value.length > f.max) return `has more than ${f.max} items`;
      return null;
    case 'integer':
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return expects;
      if (f.kind === 'integer' && !Number.isSafeInteger(value)) return expects;
      if ((f.min !== undefined && value < f.min) || (f.max !== undefined && value > f.max)) {
        return `must be in ${f.min ?? '-inf'}..${f.max ?? 'inf'}`;
      }
      return null;
    }
  }
}
