// `defineState`: a section descriptor, modelled on QEMU's VMStateDescription.
// The descriptor is plain data plus optional hooks; its phantom type gives
// `StateOf<typeof d>`, so no interface repeats the field list.

import { VmstateError } from '../errors.js';
import { INT_RANGES } from './fields.js';
import type { FieldMap, FieldSpec, StructValue, Typed } from './fields.js';
import { compileField } from './compile.js';
import type { StateRecord } from './values.js';

/**
 * A subsection: a section of its own (name `<parent>/<key>`, own versions)
 * written inside its parent when `needed(parent)` says so.  `optional` is
 * written to the stream: a reader that does not know the subsection may then
 * skip it instead of refusing the whole section.
 */
export interface Subsection {
  readonly state: AnyDescriptor;
  readonly optional: boolean;
  /** Default: the parent state holds a value under the subsection's key. */
  needed?(parent: StateRecord): boolean;
}
export type SubsectionMap = Readonly<Record<string, Subsection>>;

export interface StateDescriptor<S> extends Typed<S> {
  readonly name: string;
  readonly version: number;
  readonly minVersion: number;
  readonly fields: FieldMap;
  readonly subsections: SubsectionMap;
  /** Returns the state to write; may be the argument itself. */
  preSave?(state: S): S;
  /** Computes fields of input older than `version` that have no plain default. */
  upgrade?(state: S, fromVersion: number): void;
  /** Checks or completes a decoded state; throw VmstateError to refuse it. */
  postLoad?(state: S): void;
}

/** Any descriptor; hooks are methods so every `StateDescriptor<S>` fits. */
export type AnyDescriptor = StateDescriptor<unknown>;
export type StateOf<D> = D extends StateDescriptor<infer S> ? S : never;

/** Subsection descriptors by key: what `defineState` infers the state type from. */
export type SubDescriptors = Readonly<Record<string, AnyDescriptor>>;
type SubStates<M extends SubDescriptors> = { -readonly [K in keyof M]?: StateOf<M[K]> };
export type SectionState<F extends FieldMap, M extends SubDescriptors> = StructValue<F> & SubStates<M> extends infer S
  ? { [K in keyof S]: S[K] }
  : never;

export interface StateDefinition<F extends FieldMap, M extends SubDescriptors> {
  readonly name: string;
  readonly version: number;
  /** Oldest input version still loaded; defaults to `version`. */
  readonly minVersion?: number;
  readonly fields: F;
  /** `needed` sees the parent's own fields, typed. */
  readonly subsections?: {
    readonly [K in keyof M]: { state: M[K]; optional: boolean; needed?(parent: StructValue<F>): boolean };
  };
  preSave?(state: SectionState<F, M>): SectionState<F, M>;
  upgrade?(state: SectionState<F, M>, fromVersion: number): void;
  postLoad?(state: SectionState<F, M>): void;
}

export function defineState<const F extends FieldMap, const M extends SubDescriptors = {}>(
  def: StateDefinition<F, M>,
): StateDescriptor<SectionState<F, M>> {
  const desc = {
    ...def,
    minVersion: def.minVersion ?? def.version,
    subsections: (def.subsections ?? {}) as SubsectionMap,
  };
  checkDescriptor(desc);
  return desc as StateDescriptor<SectionState<F, M>>;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const isCount = (n: unknown, min = 0): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= min;

/**
 * Refuses a descriptor that could not round-trip: bad versions, a late field
 * with nothing to fill it, a count field that does not exist, an invalid
 * default.  Also run on descriptors rebuilt from an untrusted schema.
 */
export function checkDescriptor(d: AnyDescriptor): void {
  const where = d.name;
  if (typeof d.name !== 'string' || d.name === '') throw new VmstateError('a section needs a name');
  if (!isCount(d.version, 1))
    throw new VmstateError(`version must be an integer >= 1, got ${String(d.version)}`, where);
  if (!isCount(d.minVersion, 1) || d.minVersion > d.version) {
    throw new VmstateError(`minVersion must be between 1 and version ${d.version}, got ${String(d.minVersion)}`, where);
  }
  const ctx: FieldCtx = { version: d.version, minVersion: d.minVersion, upgrade: typeof d.upgrade === 'function' };
  try {
    checkFields(d.fields, ctx, true);
  } catch (e) {
    throw e instanceof VmstateError ? e.withPrefix(where) : e;
  }
  for (const [key, sub] of Object.entries(d.subsections)) {
    if (!IDENT.test(key)) throw new VmstateError(`bad subsection key ${JSON.stringify(key)}`, where);
    if (sub.state.name !== `${d.name}/${key}`) {
      throw new VmstateError(`subsection ${key} must be named ${d.name}/${key}, not ${sub.state.name}`, where);
    }
    if (key in d.fields) throw new VmstateError(`subsection ${key} has the name of a field`, where);
  }
}

interface FieldCtx {
  readonly version: number;
  readonly minVersion: number;
  readonly upgrade: boolean;
}

function checkFields(fields: FieldMap, ctx: FieldCtx, versioned: boolean): void {
  for (const [key, f] of Object.entries(fields)) {
    try {
      if (!IDENT.test(key)) throw new VmstateError('field names must be identifiers');
      checkField(f, ctx, versioned);
      if (f.kind === 'varArray') {
        const count = fields[f.lengthField];
        if (!count || !Object.hasOwn(INT_RANGES, count.kind) || count.kind.startsWith('i')) {
          throw new VmstateError(`lengthField ${f.lengthField} must be an unsigned integer field of the same struct`);
        }
        if ((count.since ?? 0) !== (f.since ?? 0))
          throw new VmstateError(`lengthField ${f.lengthField} must have the same since`);
      }
    } catch (e) {
      throw e instanceof VmstateError ? e.withPrefix(key) : e;
    }
  }
}

function checkField(f: FieldSpec, ctx: FieldCtx, versioned: boolean): void {
  if (!versioned && (f.since !== undefined || 'default' in f)) {
    throw new VmstateError('array elements take since/default from their array');
  }
  if (f.since !== undefined && (!isCount(f.since, 1) || f.since > ctx.version)) {
    throw new VmstateError(`since must be between 1 and version ${ctx.version}, got ${String(f.since)}`);
  }
  if ((f.since ?? 0) > ctx.minVersion && !('default' in f) && !ctx.upgrade) {
    throw new VmstateError(`appeared in version ${f.since}: needs a default or an upgrade hook`);
  }
  switch (f.kind) {
    case 'bytes':
      if (!isCount(f.size)) throw new VmstateError(`bad bytes size ${String(f.size)}`);
      break;
    case 'array':
    case 'varArray':
      if (!isCount(f.kind === 'array' ? f.length : f.max)) throw new VmstateError('bad array length');
      checkField(f.of, ctx, false);
      break;
    case 'struct':
      checkFields(f.fields, ctx, true);
      break;
    case 'enum': {
      if (!['u8', 'u16', 'u32'].includes(f.base))
        throw new VmstateError(`enum base must be u8, u16 or u32, not ${f.base}`);
      const [lo, hi] = INT_RANGES[f.base];
      const vals = Object.entries(f.values);
      if (vals.length === 0) throw new VmstateError('enum has no values');
      for (const [name, v] of vals) {
        if (!isCount(v, lo) || v > hi) throw new VmstateError(`enum value ${name}=${String(v)} out of ${f.base} range`);
      }
      if (new Set(vals.map(([, v]) => v)).size !== vals.length) throw new VmstateError('enum values must be distinct');
      break;
    }
    default:
      if (!Object.hasOwn(INT_RANGES, f.kind) && f.kind !== 'u64' && f.kind !== 'i64' && f.kind !== 'bool') {
        throw new VmstateError(`unknown field kind ${String((f as { kind: unknown }).kind)}`);
      }
  }
  // The default must be a value the field could hold; validated by its own encoder.
  if ('default' in f) {
    try {
      compileField(f, ctx.version, 'array').enc(f.default);
    } catch (e) {
      throw e instanceof VmstateError ? new VmstateError(`bad default: ${e.reason}`, e.path) : e;
    }
  }
}
