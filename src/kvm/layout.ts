// C struct layouts described once, with offsets computed by the C rules
// (natural alignment, tail padding).  Every layout here is checked against the
// kernel headers by test/kvm/layouts.test.ts, which compiles an offsetof
// / sizeof probe with gcc: a layout is never trusted from memory.

export type Prim = 'u8' | 'u16' | 'u32' | 'u64' | 'i8' | 'i16' | 'i32' | 'i64';

const PRIM_SIZE: Record<Prim, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8 };

export interface Layout {
  /** C type name (`struct kvm_regs`), or '' for an anonymous struct/union member. */
  readonly cType: string;
  readonly size: number;
  readonly align: number;
  readonly fields: Readonly<Record<string, Field>>;
}

export interface Field {
  readonly offset: number;
  readonly type: Prim | Layout;
  /** Array length; 0 for a scalar. */
  readonly count: number;
  /** Member path in C, relative to the enclosing named type (`io.port`). */
  readonly cPath: string;
  /** The member is an anonymous union/struct: C paths skip its name. */
  readonly anonymous: boolean;
}

/** [name, type, count?, {anonymous?}] */
export type FieldSpec = readonly [string, Prim | Layout, number?, { anonymous?: boolean }?];

const sizeOf = (t: Prim | Layout) => (typeof t === 'string' ? PRIM_SIZE[t] : t.size);
const alignOf = (t: Prim | Layout) => (typeof t === 'string' ? PRIM_SIZE[t] : t.align);
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

function build(cType: string, specs: readonly FieldSpec[], union: boolean): Layout {
  const fields: Record<string, Field> = {};
  let offset = 0;
  let size = 0;
  let align = 1;
  for (const [name, type, count = 0, opts] of specs) {
    const a = alignOf(type);
    const at = union ? 0 : alignUp(offset, a);
    fields[name] = { offset: at, type, count, cPath: name, anonymous: opts?.anonymous ?? false };
    const bytes = sizeOf(type) * Math.max(count, 1);
    offset = at + bytes;
    size = Math.max(size, offset);
    align = Math.max(align, a);
  }
  return { cType, size: alignUp(size, align), align, fields };
}

export function struct(cType: string, specs: readonly FieldSpec[]): Layout {
  return build(cType, specs, false);
}

export function union(cType: string, specs: readonly FieldSpec[]): Layout {
  return build(cType, specs, true);
}

/**
 * Offset of a dotted path (`exit.io.port`) from the start of `layout`.
 * Throws on a typo at module load, where layouts are resolved into constants.
 */
export function offsetOf(layout: Layout, path: string): number {
  let cur: Layout = layout;
  let off = 0;
  const parts = path.split('.');
  parts.forEach((part, i) => {
    const f = cur.fields[part];
    if (!f) throw new Error(`layout ${layout.cType || '(anonymous)'} has no field ${path}`);
    off += f.offset;
    if (i < parts.length - 1) {
      if (typeof f.type === 'string') throw new Error(`${path}: ${part} is not a struct`);
      cur = f.type;
    }
  });
  return off;
}

/** Every leaf member as [our path, C member path, offset, size] for the header probe. */
export function leaves(layout: Layout): Array<[string, string, number, number]> {
  const out: Array<[string, string, number, number]> = [];
  const walk = (l: Layout, base: number, ourPrefix: string, cPrefix: string) => {
    for (const [name, f] of Object.entries(l.fields)) {
      const ours = ourPrefix + name;
      const cPath = f.anonymous ? cPrefix.replace(/\.$/, '') : cPrefix + f.cPath;
      if (typeof f.type !== 'string' && f.count === 0) {
        walk(f.type, base + f.offset, `${ours}.`, f.anonymous ? cPrefix : `${cPath}.`);
      } else if (!f.anonymous) {
        out.push([ours, cPath, base + f.offset, sizeOf(f.type) * Math.max(f.count, 1)]);
      }
    }
  };
  walk(layout, 0, '', '');
  return out;
}
