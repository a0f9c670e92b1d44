// Binds a state descriptor's struct fields to a C layout from structs.ts, so
// that a KVM struct is read into state and written back without a second
// hand-written list of offsets.  Descriptor field names are the kernel's
// member names; a descriptor may leave out members (padding, reserved), which
// are written as zero.  The binding is checked when a module loads (a name,
// width or length that does not match the layout throws there, not at the
// first save), and test/kvm/state.test.ts round-trips every binding.
import type { Field, Layout, Prim } from '../layout.js';
import type { FieldMap, FieldSpec, StructValue } from '../../vmstate/index.js';

/** Reads and writes one value at a base offset of a DataView. */
export interface Binding<T> {
  /** Size in bytes of the bound C object. */
  readonly size: number;
  read(v: DataView, base: number): T;
  write(v: DataView, base: number, value: T): void;
}

type Rd = (v: DataView, o: number) => unknown;
type Wr = (v: DataView, o: number, x: unknown) => void;
interface Op {
  readonly rd: Rd;
  readonly wr: Wr;
}

const PRIM_BYTES: Record<Prim, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8 };

/** A scalar of the descriptor's kind (its signedness wins) over a C member of the same width. */
function scalarOp(spec: FieldSpec, prim: Prim, where: string): Op {
  const kind = spec.kind === 'enum' ? spec.base : spec.kind;
  if (!Object.hasOwn(PRIM_BYTES, kind) || PRIM_BYTES[kind as Prim] !== PRIM_BYTES[prim]) {
    throw new Error(`${where}: descriptor kind ${kind} does not match C type ${prim}`);
  }
  switch (kind as Prim) {
    case 'u8':
      return { rd: (v, o) => v.getUint8(o), wr: (v, o, x) => v.setUint8(o, x as number) };
    case 'i8':
      return { rd: (v, o) => v.getInt8(o), wr: (v, o, x) => v.setInt8(o, x as number) };
    case 'u16':
      return { rd: (v, o) => v.getUint16(o, true), wr: (v, o, x) => v.setUint16(o, x as number, true) };
    case 'i16':
      return { rd: (v, o) => v.getInt16(o, true), wr: (v, o, x) => v.setInt16(o, x as number, true) };
    case 'u32':
      return { rd: (v, o) => v.getUint32(o, true), wr: (v, o, x) => v.setUint32(o, x as number, true) };
    case 'i32':
      return { rd: (v, o) => v.getInt32(o, true), wr: (v, o, x) => v.setInt32(o, x as number, true) };
    case 'u64':
      return { rd: (v, o) => v.getBigUint64(o, true), wr: (v, o, x) => v.setBigUint64(o, x as bigint, true) };
    case 'i64':
      return { rd: (v, o) => v.getBigInt64(o, true), wr: (v, o, x) => v.setBigInt64(o, x as bigint, true) };
  }
}

const typeSize = (t: Prim | Layout): number => (typeof t === 'string' ? PRIM_BYTES[t] : t.size);

function elementOp(spec: FieldSpec, type: Prim | Layout, where: string): Op {
  if (spec.kind === 'struct') {
    if (typeof type === 'string') throw new Error(`${where}: a struct field needs a C struct, not ${type}`);
    const b = bindStruct(spec.fields, type, where);
    return { rd: b.read, wr: b.write as Wr };
  }
  if (typeof type !== 'string') throw new Error(`${where}: ${spec.kind} cannot bind to a C struct`);
  return scalarOp(spec, type, where);
}

/** One member: scalar, struct, fixed array of either, or raw bytes of any member of that size. */
function fieldOp(spec: FieldSpec, f: Field, where: string): Op {
  const total = typeSize(f.type) * Math.max(f.count, 1);
  if (spec.kind === 'bytes') {
    // Raw bytes: an opaque kernel blob (LAPIC page, XSAVE area, PIC state).
    if (spec.size !== total) throw new Error(`${where}: bytes(${spec.size}) but the C member has ${total} bytes`);
    const n = spec.size;
    return {
      rd: (v, o) => new Uint8Array(v.buffer.slice(v.byteOffset + o, v.byteOffset + o + n)),
      wr: (v, o, x) => new Uint8Array(v.buffer, v.byteOffset + o, n).set(x as Uint8Array),
    };
  }
  if (spec.kind === 'array') {
    if (f.count !== spec.length) throw new Error(`${where}: array of ${spec.length} but the C member has ${f.count}`);
    const el = elementOp(spec.of, f.type, `${where}[]`);
    const step = typeSize(f.type);
    const len = spec.length;
    return {
      rd: (v, o) => {
        const out = new Array<unknown>(len);
        for (let i = 0; i < len; i++) out[i] = el.rd(v, o + i * step);
        return out;
      },
      wr: (v, o, x) => {
        const a = x as readonly unknown[];
        for (let i = 0; i < len; i++) el.wr(v, o + i * step, a[i]);
      },
    };
  }
  if (f.count !== 0)
    throw new Error(`${where}: the C member is an array of ${f.count}; bind it with array() or bytes()`);
  return elementOp(spec, f.type, where);
}

/**
 * Compiles a binding of `fields` (a descriptor struct) onto `layout`.
 * varArrays are not bound here: their counts live in headers of flexible C
 * arrays (kvm_msrs, kvm_cpuid2) or need a clamp (kvm_xcrs), so their owners
 * handle them.
 */
export function bindStruct<F extends FieldMap>(
  fields: F,
  layout: Layout,
  where = layout.cType,
): Binding<StructValue<F>> {
  const ops: Array<{ key: string; off: number; op: Op }> = [];
  for (const [key, spec] of Object.entries(fields)) {
    if (spec.kind === 'varArray') continue;
    const f = layout.fields[key];
    if (!f) throw new Error(`${where}: ${layout.cType || 'the C struct'} has no member ${key}`);
    ops.push({ key, off: f.offset, op: fieldOp(spec, f, `${where}.${key}`) });
  }
  return {
    size: layout.size,
    read(v, base) {
      const out: Record<string, unknown> = {};
      for (const { key, off, op } of ops) out[key] = op.rd(v, base + off);
      return out as StructValue<F>;
    },
    write(v, base, value) {
      const rec = value as Record<string, unknown>;
      for (const { key, off, op } of ops) op.wr(v, base + off, rec[key]);
    },
  };
}
