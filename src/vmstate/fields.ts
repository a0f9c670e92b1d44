// Field kinds of the state DSL.  A field is plain data (serializable, so the
// schema is little more than the field tree itself) with a phantom type that
// lets `StateOf` compute the state's TypeScript type, as zod's `z.infer` does.

declare const VALUE: unique symbol;

/** Phantom carrier of a field's value type; never present at run time. */
export interface Typed<T> {
  readonly [VALUE]?: T;
}

/** Options every top-level or struct field may carry. */
export interface FieldOptions<T> {
  /**
   * Descriptor version the field first appeared in.  Input written by an
   * older version gets `default` (or the descriptor's `upgrade` hook fills it).
   */
  readonly since?: number;
  readonly default?: T;
}

export type IntKind = 'u8' | 'u16' | 'u32' | 'i8' | 'i16' | 'i32';
export type BigKind = 'u64' | 'i64';
export type EnumBase = 'u8' | 'u16' | 'u32';

interface Common {
  readonly since?: number;
  readonly default?: unknown;
}
export interface IntSpec extends Common {
  readonly kind: IntKind;
}
export interface BigSpec extends Common {
  readonly kind: BigKind;
}
export interface BoolSpec extends Common {
  readonly kind: 'bool';
}
export interface BytesSpec extends Common {
  readonly kind: 'bytes';
  readonly size: number;
}
export interface ArraySpec extends Common {
  readonly kind: 'array';
  readonly of: FieldSpec;
  readonly length: number;
}
export interface VarArraySpec extends Common {
  readonly kind: 'varArray';
  readonly of: FieldSpec;
  /** Name of the integer field of the same struct that holds the count. */
  readonly lengthField: string;
  readonly max: number;
}
export interface StructSpec extends Common {
  readonly kind: 'struct';
  readonly fields: FieldMap;
}
export interface EnumSpec extends Common {
  readonly kind: 'enum';
  readonly base: EnumBase;
  readonly values: Readonly<Record<string, number>>;
}

export type FieldSpec = IntSpec | BigSpec | BoolSpec | BytesSpec | ArraySpec | VarArraySpec | StructSpec | EnumSpec;
export type FieldKind = FieldSpec['kind'];
export type FieldMap = Readonly<Record<string, FieldSpec>>;

/** A field spec that also knows its value type. */
export type Field<T> = FieldSpec & Typed<T>;
export type ValueOf<F> = F extends Typed<infer T> ? T : never;

type Simplify<T> = { -readonly [K in keyof T]: T[K] } & {};
export type StructValue<F extends FieldMap> = Simplify<{ [K in keyof F]: ValueOf<F[K]> }>;

/** Inclusive ranges of the integer kinds; bigint bounds for 64-bit kinds. */
export const INT_RANGES: Readonly<Record<IntKind, readonly [number, number]>> = {
  u8: [0, 0xff],
  u16: [0, 0xffff],
  u32: [0, 0xffffffff],
  i8: [-0x80, 0x7f],
  i16: [-0x8000, 0x7fff],
  i32: [-0x80000000, 0x7fffffff],
};
export const BIG_RANGES: Readonly<Record<BigKind, readonly [bigint, bigint]>> = {
  u64: [0n, 0xffffffffffffffffn],
  i64: [-0x8000000000000000n, 0x7fffffffffffffffn],
};

function withOptions<S extends FieldSpec>(spec: S, opts: FieldOptions<unknown> | undefined): S {
  if (!opts) return spec;
  const out: Record<string, unknown> = { ...spec };
  if (opts.since !== undefined) out.since = opts.since;
  if ('default' in opts) out.default = opts.default;
  return out as S;
}

const int =
  (kind: IntKind) =>
  (opts?: FieldOptions<number>): IntSpec & Typed<number> =>
    withOptions({ kind }, opts);
const big =
  (kind: BigKind) =>
  (opts?: FieldOptions<bigint>): BigSpec & Typed<bigint> =>
    withOptions({ kind }, opts);

export const u8 = int('u8');
export const u16 = int('u16');
export const u32 = int('u32');
export const i8 = int('i8');
export const i16 = int('i16');
export const i32 = int('i32');
/** 64-bit kinds are `bigint` in state: a GPA or MSR value must not lose bits. */
export const u64 = big('u64');
export const i64 = big('i64');

export function bool(opts?: FieldOptions<boolean>): BoolSpec & Typed<boolean> {
  return withOptions({ kind: 'bool' }, opts);
}

/** Fixed-size byte string (XSAVE area, LAPIC page). */
export function bytes(size: number, opts?: FieldOptions<Uint8Array>): BytesSpec & Typed<Uint8Array> {
  return withOptions({ kind: 'bytes', size }, opts);
}

/** Fixed-length array; elements carry no `since` of their own. */
export function array<E extends FieldSpec>(
  of: E,
  length: number,
  opts?: FieldOptions<ValueOf<E>[]>,
): ArraySpec & Typed<ValueOf<E>[]> {
  return withOptions({ kind: 'array', of, length }, opts);
}

/**
 * Variable-length array whose count is `lengthField`, another integer field
 * of the same struct; both are written and must agree on load.
 */
export function varArray<E extends FieldSpec>(
  of: E,
  shape: { lengthField: string; max: number },
  opts?: FieldOptions<ValueOf<E>[]>,
): VarArraySpec & Typed<ValueOf<E>[]> {
  return withOptions({ kind: 'varArray', of, lengthField: shape.lengthField, max: shape.max }, opts);
}

export function struct<const F extends FieldMap>(
  fields: F,
  opts?: FieldOptions<StructValue<F>>,
): StructSpec & Typed<StructValue<F>> {
  return withOptions({ kind: 'struct', fields }, opts);
}

/**
 * An integer restricted to named values.  The state holds the number (so the
 * wire stays an integer); the names are for schemas, diffs and errors.
 */
export function enumOf<const V extends Record<string, number>>(
  base: (opts?: FieldOptions<number>) => IntSpec,
  values: V,
  opts?: FieldOptions<V[keyof V]>,
): EnumSpec & Typed<V[keyof V]> {
  // The base is validated by defineState, which rejects anything but u8/u16/u32.
  return withOptions({ kind: 'enum', base: base().kind as EnumBase, values }, opts);
}
