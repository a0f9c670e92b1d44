import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decode, encode } from '@msgpack/msgpack';
import { VmstateError } from '../../src/errors.js';
import {
  MSGPACK_OPTIONS,
  array,
  bool,
  bytes,
  decodeState,
  defineState,
  encodeState,
  enumOf,
  i16,
  i32,
  i64,
  i8,
  struct,
  u16,
  u32,
  u64,
  u8,
  varArray,
} from '../../src/vmstate/index.js';
import type { StateOf } from '../../src/vmstate/index.js';

const extra = defineState({ name: 'dev/extra', version: 1, fields: { n: u8() } });
const dev = defineState({
  name: 'dev',
  version: 3,
  minVersion: 1,
  fields: {
    a: u8(),
    b: u16(),
    c: u32(),
    d: u64(),
    e: i8(),
    f: i16(),
    g: i32(),
    h: i64(),
    flag: bool(),
    raw: bytes(4),
    mode: enumOf(u16, { off: 0, on: 1, auto: 7 }),
    list: array(u16(), 3),
    nested: struct({ x: u8(), y: struct({ z: i64() }) }),
    count: u32(),
    items: varArray(struct({ index: u32(), data: u64() }), { lengthField: 'count', max: 4 }),
    late: u64({ since: 2, default: 0x1234n }),
    later: u8({ since: 3 }),
  },
  subsections: { extra: { state: extra, optional: false } },
  upgrade(s, from) {
    // v3 split `later` out of `a`; older files derive it.
    if (from < 3) s.later = s.a + 1;
  },
});
type Dev = StateOf<typeof dev>;

const sample = (): Dev => ({
  a: 255,
  b: 65535,
  c: 0xffffffff,
  d: 0xffffffffffffffffn,
  e: -128,
  f: -32768,
  g: -0x80000000,
  h: -0x8000000000000000n,
  flag: true,
  raw: new Uint8Array([1, 2, 3, 4]),
  mode: 7,
  list: [1, 2, 3],
  nested: { x: 9, y: { z: 0x7fffffffffffffffn } },
  count: 2,
  items: [
    { index: 0x10, data: 1n },
    { index: 0xc0000080, data: 0x500n },
  ],
  late: 42n,
  later: 5,
});

const roundTrip = (v: unknown): unknown => decode(encode(v, MSGPACK_OPTIONS), MSGPACK_OPTIONS);
function throwsAt(fn: () => unknown, path: string, reason?: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, VmstateError);
    assert.is((e as VmstateError).path, path);
    if (reason) assert.match((e as VmstateError).message, reason);
    return;
  }
  assert.unreachable(`expected a VmstateError at ${path}`);
}

test('every field kind round-trips through msgpack at its range limits', () => {
  const s = sample();
  const env = encodeState(dev, s);
  assert.is(env.v, 3);
  assert.equal(decodeState(dev, roundTrip(env)), s);
});

test('the envelope is positional and small', () => {
  const env = encodeState(dev, { ...sample(), extra: { n: 3 } });
  assert.ok(Array.isArray(env.f));
  assert.is((env.f as unknown[]).length, 17);
  assert.equal(env.s, { 'dev/extra': { v: 1, f: [3] } });
  assert.is(env.s!['dev/extra']!.o, undefined);
});

test('encode validates the state it is given', () => {
  throwsAt(() => encodeState(dev, { ...sample(), b: 65536 }), 'b', /u16/);
  throwsAt(() => encodeState(dev, { ...sample(), d: -1n }), 'd', /u64/);
  throwsAt(() => encodeState(dev, { ...sample(), count: 1 }), 'items', /count is 1/);
  throwsAt(() => encodeState(dev, { ...sample(), list: [1, 2, 3.5] }), 'list[2]', /non-integer/);
});

test('decode refuses bad values with the path of the field', () => {
  const good = encodeState(dev, sample());
  const f = () => [...(good.f as unknown[])];
  const withField = (i: number, v: unknown) => {
    const x = f();
    x[i] = v;
    return { ...good, f: x };
  };
  throwsAt(() => decodeState(dev, withField(10, 3)), 'mode', /not one of off=0, on=1, auto=7/);
  throwsAt(() => decodeState(dev, withField(9, new Uint8Array(5))), 'raw', /bytes\(4\)/);
  throwsAt(() => decodeState(dev, withField(11, [1, 2])), 'list', /array of 3/);
  throwsAt(() => decodeState(dev, withField(12, [1, [true]])), 'nested.y.z', /i64/);
  throwsAt(
    () =>
      decodeState(
        dev,
        withField(14, [
          [1, 2n],
          [2, 3n],
          [3, 4n],
          [4, 5n],
          [5, 6n],
        ]),
      ),
    'items',
    /at most 4/,
  );
  throwsAt(
    () =>
      decodeState(
        dev,
        withField(14, [
          [1, 2n],
          ['x', 3n],
        ]),
      ),
    'items[1].index',
    /u32/,
  );
  throwsAt(() => decodeState(dev, withField(13, 3)), 'items', /count is 3/);
  throwsAt(() => decodeState(dev, withField(0, 256)), 'a');
  throwsAt(() => decodeState(dev, { ...good, f: f().slice(1) }), '', /struct of 17 fields at version 3/);
});

test('decode accepts integers msgpack wrote in another width', () => {
  const x = f64Widths();
  assert.is(x.d, 5n);
  assert.is(x.a, 7);
});
function f64Widths(): Dev {
  const env = encodeState(dev, sample());
  const f = [...(env.f as unknown[])];
  f[3] = 5; // u64 written compactly
  f[0] = 7n; // u8 written as a 64-bit integer
  return decodeState(dev, { ...env, f });
}

test('older versions are upgraded: defaults for v2 fields, the hook for v3', () => {
  const v1 = encodeState(dev, sample(), { version: 1 });
  assert.is((v1.f as unknown[]).length, 15);
  const s = decodeState(dev, roundTrip(v1));
  assert.is(s.late, 0x1234n);
  assert.is(s.later, 256); // a + 1, computed by the upgrade hook
  const v2 = decodeState(dev, encodeState(dev, sample(), { version: 2 }));
  assert.is(v2.late, 42n);
  assert.is(v2.later, 256);
});

test('defaults are copied, never shared between decoded states', () => {
  const d = defineState({
    name: 'd',
    version: 2,
    minVersion: 1,
    fields: { a: u8(), l: array(u8(), 2, { since: 2, default: [0, 0] }) },
  });
  const one = decodeState(d, { v: 1, f: [1] });
  one.l[0] = 9;
  assert.equal(decodeState(d, { v: 1, f: [1] }).l, [0, 0]);
});

test('too new and too old input is refused naming the section and both versions', () => {
  const env = encodeState(dev, sample());
  throwsAt(() => decodeState(dev, { ...env, v: 4 }), '', /section dev: input version 4 is newer than 3/);
  throwsAt(() => decodeState(dev, { ...env, v: 0 }), '', /section dev: input version 0 is older than 1/);
  const sub = { ...env, s: { 'dev/extra': { v: 2, f: [1] } } };
  throwsAt(() => decodeState(dev, sub), '/extra', /section dev\/extra: input version 2 is newer than 1/);
  assert.throws(() => encodeState(dev, sample(), { version: 4 }), /cannot be written at version 4/);
});

test('subsections: written only when needed, loaded when present', () => {
  const none = encodeState(dev, sample());
  assert.is(none.s, undefined);
  assert.is(decodeState(dev, none).extra, undefined);
  const withSub = decodeState(dev, roundTrip(encodeState(dev, { ...sample(), extra: { n: 4 } })));
  assert.equal(withSub.extra, { n: 4 });
  throwsAt(() => decodeState(dev, { ...none, s: { 'dev/extra': { v: 1, f: [300] } } }), '/extra.n', /u8/);
});

test('needed() decides, and a needed but absent subsection is an error', () => {
  const child = defineState({ name: 'p/c', version: 1, fields: { x: u8() } });
  const p = defineState({
    name: 'p',
    version: 1,
    fields: { on: bool() },
    subsections: { c: { state: child, optional: true, needed: (s) => s.on } },
  });
  assert.is(encodeState(p, { on: false, c: { x: 1 } }).s, undefined);
  assert.equal(encodeState(p, { on: true, c: { x: 1 } }).s, { 'p/c': { v: 1, f: [1], o: true } });
  throwsAt(() => encodeState(p, { on: true }), '/c', /needed but absent/);
});

test('unknown subsections: optional ones are skipped, mandatory ones refused by name', () => {
  const env = encodeState(dev, sample());
  const skip = decodeState(dev, { ...env, s: { 'dev/future': { v: 9, f: [1, 2], o: true } } });
  assert.equal(skip.a, 255);
  throwsAt(
    () => decodeState(dev, { ...env, s: { 'dev/future': { v: 9, f: [] } } }),
    '',
    /unknown mandatory subsection dev\/future \(version 9\)/,
  );
});

test('hooks: preSave shapes what is written, postLoad may refuse, foreign errors become VmstateError', () => {
  const h = defineState({
    name: 'h',
    version: 1,
    fields: { x: u8() },
    preSave: (s) => ({ ...s, x: s.x & 0xf }),
    postLoad(s) {
      if (s.x === 13) throw new RangeError('unlucky');
    },
  });
  assert.equal(encodeState(h, { x: 0x35 }).f, [5]);
  try {
    decodeState(h, { v: 1, f: [13] });
    assert.unreachable('postLoad must refuse');
  } catch (e) {
    assert.instance(e, VmstateError);
    assert.match((e as Error).message, /section h: postLoad hook failed: unlucky/);
  }
});

test('defineState refuses descriptors that could not round-trip', () => {
  assert.throws(
    () => defineState({ name: 'x', version: 2, minVersion: 1, fields: { a: u8({ since: 2 }) } }),
    /needs a default or an upgrade hook/,
  );
  assert.throws(
    () => defineState({ name: 'x', version: 1, fields: { a: u8({ since: 2, default: 0 }) } }),
    /since must be between 1 and version 1/,
  );
  assert.throws(
    () => defineState({ name: 'x', version: 1, fields: { l: varArray(u8(), { lengthField: 'n', max: 2 }) } }),
    /lengthField n/,
  );
  assert.throws(() => defineState({ name: 'x', version: 1, fields: { e: enumOf(u8, { a: 1, b: 1 }) } }), /distinct/);
  assert.throws(() => defineState({ name: 'x', version: 1, fields: { e: enumOf(u8, { a: 256 }) } }), /out of u8 range/);
  assert.throws(
    () => defineState({ name: 'x', version: 2, minVersion: 1, fields: { a: u8({ since: 2, default: 300 }) } }),
    /bad default/,
  );
  assert.throws(
    () => defineState({ name: 'x', version: 1, fields: {}, subsections: { y: { state: extra, optional: true } } }),
    /must be named x\/y/,
  );
  assert.throws(() => defineState({ name: 'x', version: 1, minVersion: 2, fields: {} }), /minVersion/);
});

test('decoded bytes are copies, not views of the input buffer', () => {
  const wire = encode(encodeState(dev, sample()), MSGPACK_OPTIONS);
  const s = decodeState(dev, decode(wire, MSGPACK_OPTIONS));
  wire.fill(0);
  assert.equal([...s.raw], [1, 2, 3, 4]);
});

test.run();
