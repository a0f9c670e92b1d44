import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decode, encode } from '@msgpack/msgpack';
import { VmstateError } from '../../src/errors.js';
import {
  MSGPACK_OPTIONS,
  array,
  bool,
  bytes,
  checkSchemas,
  decodeState,
  decodeWithSchema,
  defineState,
  encodeState,
  enumOf,
  i64,
  schemaOf,
  struct,
  u16,
  u32,
  u64,
  u8,
  varArray,
} from '../../src/vmstate/index.js';
import type { SectionSchema } from '../../src/vmstate/index.js';

const sub = defineState({ name: 'dev/sub', version: 1, fields: { t: u64() } });
const dev = defineState({
  name: 'dev',
  version: 2,
  minVersion: 1,
  fields: {
    a: u8(),
    h: i64(),
    flag: bool(),
    raw: bytes(3),
    mode: enumOf(u8, { off: 0, on: 1 }),
    list: array(u16(), 2),
    n: u32(),
    items: varArray(struct({ i: u32(), d: u64() }), { lengthField: 'n', max: 4 }),
    late: u64({ since: 2, default: 0xffffffffffffffffn }),
    blob: bytes(2, { since: 2, default: new Uint8Array([0xab, 0xcd]) }),
  },
  subsections: { sub: { state: sub, optional: true } },
});
const state = {
  a: 1,
  h: -2n,
  flag: true,
  raw: new Uint8Array([7, 8, 9]),
  mode: 1 as const,
  list: [3, 4],
  n: 1,
  items: [{ i: 5, d: 6n }],
  late: 7n,
  blob: new Uint8Array([1, 2]),
  sub: { t: 8n },
};
const viaJson = (s: SectionSchema): unknown => JSON.parse(JSON.stringify(s));
const wire = (v: unknown): unknown => decode(encode(v, MSGPACK_OPTIONS), MSGPACK_OPTIONS);

test('the schema is JSON and records kinds, sizes, since, defaults, enum names, subsections', () => {
  const s = schemaOf(dev);
  assert.equal(viaJson(s), s);
  assert.equal(
    s.fields.find((f) => f.name === 'late'),
    { name: 'late', kind: 'u64', since: 2, default: '18446744073709551615' },
  );
  assert.equal(
    s.fields.find((f) => f.name === 'blob'),
    { name: 'blob', kind: 'bytes', size: 2, since: 2, default: 'abcd' },
  );
  assert.equal(
    s.fields.find((f) => f.name === 'mode'),
    { name: 'mode', kind: 'enum', base: 'u8', values: { off: 0, on: 1 } },
  );
  assert.equal(
    s.subsections.map((x) => [x.section.name, x.optional]),
    [['dev/sub', true]],
  );
});

test('decodeWithSchema yields the same values as the typed decode', () => {
  const env = wire(encodeState(dev, state));
  assert.equal(decodeWithSchema(viaJson(schemaOf(dev)), env), decodeState(dev, env));
  assert.equal(decodeWithSchema(viaJson(schemaOf(dev)), env), state);
});

test('decodeWithSchema fills defaults from the schema for older input', () => {
  const old = wire(encodeState(dev, state, { version: 1 }));
  const g = decodeWithSchema(viaJson(schemaOf(dev)), old);
  assert.is(g.late, 0xffffffffffffffffn);
  assert.equal([...(g.blob as Uint8Array)], [0xab, 0xcd]);
  assert.equal(g, decodeState(dev, old));
});

test('an untrusted schema is checked within the limits', () => {
  const s = schemaOf(dev);
  const bad = (mut: (x: any) => void, re: RegExp, limits = {}) => {
    const x = viaJson(s);
    mut(x);
    try {
      decodeWithSchema(x, encodeState(dev, state), { limits });
      assert.unreachable('expected refusal');
    } catch (e) {
      assert.instance(e, VmstateError);
      assert.match((e as Error).message, re);
    }
  };
  bad((x) => (x.fields[0].kind = 'u128'), /unknown field kind/);
  bad((x) => (x.fields[5].length = 1e12), /size 1000000000000 is not within/);
  bad((x) => (x.fields[3].size = 100), /raw.*size 100/, { maxBytes: 64 });
  bad((x) => (x.fields[8].default = 'zz'), /not the JSON form of u64/);
  bad((x) => (x.version = 0), /version must be an integer/);
  bad(
    (x) =>
      x.fields.push({
        name: 'huge',
        kind: 'array',
        length: 4096,
        of: { kind: 'array', length: 4096, of: { kind: 'u8' } },
      }),
    /expands to more than/,
  );
  let deep: any = { kind: 'u8' };
  for (let i = 0; i < 40; i++) deep = { kind: 'array', length: 1, of: deep };
  bad((x) => x.fields.push({ name: 'deep', ...deep }), /nesting deeper than 16/);
});

const base: SectionSchema = schemaOf(dev);
const mutate = (f: (x: any) => void): SectionSchema => {
  const x = viaJson(base) as any;
  f(x);
  return x;
};
const summary = (old: SectionSchema, neu: SectionSchema) =>
  checkSchemas(old, neu).map((b) => `${b.breaks} ${b.path}: ${b.message}`);

test('checkSchemas: identical schemas break nothing', () => {
  assert.equal(checkSchemas(base, viaJson(base) as SectionSchema), []);
});

test('checkSchemas: a field added properly only stops old builds reading new files', () => {
  const neu = mutate((x) => {
    x.version = 3;
    x.fields.push({ name: 'more', kind: 'u8', since: 3, default: 0 });
  });
  assert.equal(summary(base, neu), ['new-in-old : version raised from 2 to 3: old builds read at most 2']);
});

test('checkSchemas: the classic mistakes', () => {
  const r = (f: (x: any) => void) => summary(base, mutate(f));
  assert.equal(
    r((x) => x.fields.splice(0, 1)).filter((s) => s.startsWith('old-in-new')),
    ['old-in-new a: field removed: old files still contain it'],
  );
  assert.ok(
    r((x) => x.fields.push({ name: 'more', kind: 'u8' })).includes(
      'old-in-new more: new field without a since above 2: old files lack it',
    ),
  );
  assert.ok(
    r((x) => {
      x.version = 3;
      x.fields.push({ name: 'more', kind: 'u8', since: 3 });
    }).includes('old-in-new more: new field with neither a default nor an upgrade hook'),
  );
  assert.ok(r((x) => (x.fields[3].size = 4)).includes('old-in-new raw: size changed from 3 to 4'));
  assert.ok(r((x) => (x.fields[0].kind = 'u16')).includes('new-in-old a: kind changed from u8 to u16'));
  assert.ok(
    r((x) => (x.minVersion = 2))[0]!.startsWith(
      'old-in-new : minVersion raised from 1 to 2: files of versions 1..1 no longer load',
    ),
  );
  assert.ok(
    r((x) => (x.fields[7].of.fields[1].kind = 'u32')).includes('old-in-new items[].d: kind changed from u64 to u32'),
  );
  assert.ok(r((x) => (x.fields[4].values = { off: 0 })).includes('old-in-new mode: enum values removed: 1'));
  assert.ok(
    r((x) => (x.fields[7].max = 8)).includes(
      'new-in-old items: max raised from 4 to 8: old builds refuse longer arrays',
    ),
  );
  assert.ok(
    r((x) => ([x.fields[0], x.fields[1]] = [x.fields[1], x.fields[0]]))[0]!.startsWith('old-in-new : fields reordered'),
  );
});

test('checkSchemas: subsections', () => {
  const mandatory = mutate((x) =>
    x.subsections.push({
      optional: false,
      section: { name: 'dev/new', version: 1, minVersion: 1, fields: [], subsections: [] },
    }),
  );
  assert.equal(summary(base, mandatory), [
    'new-in-old /dev/new: new mandatory subsection: old builds refuse files that contain it',
  ]);
  const optional = mutate((x) =>
    x.subsections.push({
      optional: true,
      section: { name: 'dev/new', version: 1, minVersion: 1, fields: [], subsections: [] },
    }),
  );
  assert.equal(summary(base, optional), []);
  assert.equal(
    summary(
      base,
      mutate((x) => (x.subsections = [])),
    ),
    [],
  ); // it was optional: old files skip it
  const changed = mutate((x) => (x.subsections[0].section.fields[0].kind = 'u32'));
  assert.equal(checkSchemas(base, changed)[0]!.section, 'dev/sub');
});

test.run();
