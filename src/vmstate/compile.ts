// Turns a field tree into a pair of closures (validate+encode, validate+decode)
// once per (field map, written version, layout), so the per-state work is a
// straight walk with no kind switch.  `tools/bench/vmstate.ts` compares the
// two layouts; the codec uses 'array' (docs/benchmarks.md, "State encoding").

import { VmstateError } from '../errors.js';
import { BIG_RANGES, INT_RANGES } from './fields.js';
import type { BigKind, FieldMap, FieldSpec, IntKind, StructSpec } from './fields.js';
import { cloneValue, describe, isRecord, prefixError, zeroOf } from './values.js';
import type { StateRecord } from './values.js';

/** 'array': a struct is the list of its values in declaration order; 'map': an object keyed by field name. */
export type Layout = 'array' | 'map';

export interface Codec {
  /** Validates a state value and returns its wire form. */
  readonly enc: (v: unknown) => unknown;
  /** Validates a wire value and returns a fresh state value. */
  readonly dec: (v: unknown) => unknown;
}

const cache = new WeakMap<FieldMap, Map<string, Codec>>();

/** Codec of a section's fields as written at `version` (fields with a later `since` absent). */
export function compileFields(fields: FieldMap, version: number, layout: Layout): Codec {
  let perMap = cache.get(fields);
  if (!perMap) cache.set(fields, (perMap = new Map()));
  const key = `${layout}:${version}`;
  let codec = perMap.get(key);
  if (!codec) perMap.set(key, (codec = compileStruct({ kind: 'struct', fields }, version, layout)));
  return codec;
}

export function compileField(spec: FieldSpec, version: number, layout: Layout): Codec {
  switch (spec.kind) {
    case 'u8':
    case 'u16':
    case 'u32':
    case 'i8':
    case 'i16':
    case 'i32':
      return intCodec(spec.kind, null);
    case 'enum':
      return intCodec(spec.base, spec.values);
    case 'u64':
    case 'i64':
      return bigCodec(spec.kind);
    case 'bool':
      return {
        enc: (v) => (typeof v === 'boolean' ? v : fail('bool', v)),
        dec: (v) => (typeof v === 'boolean' ? v : fail('bool', v)),
      };
    case 'bytes': {
      const n = spec.size;
      const check = (v: unknown): Uint8Array =>
        v instanceof Uint8Array && v.length === n ? v : fail(`bytes(${n})`, v);
      // Copy on decode: msgpack hands out views into the whole input buffer.
      return { enc: check, dec: (v) => check(v).slice() };
    }
    case 'array':
    case 'varArray': {
      const el = compileField(spec.of, version, layout);
      const fixed = spec.kind === 'array';
      const n = fixed ? spec.length : spec.max;
      const what = fixed ? `array of ${n}` : `array of at most ${n}`;
      const map =
        (f: (v: unknown) => unknown) =>
        (v: unknown): unknown[] => {
          if (!Array.isArray(v) || (fixed ? v.length !== n : v.length > n)) return fail(what, v);
          const out = new Array<unknown>(v.length);
          for (let i = 0; i < v.length; i++) {
            try {
              out[i] = f(v[i]);
            } catch (e) {
              throw prefixError(e, `[${i}]`);
            }
          }
          return out;
        };
      return { enc: map(el.enc), dec: map(el.dec) };
    }
    case 'struct':
      return compileStruct(spec, version, layout);
  }
}

function fail(expected: string, got: unknown): never {
  throw new VmstateError(`expected ${expected}, got ${describe(got)}`);
}

function intCodec(kind: IntKind, values: Readonly<Record<string, number>> | null): Codec {
  const [lo, hi] = INT_RANGES[kind];
  const allowed = values ? new Set(Object.values(values)) : null;
  const names = values
    ? Object.entries(values)
        .map(([k, x]) => `${k}=${x}`)
        .join(', ')
    : '';
  const check = (x: number): number => {
    if (allowed && !allowed.has(x)) throw new VmstateError(`value ${x} is not one of ${names}`);
    return x;
  };
  const what = `${kind} (${lo}..${hi})`;
  return {
    enc: (v) => (typeof v === 'number' && v >= lo && v <= hi && Number.isInteger(v) ? check(v) : fail(what, v)),
    dec: (v) => {
      if (typeof v === 'number' && v >= lo && v <= hi && Number.isInteger(v)) return check(v);
      // Other msgpack writers may use a 64-bit form for a small value.
      if (typeof v === 'bigint' && v >= BigInt(lo) && v <= BigInt(hi)) return check(Number(v));
      return fail(what, v);
    },
  };
}

function bigCodec(kind: BigKind): Codec {
  const [lo, hi] = BIG_RANGES[kind];
  const what = `${kind} (bigint)`;
  return {
    enc: (v) => (typeof v === 'bigint' && v >= lo && v <= hi ? v : fail(what, v)),
    dec: (v) => {
      if (typeof v === 'bigint') {
        if (v >= lo && v <= hi) return v;
      } else if (typeof v === 'number' && Number.isSafeInteger(v)) {
        // msgpack writes small integers compactly and reads them back as numbers.
        const b = BigInt(v);
        if (b >= lo && b <= hi) return b;
      }
      return fail(what, v);
    },
  };
}

interface Slot {
  readonly key: string;
  readonly codec: Codec;
  /** Position in the written list, or -1 when the field is newer than the input. */
  readonly pos: number;
  readonly fill: unknown;
}

function compileStruct(spec: StructSpec, version: number, layout: Layout): Codec {
  const slots: Slot[] = [];
  let written = 0;
  for (const [key, f] of Object.entries(spec.fields)) {
    const present = (f.since ?? 0) <= version;
    // A missing field without a default gets zero; the descriptor's upgrade hook then computes it.
    const fill = present ? undefined : 'default' in f ? f.default : zeroOf(f);
    slots.push({ key, codec: compileField(f, version, layout), pos: present ? written++ : -1, fill });
  }
  const live = slots.filter((s) => s.pos >= 0);
  const liveKeys = new Set(live.map((s) => s.key));
  const counts = Object.entries(spec.fields).flatMap(([key, f]) =>
    f.kind === 'varArray' && (f.since ?? 0) <= version ? [{ key, lengthField: f.lengthField }] : [],
  );
  const checkCounts = (o: StateRecord): void => {
    for (const { key, lengthField } of counts) {
      const n = (o[key] as unknown[]).length;
      if (o[lengthField] !== n)
        throw new VmstateError(`holds ${n} elements but ${lengthField} is ${describe(o[lengthField])}`, key);
    }
  };
  const enc = (v: unknown): unknown => {
    if (!isRecord(v)) return fail('struct', v);
    const out: unknown[] | StateRecord = layout === 'array' ? new Array<unknown>(written) : {};
    for (const s of live) {
      let x: unknown;
      try {
        x = s.codec.enc(v[s.key]);
      } catch (e) {
        throw prefixError(e, s.key);
      }
      if (Array.isArray(out)) out[s.pos] = x;
      else out[s.key] = x;
    }
    checkCounts(v);
    return out;
  };
  const dec = (v: unknown): unknown => {
    if (layout === 'array') {
      if (!Array.isArray(v) || v.length !== written)
        return fail(`struct of ${written} fields at version ${version}`, v);
    } else {
      if (!isRecord(v)) return fail(`struct of ${written} fields at version ${version}`, v);
      for (const k of Object.keys(v)) if (!liveKeys.has(k)) throw new VmstateError('unknown field', k);
    }
    const src = v as unknown[] & StateRecord;
    const out: StateRecord = {};
    for (const s of slots) {
      if (s.pos < 0) {
        out[s.key] = cloneValue(s.fill);
        continue;
      }
      try {
        out[s.key] = s.codec.dec(layout === 'array' ? src[s.pos] : src[s.key]);
      } catch (e) {
        throw prefixError(e, s.key);
      }
    }
    checkCounts(out);
    return out;
  };
  return { enc, dec };
}
