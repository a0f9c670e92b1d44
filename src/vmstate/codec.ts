// State ⇄ msgpack-ready values.
//
// Wire form of one section (the "envelope"), chosen for msgpack:
//
//   { v: <version written>,
//     f: [<field values in declaration order, fields newer than v absent>],
//     s: { "<parent>/<key>": { v, f, s?, o?: true }, ... } }   // only if any
//
// Structs nest as arrays the same way; u64/i64 are bigint (encode with
// MSGPACK_OPTIONS), bytes are Uint8Array.  A subsection carries `o: true` when
// its writer declared it optional: a reader that does not know it skips it;
// an unknown subsection without `o` is refused.  Positional fields keep the
// payload small (see tools/bench/vmstate.ts); the price is that a field can
// only be added (with `since`), never removed or moved, which checkSchemas
// reports.

import { VmstateError } from '../errors.js';
import { compileFields } from './compile.js';
import type { Layout } from './compile.js';
import type { AnyDescriptor, StateOf } from './define.js';
import { describe, isRecord, prefixError } from './values.js';
import type { StateRecord } from './values.js';

/** Options for @msgpack/msgpack `encode`/`decode` of envelopes: 64-bit fields are bigint. */
export const MSGPACK_OPTIONS = { useBigInt64: true } as const;

export interface Envelope {
  v: number;
  f: unknown;
  s?: Record<string, SubEnvelope>;
}
export interface SubEnvelope extends Envelope {
  o?: true;
}

/** Bounds on untrusted input; a field's own sizes come from its (trusted) descriptor. */
export interface DecodeLimits {
  /** Subsection entries in one envelope, known or not. */
  maxSubsections: number;
  /** Nesting of structs, arrays and subsections in a schema. */
  maxDepth: number;
  /** Fields of one struct in a schema. */
  maxFields: number;
  /** Length of one array or varArray in a schema. */
  maxArrayLength: number;
  /** Size of one bytes field in a schema. */
  maxBytes: number;
  /** Scalars and byte strings a schema's section may expand to (bounds default filling). */
  maxElements: number;
}

export const DEFAULT_LIMITS: Readonly<DecodeLimits> = {
  maxSubsections: 64,
  maxDepth: 16,
  maxFields: 4096,
  maxArrayLength: 1 << 20,
  maxBytes: 64 << 20,
  maxElements: 1 << 22,
};

export interface EncodeOptions {
  /**
   * Write an older version (for a destination that only reads that):
   * fields newer than it are dropped.  Default: the descriptor's version.
   */
  version?: number;
  /** Internal: struct layout, for the benchmark's comparison. */
  layout?: Layout;
}

export interface DecodeOptions {
  limits?: Partial<DecodeLimits>;
  /** Internal: struct layout, for the benchmark's comparison. */
  layout?: Layout;
}

export function encodeState<D extends AnyDescriptor>(desc: D, state: StateOf<D>, opts: EncodeOptions = {}): Envelope {
  return encodeSection(desc, state, opts.version ?? desc.version, opts.layout ?? 'array');
}

function encodeSection(desc: AnyDescriptor, state: unknown, version: number, layout: Layout): Envelope {
  if (!Number.isSafeInteger(version) || version < desc.minVersion || version > desc.version) {
    throw new VmstateError(
      `section ${desc.name} cannot be written at version ${version} (reads ${desc.minVersion}..${desc.version})`,
    );
  }
  const s = desc.preSave ? runHook(desc, 'preSave', () => desc.preSave!(state)) : state;
  if (!isRecord(s)) throw new VmstateError(`section ${desc.name}: expected a state object, got ${describe(s)}`);
  const env: Envelope = { v: version, f: compileFields(desc.fields, version, layout).enc(s) };
  for (const [key, sub] of Object.entries(desc.subsections)) {
    const needed = sub.needed ? runHook(desc, `needed(${key})`, () => sub.needed!(s)) : s[key] !== undefined;
    if (!needed) continue;
    try {
      if (s[key] === undefined) throw new VmstateError('needed but absent from the state');
      const e: SubEnvelope = encodeSection(sub.state, s[key], sub.state.version, layout);
      if (sub.optional) e.o = true;
      (env.s ??= {})[sub.state.name] = e;
    } catch (err) {
      throw prefixError(err, `/${key}`);
    }
  }
  return env;
}

/**
 * Validates `value` completely against `desc` and returns a fresh state:
 * older versions are upgraded, too old/new ones refused, unknown optional
 * subsections skipped.  Throws only VmstateError, whose path is relative to
 * the section (`regs.rax`, `/xen_vcpu.xen_virq[3]`); callers prefix the
 * section instance (`cpu[1]`).
 */
export function decodeState<D extends AnyDescriptor>(desc: D, value: unknown, opts: DecodeOptions = {}): StateOf<D> {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  try {
    return decodeSection(desc, value, limits, opts.layout ?? 'array') as StateOf<D>;
  } catch (e) {
    // Only a hostile object (a throwing getter, a Proxy) gets here as anything else.
    throw e instanceof VmstateError ? e : prefixError(e, '');
  }
}

function decodeSection(desc: AnyDescriptor, value: unknown, limits: DecodeLimits, layout: Layout): StateRecord {
  if (!isRecord(value))
    throw new VmstateError(`section ${desc.name}: expected an envelope map, got ${describe(value)}`);
  const v = value.v;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
    throw new VmstateError(`section ${desc.name}: version must be an integer, got ${describe(v)}`);
  }
  if (v > desc.version)
    throw new VmstateError(
      `section ${desc.name}: input version ${v} is newer than ${desc.version}, the newest this build reads`,
    );
  if (v < desc.minVersion)
    throw new VmstateError(
      `section ${desc.name}: input version ${v} is older than ${desc.minVersion}, the oldest this build reads`,
    );
  const state = compileFields(desc.fields, v, layout).dec(value.f) as StateRecord;

  if (value.s !== undefined) {
    if (!isRecord(value.s))
      throw new VmstateError(`section ${desc.name}: subsections must be a map, got ${describe(value.s)}`);
    const entries = Object.entries(value.s);
    if (entries.length > limits.maxSubsections) {
      throw new VmstateError(
        `section ${desc.name}: ${entries.length} subsections exceed the limit of ${limits.maxSubsections}`,
      );
    }
    for (const [name, sub] of entries) {
      const key = subsectionKey(desc, name);
      if (key === null) {
        if (isRecord(sub) && sub.o === true) continue;
        const ver = isRecord(sub) ? ` (version ${describe(sub.v)})` : '';
        throw new VmstateError(
          `section ${desc.name}: unknown mandatory subsection ${name}${ver}; it is not marked optional, so it cannot be skipped`,
        );
      }
      try {
        state[key] = decodeSection(desc.subsections[key]!.state, sub, limits, layout);
      } catch (err) {
        throw prefixError(err, `/${key}`);
      }
    }
  }
  if (v < desc.version && desc.upgrade) runHook(desc, 'upgrade', () => desc.upgrade!(state, v));
  if (desc.postLoad) runHook(desc, 'postLoad', () => desc.postLoad!(state));
  return state;
}

function subsectionKey(desc: AnyDescriptor, name: string): string | null {
  const prefix = `${desc.name}/`;
  if (!name.startsWith(prefix)) return null;
  const key = name.slice(prefix.length);
  return Object.hasOwn(desc.subsections, key) ? key : null;
}

function runHook<T>(desc: AnyDescriptor, hook: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof VmstateError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    throw new VmstateError(`section ${desc.name}: ${hook} hook failed: ${msg}`, '', { cause: e });
  }
}
