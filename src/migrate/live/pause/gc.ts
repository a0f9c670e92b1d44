// Garbage collection at a moment of our choosing.  A migration's pause is
// short enough that one collection inside it dominates it: traced
// (XENKVM_MIGRATE_TRACE), the source's V8 ran a mark-compact or its
// incremental marking inside the pause in about one run in three
// (docs/benchmarks.md, "Log"), and a collection on the main thread also
// delays seeing the vCPUs park.  So the source collects everything after
// round 0 (not just before the pause: V8 then sweeps on a helper thread
// for a while) and only scavenges its
// young generation right before it pauses, and the destination scavenges
// after each round, so that the final round starts with room to allocate in.
//
// Node exposes `gc` only with --expose-gc.  Setting that flag at run time
// (v8.setFlagsFromString) installs `gc` in contexts created afterwards, so a
// fresh vm context hands it over without changing how the process starts.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void;

let gcFn: GcFunction | null | undefined;

function gcFunction(): GcFunction | null {
  if (gcFn === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      const f = runInNewContext('gc') as unknown;
      gcFn = typeof f === 'function' ? (f as GcFunction) : null;
    } catch {
      gcFn = null;
    }
  }
  return gcFn;
}

/** A full, synchronous collection (young and old generation); a no-op where V8 does not offer it. */
export function collectAll(): void {
  gcFunction()?.({ type: 'major', execution: 'sync' });
}

/** A scavenge of the young generation only (about a millisecond). */
export function collectYoung(): void {
  gcFunction()?.({ type: 'minor', execution: 'sync' });
}
