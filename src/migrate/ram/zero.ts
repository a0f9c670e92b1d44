// Zero-page detection, the inner loop of every RAM scan.  Several strategies
// live side by side so `benchRam` (tools/bench/ram.ts) can compare them on
// this machine; `isZeroPage` is the one it chose.
import { PAGE_SIZE } from '../stream/format.js';

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

/** Returns a predicate "is page `index` of `ram` all zero" using one strategy. */
export type ZeroTest = (index: number) => boolean;

/** memcmp against a zero page through Buffer#compare; no allocation per call. */
export function zeroTestCompare(ram: Uint8Array): ZeroTest {
  const buf = Buffer.from(ram.buffer, ram.byteOffset, ram.length);
  return (index) => {
    const off = index * PAGE_SIZE;
    return buf.compare(ZERO_PAGE, 0, PAGE_SIZE, off, off + PAGE_SIZE) === 0;
  };
}

/** OR of 32-bit words with an early exit; needs a 4-byte-aligned view. */
export function zeroTestWords32(ram: Uint8Array): ZeroTest {
  const words = new Uint32Array(ram.buffer, ram.byteOffset, ram.length >>> 2);
  return (index) => {
    let i = index * (PAGE_SIZE >>> 2);
    const end = i + (PAGE_SIZE >>> 2);
    for (; i < end; i += 8) {
      if (
        (words[i]! |
          words[i + 1]! |
          words[i + 2]! |
          words[i + 3]! |
          words[i + 4]! |
          words[i + 5]! |
          words[i + 6]! |
          words[i + 7]!) !==
        0
      )
        return false;
    }
    return true;
  };
}

/** 64-bit words as BigInt: compared for the record; BigInt loads are slow in V8. */
export function zeroTestBigWords(ram: Uint8Array): ZeroTest {
  const words = new BigUint64Array(ram.buffer, ram.byteOffset, ram.length >>> 3);
  return (index) => {
    let i = index * (PAGE_SIZE >>> 3);
    const end = i + (PAGE_SIZE >>> 3);
    for (; i < end; i++) if (words[i] !== 0n) return false;
    return true;
  };
}

/**
 * 64-bit words as doubles: fast, but +0 and -0 compare equal, so a page whose
 * only set bit is a sign bit would read as zero; the test checks such words
 * again as integers.
 */
export function zeroTestFloat64(ram: Uint8Array): ZeroTest {
  const f = new Float64Array(ram.buffer, ram.byteOffset, ram.length >>> 3);
  const w = new Uint32Array(ram.buffer, ram.byteOffset, ram.length >>> 2);
  return (index) => {
    let i = index * (PAGE_SIZE >>> 3);
    const end = i + (PAGE_SIZE >>> 3);
    for (; i < end; i++) {
      if (f[i] !== 0) return false;
      if (w[2 * i + 1] !== 0) return false; // -0.0: high word 0x80000000
    }
    return true;
  };
}

export const ZERO_STRATEGIES = {
  compare: zeroTestCompare,
  words32: zeroTestWords32,
  bigWords: zeroTestBigWords,
  float64: zeroTestFloat64,
} as const;

/**
 * The strategy `benchRam` ("zero detection") measured fastest: memcmp beats
 * every JavaScript word loop over zero pages (docs/benchmarks.md).
 * Non-zero pages exit early with every strategy.
 */
export const zeroTest: (ram: Uint8Array) => ZeroTest = zeroTestCompare;
