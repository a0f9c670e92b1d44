// Timestamps of a migration's steps on both ends, for finding where its time
// goes: with XENKVM_MIGRATE_TRACE=1 each side notes wall-clock marks
// (performance.timeOrigin + performance.now(), comparable between processes
// on one host) in memory and prints them to stderr once the pause is over,
// one `xenkvm-trace SIDE LABEL EPOCH_MS` line each; `npm run bench --
// migrate` merges the two sides into one timeline.  Off, a mark costs one
// branch.  Printing is left until after the answer because a write to
// stderr inside the pause would be part of what is measured.
import { constants, PerformanceObserver } from 'node:perf_hooks';

const enabled = process.env['XENKVM_MIGRATE_TRACE'] === '1';
const labels: string[] = [];
const times: number[] = [];
if (enabled) {
  // Garbage collections show up as pairs of marks (their start and end).
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as { detail?: { kind?: number } }).detail?.kind ?? 0;
      const name =
        kind === constants.NODE_PERFORMANCE_GC_MINOR
          ? 'minor'
          : kind === constants.NODE_PERFORMANCE_GC_MAJOR
            ? 'major'
            : kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL
              ? 'incremental'
              : String(kind);
      markAt(`gc.${name}.${e.duration.toFixed(2)}ms`, e.startTime);
    }
  }).observe({ entryTypes: ['gc'] });
}

/** Whether marks are kept: test it before building a label, so that tracing off costs no string. */
export const TRACING = enabled;

/** Notes `label` now. */
export function mark(label: string): void {
  if (!enabled) return;
  labels.push(label);
  times.push(performance.timeOrigin + performance.now());
}

/** Notes `label` at `at` (a performance.now() value taken earlier). */
export function markAt(label: string, at: number): void {
  if (!enabled) return;
  labels.push(label);
  times.push(performance.timeOrigin + at);
}

/** Prints and forgets the marks so far. */
export function flushTrace(side: 'source' | 'destination'): void {
  if (!enabled || labels.length === 0) return;
  const out = labels.map((l, i) => `xenkvm-trace ${side} ${l} ${times[i]!.toFixed(3)}\n`).join('');
  labels.length = 0;
  times.length = 0;
  process.stderr.write(out);
}

/** Trace lines in `text` (a child's stderr): [side, label, epoch ms]. */
export function parseTrace(text: string): Array<{ side: string; label: string; at: number }> {
  const out: Array<{ side: string; label: string; at: number }> = [];
  for (const m of text.matchAll(/^xenkvm-trace (\S+) (\S+) (\d+(?:\.\d+)?)$/gm))
    out.push({ side: m[1]!, label: m[2]!, at: Number(m[3]) });
  return out;
}
