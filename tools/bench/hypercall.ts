// `npm run bench -- hypercall`: what one Xen hypercall costs in xenkvm, next to
// the cheapest exit KVM can do on this host.
//   1. C peer (c/pio_exit.c): bare PIO exit from long-mode ring 0, host-timed.
//   2. The same guest code from Node (src/kvm over koffi, worker thread), bare
//      and with the real xen_version dispatch: what Node and our handler add.
//   3. The test guest's `bench` program, booted through XenMachine: guest-timed
//      (rdtsc) ring-0 hypercall (a tight asm loop calling the hypercall page's
//      stub directly, and the same through the kernel's C wrapper), ring-3
//      hypercall via the int3 syscall, and the syscall round trip.
//   4. The same guest again in a child process with probe.ts loaded: per exit,
//      KVM_RUN time vs our userspace handling time (host-timed).
// Bounded: ~20k exits per host-side case and 2000 samples per guest figure,
// well under the 60 s budget on a 2-core machine.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseGuestData } from './guest-data.js';
import { runGuest } from './guest-run.js';
import { runNodePio, type NodePioResult, type PioMode } from './pio-node.js';
import { runPioExit, type CPioResult } from './pio-exit.js';
import type { ProbeSegment } from './probe.js';
import { scaleStats, summarize, type Stats } from './stats.js';

/** Issue 2's acceptance target: a ring-0 hypercall within 1.5x of a bare C PIO exit. */
export const TARGET_RATIO = 1.5;
const HOST_EXITS = 20_000;
const GUEST_SAMPLES = 2_000;
const SPIN_EXITS = 3_000;
/** Runs of each host-side case; the one with the lowest median is kept. */
const REPEATS = 3;

/** A guest-reported distribution (cycles) and the same in µs. */
export interface GuestFigure {
  cycles: Partial<Stats> & { n: number; mean: number };
  us: Partial<Stats> & { n: number; mean: number };
}

export interface ProbePhase {
  phase: string;
  exits: number;
  /** KVM_RUN per xen_version exit: guest code since the previous entry + exit + entry (µs). */
  kvmRun: Stats;
  /** Userspace time from KVM_RUN's return to the next KVM_RUN: our exit handling (µs). */
  handler: Stats;
  /** The part of `handler` up to the hypercall result being written (decode + dispatch), µs. */
  dispatch: Stats;
}

export interface HypercallBenchResult {
  tscKhz: number;
  tscSource: 'guest pvclock' | 'KVM_GET_TSC_KHZ';
  c: { bare: CPioResult; syncRegs: CPioResult };
  node: Record<PioMode, NodePioResult>;
  guest: Record<string, GuestFigure>;
  probe: ProbePhase[];
  /** Ring-0 hypercall median (guest rdtsc, per call) / C bare PIO exit median. */
  ratio: number;
  /** Same from the median of 10-call batches (per-call mean of each). */
  ratioBatch: number;
  /** Same from the bulk loop's mean per hypercall, over the C mean. */
  ratioBulk: number;
  /** Bulk loop mean minus the empty loop's mean (stub + call + exit only) / C mean. */
  ratioStub: number;
  /** The bulk loop through the kernel's C wrapper (xen_hypercall) / C mean: the path before the direct-stub loop. */
  ratioCWrapper: number;
  /** Node worker serving xen_version for the C peer's loop (+ the stub's mov) / C bare, medians. */
  ratioEmulator: number;
  target: number;
}

const GUEST_KEYS = [
  'syscall',
  'loop_ring0',
  'loop_ring0_batch',
  'loop_ring0_bulk',
  'hcall_user',
  'hcall_ring0',
  'hcall_ring0_batch',
  'hcall_ring0_bulk',
  'hcall_ring0_c',
  'hcall_ring0_c_batch',
  'hcall_ring0_c_bulk',
] as const;
/** Segments of the probed run that hold xen_version exits, in the order bench.c runs them. */
const PROBE_PHASES = [
  'hcall_user',
  'hcall_ring0',
  'hcall_ring0_batch',
  'hcall_ring0_bulk',
  'hcall_ring0_c',
  'hcall_ring0_c_batch',
  'hcall_ring0_c_bulk',
] as const;

export class BenchFailure extends Error {}

function toFigure(rec: Record<string, number>, usPerCycle: number): GuestFigure {
  const cycles = { ...rec, n: rec['n'] ?? 0, mean: rec['mean'] ?? NaN } as GuestFigure['cycles'];
  const us = Object.fromEntries(
    Object.entries(cycles).map(([k, v]) => [k, k === 'n' ? v : (v as number) * usPerCycle]),
  ) as GuestFigure['us'];
  return { cycles, us };
}

function runProbed(): ProbePhase[] {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-bench-probe-'));
  const out = join(dir, 'probe.json');
  try {
    const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
    const r = spawnSync(
      process.execPath,
      ['--import', here('./probe.js'), here('./probe-run.js'), `bench ${GUEST_SAMPLES}`],
      {
        encoding: 'utf8',
        timeout: 30_000,
        env: { ...process.env, XENKVM_BENCH_PROBE: out },
      },
    );
    if (r.status !== 0)
      throw new BenchFailure(
        `probed guest run failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`,
      );
    const segs = (JSON.parse(readFileSync(out, 'utf8')) as ProbeSegment[]).filter(
      (s) => s.runUs.length >= GUEST_SAMPLES / 2,
    );
    return segs.map((s, i) => ({
      phase: PROBE_PHASES[i] ?? `segment ${i}`,
      exits: s.runUs.length,
      kvmRun: summarize(s.runUs),
      handler: summarize(s.handleUs),
      dispatch: summarize(s.dispatchUs),
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const f1 = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(1));

function table(rows: Array<[string, string, string, string]>): string {
  const head: [string, string, string, string] = ['path', 'median µs', 'p99 µs', 'measured by'];
  const all = [head, ...rows];
  const w = [0, 1, 2, 3].map((c) => Math.max(...all.map((r) => r[c]!.length)));
  const line = (r: string[]): string =>
    `| ${r.map((c, i) => (i === 1 || i === 2 ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join(' | ')} |`;
  return [
    line(head),
    `|${w.map((x, i) => (i === 1 || i === 2 ? '-'.repeat(x + 1) + ':' : '-'.repeat(x + 2))).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}

export async function benchHypercall(): Promise<HypercallBenchResult> {
  console.log(`hypercall: C peer, ${HOST_EXITS} exits per run, best of ${REPEATS} ...`);
  // Best of REPEATS (lowest median) for every host-side case: the machine's
  // two cores are shared, and the least disturbed run is the best estimate of
  // the uncontended cost.  Cases are interleaved so drift hits them alike.
  let cBare: CPioResult | undefined;
  let cSync: CPioResult | undefined;
  for (let i = 0; i < REPEATS; i++) {
    const b = runPioExit({ n: HOST_EXITS, syncRegs: false });
    const sy = runPioExit({ n: HOST_EXITS, syncRegs: true });
    if (!cBare || b.medianNs < cBare.medianNs) cBare = b;
    if (!cSync || sy.medianNs < cSync.medianNs) cSync = sy;
  }
  if (!cBare || !cSync) throw new BenchFailure('no C peer run');
  console.log(`hypercall: Node/koffi PIO loop, ${HOST_EXITS} exits per run, best of ${REPEATS} ...`);
  const node = {} as Record<PioMode, NodePioResult>;
  for (let i = 0; i < REPEATS; i++) {
    for (const mode of ['bare', 'mov', 'dispatch', 'lean', 'spin'] as const) {
      // spin exits are far slower than the others, so fewer of them
      const r = mode === 'spin' ? await runNodePio(mode, SPIN_EXITS, 200) : await runNodePio(mode, HOST_EXITS);
      const best = node[mode] as NodePioResult | undefined;
      if (!best || r.iteration.p50 < best.iteration.p50) node[mode] = r;
    }
  }
  const { bare: nodeBare, mov: nodeMov, dispatch: nodeDispatch, lean: nodeLean, spin: nodeSpin } = node;

  console.log(`hypercall: test guest "bench ${GUEST_SAMPLES}" ...`);
  const run = await runGuest(`bench ${GUEST_SAMPLES}`);
  if (run.outcome.kind !== 'shutdown' || run.outcome.reason !== 'poweroff') {
    throw new BenchFailure(
      `bench guest did not pass (${JSON.stringify(run.outcome)}):\n${run.console.split('\n').slice(-8).join('\n')}`,
    );
  }
  const parsed = parseGuestData(run.console);
  const tscKhz = parsed.tscKhz > 0 ? parsed.tscKhz : cBare.tscKhz;
  if (!(tscKhz > 0))
    throw new BenchFailure('TSC frequency unknown (no pvclock scale in the guest, KVM_GET_TSC_KHZ failed)');
  const usPerCycle = 1000 / tscKhz;
  const guest: Record<string, GuestFigure> = {};
  for (const k of GUEST_KEYS) {
    const rec = parsed.raw.get(k);
    if (!rec)
      throw new BenchFailure(
        `the guest did not report "${k}"; console tail:\n${run.console.split('\n').slice(-8).join('\n')}`,
      );
    guest[k] = toFigure(rec, usPerCycle);
  }

  console.log('hypercall: test guest again with the exit probe ...');
  const probe = runProbed();

  const g = (k: (typeof GUEST_KEYS)[number]): GuestFigure['us'] => guest[k]!.us;
  const cUs = scaleStats(
    { n: cBare.n, min: cBare.minNs, p50: cBare.medianNs, p99: cBare.p99Ns, max: cBare.maxNs, mean: cBare.meanNs },
    1e-3,
  );
  const cSyncUs = scaleStats(
    { n: cSync.n, min: cSync.minNs, p50: cSync.medianNs, p99: cSync.p99Ns, max: cSync.maxNs, mean: cSync.meanNs },
    1e-3,
  );
  const ratio = g('hcall_ring0').p50! / cUs.p50;
  const ratioBulk = g('hcall_ring0_bulk').mean / cUs.mean;
  const ratioBatch = g('hcall_ring0_batch').p50! / cUs.p50;
  const stubUs = g('hcall_ring0_bulk').mean - g('loop_ring0_bulk').mean;
  const ratioStub = stubUs / cUs.mean;
  const ratioCWrapper = g('hcall_ring0_c_bulk').mean / cUs.mean;
  const tscSource = parsed.tscKhz > 0 ? 'guest pvclock' : 'KVM_GET_TSC_KHZ';

  const rows: Array<[string, string, string, string]> = [
    ['C: bare PIO exit, ring 0 (`out; jmp`)', f1(cUs.p50), f1(cUs.p99), 'host, clock_gettime around KVM_RUN'],
    ['C: same, sync regs (REGS+SREGS) on', f1(cSyncUs.p50), f1(cSyncUs.p99), 'host, clock_gettime around KVM_RUN'],
    [
      'Node/koffi worker: same guest, bare exit',
      f1(nodeBare.iteration.p50),
      f1(nodeBare.iteration.p99),
      'host, performance.now per iteration',
    ],
    [
      'Node/koffi worker: + `mov $17,%eax` (stub)',
      f1(nodeMov.iteration.p50),
      f1(nodeMov.iteration.p99),
      'host, performance.now per iteration',
    ],
    [
      'Node/koffi worker: + xen_version dispatch',
      f1(nodeDispatch.iteration.p50),
      f1(nodeDispatch.iteration.p99),
      'host, performance.now per iteration',
    ],
    [
      'Node/koffi worker: + lean fast path (proto)',
      f1(nodeLean.iteration.p50),
      f1(nodeLean.iteration.p99),
      'host, performance.now per iteration',
    ],
    [
      'xenkvm hypercall from ring 0 (per call)',
      f1(g('hcall_ring0').p50),
      f1(g('hcall_ring0').p99),
      'guest rdtsc in ring 0 (SYS_kbench n=1), stub called directly',
    ],
    [
      'xenkvm hypercall from ring 0 (batches of 10)',
      f1(g('hcall_ring0_batch').p50),
      f1(g('hcall_ring0_batch').p99),
      'guest rdtsc in ring 0, per-call mean of each batch',
    ],
    [
      'xenkvm hypercall from ring 0 (loop, mean)',
      f1(g('hcall_ring0_bulk').mean),
      '-',
      `guest rdtsc, ${GUEST_SAMPLES}-iteration asm loop (mov; xor; call *stub; dec; jnz)`,
    ],
    [
      '  ring-0 loop without the call (per call)',
      f1(g('loop_ring0').p50),
      f1(g('loop_ring0').p99),
      'guest rdtsc: timing overhead inside the per-call row',
    ],
    [
      '  ring-0 loop without the call (batches of 10)',
      f1(g('loop_ring0_batch').p50),
      f1(g('loop_ring0_batch').p99),
      'guest rdtsc',
    ],
    ['  ring-0 loop without the call (loop, mean)', f1(g('loop_ring0_bulk').mean), '-', 'guest rdtsc'],
    ['  => stub + exit only (loop mean - empty loop)', f1(stubUs), '-', 'difference of the two loop means'],
    [
      'through the C wrapper: ring 0 (per call)',
      f1(g('hcall_ring0_c').p50),
      f1(g('hcall_ring0_c').p99),
      'guest rdtsc in ring 0 (C loop, xen_hypercall)',
    ],
    [
      'through the C wrapper: ring 0 (batches of 10)',
      f1(g('hcall_ring0_c_batch').p50),
      f1(g('hcall_ring0_c_batch').p99),
      'guest rdtsc in ring 0',
    ],
    [
      'through the C wrapper: ring 0 (loop, mean)',
      f1(g('hcall_ring0_c_bulk').mean),
      '-',
      `guest rdtsc, ${GUEST_SAMPLES}-iteration C loop`,
    ],
    ['ring-3 hypercall via int3 syscall', f1(g('hcall_user').p50), f1(g('hcall_user').p99), 'guest rdtsc in ring 3'],
    ['syscall round trip (int3 + iretq)', f1(g('syscall').p50), f1(g('syscall').p99), 'guest rdtsc in ring 3'],
  ];
  console.log('');
  console.log(table(rows));
  console.log('');
  const verdict = (r: number): string => (r <= TARGET_RATIO ? 'meets' : 'misses');
  console.log(
    `ratio hypercall (ring 0, per call, median) / C bare PIO exit (median): ${ratio.toFixed(2)}x  (target <= ${TARGET_RATIO}x: ${verdict(ratio)})`,
  );
  console.log(
    `ratio hypercall (ring 0, batches, median) / C bare PIO exit (median):  ${ratioBatch.toFixed(2)}x  (${verdict(ratioBatch)})`,
  );
  console.log(
    `ratio hypercall (ring 0, loop mean) / C bare PIO exit (mean):          ${ratioBulk.toFixed(2)}x  (${verdict(ratioBulk)})`,
  );
  const ratioEmu = node.dispatch.iteration.p50 / cUs.p50;
  console.log(
    `ratio stub + exit only (loop mean - empty loop mean) / C (mean):      ${ratioStub.toFixed(2)}x  (${verdict(ratioStub)})`,
  );
  console.log(
    `ratio through the C wrapper (ring 0, loop mean) / C (mean):            ${ratioCWrapper.toFixed(2)}x  (${verdict(ratioCWrapper)})`,
  );
  console.log(
    `ratio emulator only (same guest loop + stub mov, Node dispatch) / C:   ${ratioEmu.toFixed(2)}x  (${verdict(ratioEmu)})`,
  );
  console.log(
    `TSC ${(tscKhz / 1000).toFixed(1)} MHz (${tscSource}); guest figures: ${GUEST_SAMPLES} samples each; host figures: ${HOST_EXITS} exits per run, best of ${REPEATS} runs`,
  );

  console.log('');
  console.log('where the time goes (host-measured medians, µs):');
  console.log(`  KVM exit + entry, C, bare:                        ${f1(cUs.p50)}`);
  console.log(`  + sync regs copy (C):                             ${f1(cSyncUs.p50 - cUs.p50)}`);
  console.log(
    `  + Node/koffi KVM_RUN call (vs C with sync regs):  ${f1(nodeBare.run.p50 - cSyncUs.p50)}   (KVM_RUN alone from Node: ${f1(nodeBare.run.p50)})`,
  );
  console.log(`  + JS loop around it (bare iteration - KVM_RUN):   ${f1(nodeBare.iteration.p50 - nodeBare.run.p50)}`);
  console.log(
    `  + one emulated ring-0 instruction (stub's mov):   ${f1(nodeMov.iteration.p50 - nodeBare.iteration.p50)}`,
  );
  console.log(
    `  + xen_version dispatch in JS (vcpu-worker path):  ${f1(nodeDispatch.iteration.p50 - nodeMov.iteration.p50)}   (lean prototype: ${f1(nodeLean.iteration.p50 - nodeMov.iteration.p50)})`,
  );
  console.log(
    `  handling after ~${f1(nodeSpin.run.p50)} µs of emulated ring-0 guest code between exits: ${f1(nodeSpin.handler.p50)} (vs ${f1(nodeDispatch.handler.p50)} back to back)`,
  );
  console.log(
    `  emulator-only ratio with the lean prototype: lean / C bare = ${(nodeLean.iteration.p50 / cUs.p50).toFixed(2)}x`,
  );
  const ring0Code = g('hcall_ring0_bulk').mean - nodeDispatch.iteration.p50;
  console.log(
    `  => of a ring-0 hypercall in the guest's loop (${f1(g('hcall_ring0_bulk').mean)}), the exit, its handling and the stub's mov`,
  );
  console.log(
    `     take ${f1(nodeDispatch.iteration.p50)}; ~${f1(ring0Code)} is the guest's other ring-0 instructions (loop, call/ret), emulated`,
  );
  console.log(
    `     (through the C wrapper: ${f1(g('hcall_ring0_c_bulk').mean)}, i.e. ~${f1(g('hcall_ring0_c_bulk').mean - nodeDispatch.iteration.p50)} of guest ring-0 code)`,
  );
  if (probe.length > 0) {
    console.log('  in the real guest, per xen_version exit (probe in the vCPU worker):');
    for (const p of probe) {
      console.log(
        `    ${p.phase.padEnd(17)} KVM_RUN ${f1(p.kvmRun.p50).padStart(6)} (p99 ${f1(p.kvmRun.p99).padStart(6)})   handler ${f1(p.handler.p50).padStart(5)} (p99 ${f1(p.handler.p99).padStart(5)}), of which decode+dispatch ${f1(p.dispatch.p50).padStart(5)}   n=${p.exits}`,
      );
    }
    const bulk = probe.find((p) => p.phase === 'hcall_ring0_bulk');
    const user = probe.find((p) => p.phase === 'hcall_user');
    if (user && bulk) {
      console.log(
        `  => after a ring-3 excursion (int3 syscall) the same handler takes ${f1(user.handler.p50)} µs instead of ${f1(bulk.handler.p50)} µs`,
      );
      console.log('     (its first touches of kvm_run and the JS heap are slow: see tools/bench/README.md)');
    }
  }
  return {
    tscKhz,
    tscSource,
    c: { bare: cBare, syncRegs: cSync },
    node,
    guest,
    probe,
    ratio,
    ratioBatch,
    ratioBulk,
    ratioStub,
    ratioCWrapper,
    ratioEmulator: ratioEmu,
    target: TARGET_RATIO,
  };
}
