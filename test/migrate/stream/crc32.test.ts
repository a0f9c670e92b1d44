// The native CRC-32 (native/crc32.c through src/migrate/native.ts)
// against node:zlib: every implementation this CPU can run, on seeded random
// data of every length up to 300 and some of several MiB, at odd offsets and
// chained through `prev`; then stream/format.ts's crc32 on both sides of its
// threshold.  Where gcc is installed (x86-64 Linux) the library must have
// loaded: a build that broke silently fails here instead of making every
// checksum quietly slower.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { nativeCrc32, nativeCrc32Error } from '../../../src/migrate/native.js';
import type { Crc32Fn } from '../../../src/migrate/native.js';
import { crc32, NATIVE_CRC32_MIN_BYTES } from '../../../src/migrate/stream/format.js';
import { gccMissing } from '../../helpers/gcc-probe.js';

const expectNative = process.platform === 'linux' && process.arch === 'x64' && gccMissing() === null;
const native = nativeCrc32();
if (!native) console.log(`  native CRC-32 not loaded: ${nativeCrc32Error()}`);
const withNative = native ? test : test.skip;

const MiB = 1 << 20;
function random(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x >>> 24;
  }
  return out;
}
const data = random(4 * MiB + 64, 0x9e3779b9);
const zlib = (bytes: Uint8Array, prev = 0): number => zlibCrc32(bytes, prev) >>> 0;
const hex = (v: number): string => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;

function check(name: string, f: Crc32Fn, bytes: Uint8Array, prev: number): void {
  const want = zlib(bytes, prev);
  const got = f(prev, bytes, bytes.length);
  if (got !== want) {
    assert.unreachable(
      `${name}: length ${bytes.length} at offset ${bytes.byteOffset}, prev ${hex(prev)}: got ${hex(got)}, zlib ${hex(want)}`,
    );
  }
}

test('the native library loaded where gcc can build it', () => {
  if (!expectNative) {
    console.log('  (no gcc or not x86-64 Linux: zlib fallback expected)');
    return;
  }
  assert.ok(native, `native CRC-32 did not load (${nativeCrc32Error()}); run node tools/build-native.mjs`);
  assert.ok(native!.variants.table, 'every build has the table implementation');
  assert.ok(native!.variants[native!.impl], `the picked implementation (${native!.impl}) is among the variants`);
  console.log(`  native CRC-32: ${native!.impl} (variants: ${Object.keys(native!.variants).join(', ')})`);
});

withNative(
  'every implementation equals zlib for lengths 0..300 at offsets 0..3 and 15, from 0 and chained values',
  () => {
    const prevs = [0, 0xffffffff, 0x12345678, zlib(data.subarray(7, 1000))];
    for (const [name, f] of Object.entries(native!.variants).concat([['xk_crc32', native!.crc32]])) {
      for (const offset of [0, 1, 2, 3, 15]) {
        for (let len = 0; len <= 300; len++) {
          for (const prev of prevs) check(name, f, data.subarray(offset, offset + len), prev);
        }
      }
    }
  },
);

withNative('every implementation equals zlib around each lane and block boundary up to 4 KiB', () => {
  const lengths = new Set<number>();
  for (const step of [16, 64, 128, 256]) {
    for (let k = step; k <= 4096; k += step) for (const d of [-1, 0, 1, 15]) lengths.add(k + d);
  }
  for (const [name, f] of Object.entries(native!.variants)) {
    for (const len of lengths) check(name, f, data.subarray(5, 5 + len), 0xdeadbeef);
  }
});

withNative('every implementation equals zlib on buffers of several MiB', () => {
  for (const [name, f] of Object.entries(native!.variants)) {
    for (const [offset, len] of [
      [0, 2 * MiB],
      [1, 2 * MiB - 1],
      [13, 3 * MiB + 77],
      [0, 4 * MiB + 64],
    ] as const) {
      check(name, f, data.subarray(offset, offset + len), 0);
    }
  }
});

withNative('a buffer cut into random pieces chains to the CRC of the whole', () => {
  const whole = data.subarray(3, 3 * MiB + 3);
  const want = zlib(whole);
  const cuts = random(64, 7);
  for (const [name, f] of Object.entries(native!.variants)) {
    let crc = 0;
    let at = 0;
    for (let i = 0; at < whole.length; i++) {
      // Pieces from 0 bytes to ~200 KiB: short ones take the table path, long ones the vector paths.
      const len = Math.min(whole.length - at, i % 3 === 0 ? cuts[i % 64]! : cuts[i % 64]! * 800 + i);
      crc = f(crc, whole.subarray(at, at + len), len);
      at += len;
    }
    assert.is(hex(crc), hex(want), name);
  }
});

test('format.crc32 equals zlib below, at and above its native threshold, chained either way', () => {
  for (const len of [
    0,
    1,
    20,
    NATIVE_CRC32_MIN_BYTES - 1,
    NATIVE_CRC32_MIN_BYTES,
    NATIVE_CRC32_MIN_BYTES + 1,
    4096,
    2 * MiB + 3,
  ]) {
    const bytes = data.subarray(9, 9 + len);
    assert.is(hex(crc32(bytes)), hex(zlib(bytes)), `length ${len}`);
    assert.is(hex(crc32(bytes, 0xcafef00d)), hex(zlib(bytes, 0xcafef00d)), `length ${len}, chained`);
  }
  const a = data.subarray(0, 10);
  const b = data.subarray(10, 100_000);
  assert.is(hex(crc32(b, crc32(a))), hex(zlib(data.subarray(0, 100_000))));
});

test.run();
