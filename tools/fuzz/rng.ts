// A small seeded generator: every case draws from its own stream, derived
// from the run's seed and the case number, so `--seed S --case N` replays
// case N alone with the same mutation.

/** splitmix64 over BigInt would be slow; two rounds of a 32-bit mixer are enough here. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

export class Rng {
  private s: number;

  constructor(seed: number, stream = 0) {
    this.s = mix32(mix32(seed >>> 0) ^ mix32((stream >>> 0) + 0x9e3779b9)) || 1;
  }

  /** Uniform u32. */
  u32(): number {
    // xorshift32 with a final mix: cheap and good enough to pick mutations.
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return mix32(this.s);
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    if (n <= 0) return 0;
    return n <= 0x1_0000_0000 ? this.u32() % n : Math.floor((this.u32() / 2 ** 32) * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.below(items.length)]!;
  }

  /** A random u64 as a bigint. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}
