// Decoders face hostile input: whatever the value, only VmstateError escapes.
// Seeded and bounded, so a failure reproduces and the suite stays fast.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decode, encode } from '@msgpack/msgpack';
import { VmstateError } from '../../src/errors.js';
import {
  MSGPACK_OPTIONS,
  array,
  bytes,
  decodeState,
  decodeWithSchema,
  defineState,
  encodeState,
  enumOf,
  i16,
  schemaOf,
  struct,
  u32,
  u64,
  u8,
  varArray,
} from '../../src/vmstate/index.js';
import { initialXenVcpuState, xenVcpuState } from '../../src/xen/vcpu/state.js';

function prng(seed: number): () => number {
  // mulberry32: tiny, deterministic, good enough to pick mutations.
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sub = defineState({ name: 'f/sub', version: 1, fields: { x: u8() } });
const desc = defineState({
  name: 'f',
  version: 2,
  minVersion: 1,
  fields: {
    a: u8(),
    s: i16(),
    g: u64(),
    raw: bytes(3),
    m: enumOf(u8, { x: 1, y: 2 }),
    n: u32(),
    l: varArray(struct({ i: u32(), d: u64() }), { lengthField: 'n', max: 3 }),
    arr: array(u8(), 2),
    late: u64({ since: 2, default: 0n }),
  },
  subsections: { sub: { state: sub, optional: false } },
});
const good = encodeState(desc, {
  a: 1,
  s: -1,
  g: 2n,
  raw: new Uint8Array(3),
  m: 1,
  n: 1,
  l: [{ i: 1, d: 1n }],
  arr: [1, 2],
  late: 3n,
  sub: { x: 1 },
});

function randomValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * 16);
  switch (pick) {
    case 0:
      return null;
    case 1:
      return undefined;
    case 2:
      return r() < 0.5;
    case 3:
      return Math.floor(r() * 600) - 100;
    case 4:
      return [NaN, Infinity, -0, 1.5, 2 ** 53, -(2 ** 63), 2 ** 64][Math.floor(r() * 7)];
    case 5:
      return BigInt(Math.floor(r() * 2 ** 52)) * (r() < 0.5 ? 1n : 1n << 20n) - 5n;
    case 6:
      return 'x'.repeat(Math.floor(r() * 40));
    case 7:
      return new Uint8Array(Math.floor(r() * 5));
    case 8:
      return { v: Math.floor(r() * 4), f: depth < 3 ? randomValue(r, depth + 1) : [] };
    case 9:
      return { ['f/' + ['sub', 'zz'][Math.floor(r() * 2)]]: randomValue(r, depth + 1), o: r() < 0.5 };
    case 10:
      return Object.create(null);
    default:
      return depth < 3 ? Array.from({ length: Math.floor(r() * 5) }, () => randomValue(r, depth + 1)) : [];
  }
}

/** Replaces one random node of a value tree (containers copied on the way down). */
function mutate(v: unknown, r: () => number): unknown {
  if (r() < 0.25) return randomValue(r);
  if (Array.isArray(v) && v.length > 0) {
    const out = [...v];
    const i = Math.floor(r() * out.length);
    if (r() < 0.1) out.splice(i, 1);
    else out[i] = mutate(out[i], r);
    return out;
  }
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    const out: Record<string, unknown> = { ...(v as Record<string, unknown>) };
    const keys = Object.keys(out);
    const k = keys[Math.floor(r() * keys.length)];
    if (k !== undefined) out[k] = mutate(out[k], r);
    return out;
  }
  return randomValue(r);
}

function onlyVmstateErrors(fn: () => unknown): 'ok' | 'refused' {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (!(e instanceof VmstateError)) throw new Error(`non-VmstateError escaped: ${String(e)}`, { cause: e });
    return 'refused';
  }
}

test('mutated envelopes: typed decode throws only VmstateError', () => {
  const r = prng(1);
  const seen = { ok: 0, refused: 0 };
  for (let i = 0; i < 3000; i++) seen[onlyVmstateErrors(() => decodeState(desc, mutate(good, r)))]++;
  assert.ok(seen.refused > 1000, `refused ${seen.refused}`);
  assert.ok(seen.ok > 20, `accepted ${seen.ok}`); // mutations that stay valid still load
});

test('corrupted msgpack bytes of cpu/xen_vcpu: only VmstateError once msgpack has parsed them', () => {
  const r = prng(2);
  const bytes0 = encode(encodeState(xenVcpuState, initialXenVcpuState()), MSGPACK_OPTIONS);
  let parsed = 0;
  for (let i = 0; i < 3000; i++) {
    const b = bytes0.slice();
    for (let k = 1 + Math.floor(r() * 3); k > 0; k--) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
    let v: unknown;
    try {
      v = decode(b, MSGPACK_OPTIONS);
    } catch {
      continue; // msgpack's own framing errors belong to the stream layer
    }
    parsed++;
    onlyVmstateErrors(() => decodeState(xenVcpuState, v));
  }
  assert.ok(parsed > 500, `parsed ${parsed}`);
});

test('mutated schemas and payloads: decodeWithSchema throws only VmstateError', () => {
  const r = prng(3);
  const schema = JSON.parse(JSON.stringify(schemaOf(desc)));
  let refused = 0;
  for (let i = 0; i < 2000; i++) {
    const s = r() < 0.7 ? mutate(schema, r) : schema;
    if (onlyVmstateErrors(() => decodeWithSchema(s, r() < 0.5 ? good : mutate(good, r))) === 'refused') refused++;
  }
  assert.ok(refused > 500, `refused ${refused}`);
});

test('hostile objects (throwing getters) become VmstateError too', () => {
  const evil = Object.defineProperty({}, 'v', {
    get() {
      throw new TypeError('boom');
    },
    enumerable: true,
  });
  assert.is(
    onlyVmstateErrors(() => decodeState(desc, evil)),
    'refused',
  );
  assert.is(
    onlyVmstateErrors(() => decodeWithSchema(evil, good)),
    'refused',
  );
});

test.run();
