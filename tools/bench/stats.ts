// Distribution summaries shared by the benches.  Percentiles are nearest-rank
// (the value of the ceil(p/100 * n)-th smallest sample), the same rule as the
// C peer (c/pio_exit.c) and the guest (fixtures/guest/lib/util.c), so the
// three sources of figures agree on what "p99" means.

export interface Stats {
  n: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = Math.min(n, Math.max(1, Math.ceil((p / 100) * n)));
  return sorted[rank - 1]!;
}

export function summarize(samples: ArrayLike<number>): Stats {
  const s = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of s) sum += v;
  return {
    n: s.length,
    min: s[0] ?? NaN,
    p50: percentile(s, 50),
    p99: percentile(s, 99),
    max: s[s.length - 1] ?? NaN,
    mean: sum / s.length,
  };
}

/** Scales every figure of a summary (cycles -> ns, ns -> µs). */
export function scaleStats(s: Stats, k: number): Stats {
  return { n: s.n, min: s.min * k, p50: s.p50 * k, p99: s.p99 * k, max: s.max * k, mean: s.mean * k };
}
