// The benches `npm run bench` knows.  To add one, write tools/bench/<name>.ts
// exporting an async function and add one entry here; main.ts needs no change.
import { benchEvtchn } from './evtchn.js';
import { benchDiff } from './diff.js';
import { benchHypercall } from './hypercall.js';
import { benchMigrate } from './migrate.js';
import { benchRam } from './ram.js';
import { benchSnapshot } from './snapshot.js';
import { benchVmstate } from './vmstate.js';

/** What a bench hands back for --json: any JSON-serialisable object (bigints are written as strings). */
export type BenchResult = object | void;

export interface BenchEntry {
  name: string;
  summary: string;
  /** Part of a bare `npm run bench`: finishes in well under a minute on a shared 2-core machine. */
  quick: boolean;
  run: () => Promise<BenchResult>;
}

export const BENCHES: readonly BenchEntry[] = [
  {
    name: 'hypercall',
    summary: 'ring-0 hypercall round trip vs a bare C PIO exit; ring-3 hypercall and syscall cost',
    quick: true,
    run: benchHypercall,
  },
  {
    name: 'evtchn',
    summary: 'event channel send -> upcall latency (same vCPU, cross-vCPU) and timer lateness p50/p99 on 1 and 2 vCPUs',
    quick: true,
    run: benchEvtchn,
  },
  {
    name: 'vmstate',
    summary: 'encode/decode the full state of an 8-vCPU machine (vmstate descriptors)',
    quick: true,
    run: benchVmstate,
  },
  // Not quick: ~1 GiB of memory and 256 MiB files on a machine shared by several engineers.
  {
    name: 'diff',
    summary: 'xenkvm diff of two 1 GiB snapshots (25% non-zero, 1% differing): time and peak RSS',
    quick: false,
    run: benchDiff,
  },
  // Not quick: boots 256 MiB and 1 GiB guests under xenkvm and QEMU, ~1 min, ~2 GiB RAM, ~1 GiB of temp files.
  {
    name: 'snapshot',
    summary:
      'snapshot to a file and restore to running, xenkvm (plain, --compress) vs QEMU migrate/-incoming, 256 MiB and 1 GiB guests',
    quick: false,
    run: benchSnapshot,
  },
  // Not quick: 1 GiB guests, fresh xenkvm and QEMU pairs for 3 dirty rates x 3 runs each, a few minutes, ~4 GiB RAM.
  {
    name: 'migrate',
    summary:
      'live migration of a 1 GiB 2-vCPU guest dirtying 0/64/256 MiB/s over loopback TCP, 10 ms downtime target: xenkvm vs QEMU total time, downtime, bytes, rounds',
    quick: false,
    run: benchMigrate,
  },
  {
    name: 'ram',
    summary: 'zero-page detection, CRC-32, 256 MiB RAM image to a snapshot file and back',
    quick: false,
    run: benchRam,
  },
];
