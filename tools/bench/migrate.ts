// `npm run bench -- migrate`: live migration of a 1 GiB, 2-vCPU guest over
// loopback TCP while it dirties memory (the test guest's `dirty R`, R = 0,
// 64 and 256 MiB/s over a region of ~255 MiB of random pages), xenkvm
// against QEMU in the same run, both with a DOWNTIME_MS downtime target.
//
// xenkvm, per run: `xenkvm receive --listen tcp:127.0.0.1:PORT --qmp D
// --quiet`, `xenkvm run guest.elf --mem 1G --vcpus 2 --cmdline "dirty R"
// --qmp S`; once the guest printed its first `dirty:` line (region filled,
// rewriting started) and one more second passed, `xenkvm migrate --qmp S --to
// tcp:127.0.0.1:PORT --downtime-ms DOWNTIME_MS --json` (default max rounds and
// timeout, on timeout: pause and finish).  Figures are its report: totalMs,
// downtimeMs (from pausing the source until the destination's "guest running"
// answer arrived), guestDowntimeMs (until a vCPU ran at the destination),
// the phases up to END written (the span QEMU's own downtime covers), bytes,
// rounds, converged.  Afterwards the source must exit
// on its own, the destination must answer `running` and print a new `dirty:`
// status line (the guest goes on); then it is quit.
//
// QEMU (Debian's qemu-system-x86, KVM, the same ELF with -kernel and the same
// command line, -m 1024M -smp 2), per run: a destination with
// `-incoming tcp:127.0.0.1:PORT`, a source booted the same way and waited
// for in the same way; then over the source's QMP migrate-set-parameters
// {downtime-limit: DOWNTIME_MS, max-bandwidth: unlimited}, `migrate`, and
// query-migrate polled until completed (qemu.ts: qemuLiveMigrate).  Figures:
// total-time, downtime, ram.transferred, ram.dirty-sync-count.  QEMU's
// downtime ends when the *source* completes, before the destination has loaded
// the last state and started the VM; so the bench also takes the source's STOP
// and the destination's RESUME QMP events (both host wall-clock timestamps, µs)
// and reports STOP -> RESUME, the QEMU figure comparable to xenkvm's
// guestDowntimeMs (QEMU's own downtime compares with the phases up to END).
//
// QEMU would iterate for ever on a guest that dirties faster than it sends;
// to mirror xenkvm's `--on-timeout pause` (its defaults: 30 rounds, 60 s) the
// bench raises QEMU's downtime-limit to its maximum after more than 30 dirty
// syncs or 60 s, so it finishes, and records that (converged: false).
//
// Runs alternate between the VMMs (each goes first in turn) so host noise
// hits all; each configuration runs REPS times (XENKVM_BENCH_REPS, default
// 3) with fresh processes, and the tables give the median and min-max.  Only
// one VMM pair runs at a time.  XENKVM_BENCH_MIGRATE_RATES and
// XENKVM_BENCH_MIGRATE_VMMS narrow the run; XENKVM_BENCH_MIGRATE_ALT adds
// another build as a third VMM (a baseline for a change); with
// XENKVM_MIGRATE_TRACE=1 each xenkvm run prints both ends' marks as one
// timeline (src/trace.ts).
//
// Without Xen the guest paces `dirty` by spinning (and brings up only vCPU 0;
// QEMU's second vCPU stays in wait-for-SIPI), so QEMU's source burns a whole
// core during the migration where xenkvm's sleeps between 1 ms timer ticks.
// XENKVM_BENCH_MIGRATE_SPIN=1 adds `spin` to both command lines, so both
// guests spin.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { QmpClient } from '../../src/qmp/client.js';
import type { QmpEvent } from '../../src/qmp/protocol.js';
import { GUEST_ELF, REPO_ROOT } from './paths.js';
import {
  connectWhenReady,
  connectWithOptions,
  freeTcpPort,
  lostGreetings,
  type Procs,
  sleep,
  stop,
  tail,
  type Tracked,
  waitForText,
  withScratch,
} from './procs.js';
import { parseTrace, TRACING } from '../../src/trace.js';
import { detectQemu, qemuArgs, qemuLiveMigrate, type QemuLiveMigration } from './qemu.js';

const MiB = 1 << 20;
const MEM_MIB = 1024;
const VCPUS = 2;
const ALL_RATES_MIBS = [0, 64, 256] as const;
/** XENKVM_BENCH_MIGRATE_RATES=64,256 runs only those rates (a quicker loop while working on one). */
let RATES_MIBS: readonly number[] = ALL_RATES_MIBS;
/**
 * XENKVM_BENCH_MIGRATE_ALT=DIR/bin/xenkvm.js: another xenkvm build (say, the
 * commit before a change) runs as a third VMM, interleaved with the others,
 * so a change is measured against its baseline under the same host noise.
 */
let ALT: string | null = null;
/** XENKVM_BENCH_MIGRATE_VMMS=xenkvm leaves QEMU out. */
let VMMS: ReadonlySet<string> = new Set(['xenkvm', 'qemu']);
/** The downtime target given to both VMMs (xenkvm --downtime-ms, QEMU downtime-limit); XENKVM_BENCH_DOWNTIME_MS overrides. */
const DEFAULT_DOWNTIME_MS = 10;
const DEFAULT_REPS = 3;
// Read from the environment when the bench starts (a bad value then fails this bench only, not the import of registry.ts).
let DOWNTIME_MS = DEFAULT_DOWNTIME_MS;
let REPS = DEFAULT_REPS;
let SPIN = false;
/** xenkvm's defaults (src/migrate/live/send.ts), applied to QEMU as well. */
const MAX_ROUNDS = 30;
const GIVE_UP_MS = 60_000;

const XENKVM = join(REPO_ROOT, 'bin', 'xenkvm.js');

// Bounds on every wait, so a stuck child cannot hang the bench.
const LISTEN_WAIT_MS = 30_000;
/** Boot, fill ~255 MiB of random pages and print the first `dirty:` line (SeaBIOS alone takes seconds under PVM). */
const DIRTY_WAIT_MS = 180_000;
const SETTLE_MS = 1000;
/** xenkvm: 60 s iterative + final + up to 30 s for the confirmation, and node start-up. */
const MIGRATE_WAIT_MS = 150_000;
const AFTER_WAIT_MS = 15_000;

function envInt(name: string, dflt: number, min: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${v}: want an integer >= ${min}`);
  return n;
}

interface Range {
  median: number;
  min: number;
  max: number;
  n: number;
}

function range(xs: number[]): Range | null {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  return { median: s[Math.floor((s.length - 1) / 2)]!, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

interface XenkvmRun {
  ok: true;
  rep: number;
  totalMs: number;
  downtimeMs: number;
  /** The report's guestDowntimeMs: source paused -> a vCPU running at the destination (plus the answer's trip); NaN if absent. */
  guestDowntimeMs: number;
  /** Source paused -> END written (phases pause + finalPages + state): the span QEMU's own `downtime` covers. */
  toEndMs: number;
  bytes: number;
  rounds: number;
  /** 'downtime' when the target was met; 'max-rounds' / 'timeout' when xenkvm paused anyway. */
  converged: string;
  mbps: number;
  dataPages: number;
  zeroPages: number;
  finalPages: number;
  phases: Record<string, unknown>;
  /** The whole `xenkvm migrate` command (node start-up and connect included). */
  commandMs: number;
  /** Spawn of the source until its first `dirty:` line. */
  bootMs: number;
  dirtyLine: string;
  sourceExit: number | string;
  /** The destination's first `dirty:` status line after the migration. */
  afterLine: string;
}

interface QemuRun extends QemuLiveMigration {
  ok: true;
  rep: number;
  converged: boolean;
  /** Source STOP event -> destination RESUME event (QMP timestamps): the guest is not running anywhere. */
  stopToResumeMs: number;
  /** `migrate` sent -> destination RESUME event: QEMU's total as xenkvm counts its own. */
  toResumeMs: number;
  bootMs: number;
  dirtyLine: string;
  afterLine: string;
}

interface Failed {
  ok: false;
  rep: number;
  error: string;
}

interface VmmSummary {
  totalMs: Range | null;
  downtimeMs: Range | null;
  mibSent: Range | null;
  rounds: Range | null;
  /** QEMU only: STOP -> RESUME, and `migrate` -> RESUME. */
  stopToResumeMs?: Range | null;
  toResumeMs?: Range | null;
  /** xenkvm only: XenkvmRun's guestDowntimeMs and toEndMs. */
  guestDowntimeMs?: Range | null;
  toEndMs?: Range | null;
  ok: number;
  failed: number;
  converged: number;
}

interface RateResult {
  dirtyMiBs: number;
  cmdline: string;
  xenkvm: { runs: (XenkvmRun | Failed)[]; summary: VmmSummary };
  /** XENKVM_BENCH_MIGRATE_ALT's runs. */
  alt: { bin: string; runs: (XenkvmRun | Failed)[]; summary: VmmSummary } | null;
  qemu: { runs: (QemuRun | Failed)[]; summary: VmmSummary } | null;
  /**
   * xenkvm median / QEMU median, each over the same span: total against QEMU's
   * total-time and its `migrate` -> RESUME; the source's share of the pause
   * (pause -> END written) against QEMU's own downtime (stop -> source done);
   * the guest's pause (pause -> running at the destination) against STOP ->
   * RESUME; the strict downtime (pause -> answer back) has no QEMU twin.
   */
  ratios: {
    totalMs: number | null;
    totalVsToResume: number | null;
    sourceShare: number | null;
    guestPause: number | null;
  };
  targets: {
    totalBelowQemu: boolean | null;
    totalBelowQemuToResume: boolean | null;
    sourceShareNotAboveQemu: boolean | null;
    guestPauseNotAboveQemu: boolean | null;
  };
}

export async function benchMigrate(): Promise<object> {
  DOWNTIME_MS = envInt('XENKVM_BENCH_DOWNTIME_MS', DEFAULT_DOWNTIME_MS, 1);
  REPS = envInt('XENKVM_BENCH_REPS', DEFAULT_REPS, 1);
  SPIN = process.env['XENKVM_BENCH_MIGRATE_SPIN'] === '1';
  const rates = process.env['XENKVM_BENCH_MIGRATE_RATES'];
  if (rates)
    RATES_MIBS = rates.split(',').map((r) => {
      const n = Number(r);
      if (!Number.isInteger(n) || n < 0)
        throw new Error(`XENKVM_BENCH_MIGRATE_RATES=${rates}: want MiB/s figures like 0,64,256`);
      return n;
    });
  ALT = process.env['XENKVM_BENCH_MIGRATE_ALT'] || null;
  if (ALT && !existsSync(ALT)) throw new Error(`XENKVM_BENCH_MIGRATE_ALT=${ALT}: no such file`);
  const vmms = process.env['XENKVM_BENCH_MIGRATE_VMMS'];
  if (vmms) VMMS = new Set(vmms.split(','));
  const t0 = performance.now();
  return withScratch('xenkvm-bench-mig-', async (procs, dir) => {
    if (!existsSync(GUEST_ELF)) throw new Error(`${GUEST_ELF} is missing (npm run build:guest)`);
    const detect = detectQemu(console.log);
    const qemu = detect.ok && VMMS.has('qemu') ? detect.qemu : null;
    const qemuSkipped = !VMMS.has('qemu')
      ? 'not asked for (XENKVM_BENCH_MIGRATE_VMMS)'
      : detect.ok
        ? null
        : detect.reason;
    console.log(
      qemu
        ? `migrate: QEMU ${qemu.version} (${qemu.how}); -cpu qemu64 -smp ${VCPUS}`
        : `migrate: QEMU figures skipped: ${qemuSkipped}`,
    );
    console.log(
      `migrate: ${MEM_MIB} MiB guest, ${VCPUS} vCPUs, loopback TCP, downtime target ${DOWNTIME_MS} ms, ${REPS} run(s) per VMM and dirty rate${SPIN ? ', both guests spinning (XENKVM_BENCH_MIGRATE_SPIN=1)' : ''}`,
    );

    const rates: RateResult[] = [];
    for (const rate of RATES_MIBS) {
      const cmdline = `dirty ${rate}${SPIN ? ' spin' : ''}`;
      console.log(`\n"${cmdline}":`);
      const xr: (XenkvmRun | Failed)[] = [];
      const ar: (XenkvmRun | Failed)[] = [];
      const qr: (QemuRun | Failed)[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        const all: ('xenkvm' | 'alt' | 'qemu')[] = ALT ? ['xenkvm', 'alt', 'qemu'] : ['xenkvm', 'qemu'];
        // Each VMM goes first in turn.
        const order = [...all.slice(rep % all.length), ...all.slice(0, rep % all.length)];
        for (const vmm of order) {
          const label = `  ${String(rate).padStart(3)} MiB/s run ${rep + 1}/${REPS} ${vmm.padEnd(6)}`;
          if ((vmm === 'xenkvm' && VMMS.has('xenkvm')) || (vmm === 'alt' && ALT)) {
            const bin = vmm === 'alt' ? ALT! : XENKVM;
            const r = await attempt(rep, () => xenkvmRun(procs, join(dir, `${vmm}-${rate}-${rep}`), cmdline, rep, bin));
            (vmm === 'alt' ? ar : xr).push(r);
            console.log(
              r.ok
                ? `${label}: total ${r.totalMs.toFixed(0)} ms, downtime ${r.downtimeMs.toFixed(1)} ms (guest paused ${r.guestDowntimeMs.toFixed(1)}, to END ${r.toEndMs.toFixed(1)}), ${(r.bytes / MiB).toFixed(1)} MiB, ${r.rounds} rounds + final (${r.finalPages} pages), ${r.converged}` +
                    `, ${r.mbps.toFixed(0)} MiB/s; phases ${phaseText(r.phases)}; command ${r.commandMs.toFixed(0)} ms; boot ${(r.bootMs / 1000).toFixed(1)} s`
                : `${label}: FAILED: ${r.error}`,
            );
            if (r.ok && rep === 0)
              console.log(`      guest at the source: "${r.dirtyLine}"; at the destination: "${r.afterLine}"`);
          } else if (vmm === 'qemu' && qemu) {
            const r = await attempt(rep, () =>
              qemuRun(procs, qemu.binary, join(dir, `q-${rate}-${rep}`), cmdline, rep),
            );
            qr.push(r);
            console.log(
              r.ok
                ? `${label}: total ${r.totalMs.toFixed(0)} ms (setup ${r.setupMs.toFixed(0)}), downtime ${r.downtimeMs.toFixed(1)} ms (to RESUME ${r.toResumeMs.toFixed(0)} ms, STOP->RESUME ${r.stopToResumeMs.toFixed(1)} ms), ${(r.bytes / MiB).toFixed(1)} MiB, ${r.syncs} dirty syncs` +
                    `${r.forced ? `, forced after ${(r.forced.afterMs / 1000).toFixed(1)} s (${r.forced.why})` : ''}, ${r.mbps.toFixed(0)} Mbit/s` +
                    `${r.lastActive && r.lastActive.dirtyPagesRate > 0 ? `; QEMU's dirty-pages-rate ${((r.lastActive.dirtyPagesRate * 4096) / MiB).toFixed(0)} MiB/s` : ''}; boot ${(r.bootMs / 1000).toFixed(1)} s`
                : `${label}: FAILED: ${r.error}`,
            );
            if (r.ok && rep === 0)
              console.log(`      guest at the source: "${r.dirtyLine}"; at the destination: "${r.afterLine}"`);
          }
        }
      }
      rates.push(summarizeRate(rate, cmdline, xr, qemu ? qr : null, ALT ? ar : null));
    }

    printTables(rates);
    const met = printTargets(rates);
    if (lostGreetings > 0)
      console.log(`migrate: ${lostGreetings} control-socket connection(s) got no greeting and were retried`);
    console.log(`\nmigrate: total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return {
      memMiB: MEM_MIB,
      vcpus: VCPUS,
      downtimeTargetMs: DOWNTIME_MS,
      reps: REPS,
      spin: SPIN,
      maxRounds: MAX_ROUNDS,
      giveUpMs: GIVE_UP_MS,
      qemu,
      qemuSkipped,
      rates,
      targets: met,
      lostGreetings,
      seconds: (performance.now() - t0) / 1000,
    };
  });
}

async function attempt<T extends { ok: true }>(rep: number, f: () => Promise<T>): Promise<T | Failed> {
  try {
    return await f();
  } catch (e) {
    return { ok: false, rep, error: oneLine(e instanceof Error ? e.message : String(e)) };
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' | ').slice(0, 600);
}

function phaseText(p: Record<string, unknown>): string {
  return Object.entries(p)
    .map(([k, v]) => `${k.replace(/Ms$/, '')} ${typeof v === 'number' ? v.toFixed(1) : String(v)}`)
    .join(', ');
}

const DIRTY_START = /^dirty: \d+ MiB\/s over .*$/m;
const DIRTY_STATUS = /^dirty: t=.*$/m;

async function xenkvmRun(procs: Procs, dir: string, cmdline: string, rep: number, XENKVM: string): Promise<XenkvmRun> {
  execFileSync('mkdir', ['-p', dir]);
  const ssock = join(dir, 's.sock');
  const dsock = join(dir, 'd.sock');
  const port = await freeTcpPort();
  const to = `tcp:127.0.0.1:${port}`;
  const dst = procs.spawn(process.execPath, [XENKVM, 'receive', '--listen', to, '--qmp', dsock, '--quiet']);
  let src: Tracked | null = null;
  let dq: QmpClient | null = null;
  try {
    await waitForText(dst, () => dst.stderr, /waiting for a guest on/, LISTEN_WAIT_MS, 'xenkvm receive listening');
    const b0 = performance.now();
    const s = procs.spawn(process.execPath, [
      XENKVM,
      'run',
      GUEST_ELF,
      '--mem',
      `${MEM_MIB}M`,
      '--vcpus',
      String(VCPUS),
      '--cmdline',
      cmdline,
      '--qmp',
      ssock,
    ]);
    src = s;
    const dirtyLine = (
      await waitForText(s, () => s.stdout, DIRTY_START, DIRTY_WAIT_MS, 'xenkvm guest first dirty line')
    )[0];
    const bootMs = performance.now() - b0;
    await sleep(SETTLE_MS);
    if (s.done)
      throw new Error(`xenkvm source exited (${await s.exited}) before the migration; stderr: ${tail(s.stderr)}`);

    const m = procs.spawn(process.execPath, [
      XENKVM,
      'migrate',
      '--qmp',
      ssock,
      '--to',
      to,
      '--downtime-ms',
      String(DOWNTIME_MS),
      '--json',
    ]);
    const c0 = performance.now();
    const killer = setTimeout(() => m.child.kill('SIGKILL'), MIGRATE_WAIT_MS);
    const code = await m.exited;
    clearTimeout(killer);
    const commandMs = performance.now() - c0;
    if (code !== 0) {
      const why =
        m.stderr
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l !== '')
          .pop() ?? '(no message)';
      throw new Error(
        `xenkvm migrate exited ${code}${commandMs >= MIGRATE_WAIT_MS ? ` (killed after ${MIGRATE_WAIT_MS / 1000} s)` : ''}: ${why}`,
      );
    }
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(m.stdout.trim().split('\n').pop() ?? '') as Record<string, unknown>;
    } catch {
      throw new Error(`xenkvm migrate --json printed no JSON: ${tail(m.stdout, 200)}`);
    }
    if (r['status'] !== 'completed') throw new Error(`xenkvm migrate: status '${String(r['status'])}'`);

    // The source stops by itself once the destination confirmed.
    const srcKiller = setTimeout(() => s.child.kill('SIGKILL'), AFTER_WAIT_MS);
    const sourceExit = await s.exited;
    clearTimeout(srcKiller);
    if (sourceExit !== 0)
      throw new Error(
        `xenkvm source exited ${sourceExit} after the migration (0 expected${sourceExit === 'SIGKILL' ? `; still running ${AFTER_WAIT_MS / 1000} s later, killed` : ''}); stderr: ${tail(s.stderr)}`,
      );
    dq = await connectWhenReady(dst, dsock, AFTER_WAIT_MS);
    const status = ((await dq.execute('query-status')) as { status?: string }).status;
    if (status !== 'running')
      throw new Error(
        `xenkvm destination is '${status}' after the migration, not running; stderr: ${tail(dst.stderr)}`,
      );
    const afterLine = (
      await waitForText(dst, () => dst.stdout, DIRTY_STATUS, AFTER_WAIT_MS, 'xenkvm destination guest status line')
    )[0];
    if (TRACING) printTimeline([...parseTrace(s.stderr), ...parseTrace(dst.stderr)]);
    return {
      ok: true,
      rep,
      totalMs: Number(r['totalMs']),
      downtimeMs: Number(r['downtimeMs']),
      guestDowntimeMs: Number(r['guestDowntimeMs'] ?? NaN),
      toEndMs: toEnd(r['phases']),
      bytes: Number(r['bytes']),
      rounds: Number(r['rounds']),
      converged: String(r['converged']),
      mbps: Number(r['mbps']),
      dataPages: Number(r['dataPages']),
      zeroPages: Number(r['zeroPages']),
      finalPages: Number(r['finalPages']),
      phases: (r['phases'] ?? {}) as Record<string, unknown>,
      commandMs,
      bootMs,
      dirtyLine,
      sourceExit,
      afterLine,
    };
  } finally {
    // `xenkvm ctl D quit`, without a node start-up: the same QMP command; a
    // destination that never got a guest has no control socket: SIGTERM.
    await stop(dst, async () => {
      const c = dq ?? (existsSync(dsock) ? await connectWhenReady(dst, dsock, 3000) : null);
      if (!c) {
        dst.child.kill('SIGTERM');
        return;
      }
      try {
        await c.execute('quit', undefined, { timeoutMs: 3000 });
      } finally {
        if (c !== dq) c.close();
      }
    });
    dq?.close();
    if (src) await stop(src, async () => undefined, 0);
    rmSync(dir, { recursive: true, force: true });
  }
}

const eventMs = (e: QmpEvent): number => e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;

async function qemuRun(procs: Procs, binary: string, dir: string, cmdline: string, rep: number): Promise<QemuRun> {
  execFileSync('mkdir', ['-p', dir]);
  const port = await freeTcpPort();
  const uri = `tcp:127.0.0.1:${port}`;
  const o = { memMiB: MEM_MIB, elf: GUEST_ELF, cmdline };
  const smp = ['-smp', String(VCPUS)];
  const dlog = join(dir, 'd.log');
  const slog = join(dir, 's.log');
  const dsock = join(dir, 'd.sock');
  const ssock = join(dir, 's.sock');
  const events: { src: QmpEvent[]; dst: QmpEvent[] } = { src: [], dst: [] };
  const dst = procs.spawn(binary, [...qemuArgs({ ...o, log: dlog, qmp: dsock, incoming: uri }), ...smp]);
  let src: Tracked | null = null;
  let dq: QmpClient | null = null;
  let sq: QmpClient | null = null;
  try {
    // QEMU listens for the incoming migration before its main loop (and QMP) runs.
    dq = await connectWithOptions(dst, dsock, LISTEN_WAIT_MS, {
      commandTimeoutMs: 30_000,
      onEvent: (e) => events.dst.push(e),
    });
    const b0 = performance.now();
    const s = procs.spawn(binary, [...qemuArgs({ ...o, log: slog, qmp: ssock }), ...smp]);
    src = s;
    sq = await connectWithOptions(s, ssock, LISTEN_WAIT_MS, {
      commandTimeoutMs: 30_000,
      onEvent: (e) => events.src.push(e),
    });
    const read = (p: string) => () => (existsSync(p) ? readFileSync(p, 'utf8') : '');
    const dirtyLine = (await waitForText(s, read(slog), DIRTY_START, DIRTY_WAIT_MS, 'QEMU guest first dirty line'))[0];
    const bootMs = performance.now() - b0;
    await sleep(SETTLE_MS);
    if (s.done)
      throw new Error(`QEMU source exited (${await s.exited}) before the migration; stderr: ${tail(s.stderr)}`);

    const mig = await qemuLiveMigrate(sq, uri, {
      downtimeLimitMs: DOWNTIME_MS,
      maxRounds: MAX_ROUNDS,
      forceAfterMs: GIVE_UP_MS,
      timeoutMs: MIGRATE_WAIT_MS,
    });

    // The destination starts the VM by itself (-incoming without -S).
    const end = performance.now() + AFTER_WAIT_MS;
    for (;;) {
      const st = ((await dq.execute('query-status')) as { status?: string }).status;
      if (st === 'running') break;
      if (st !== 'inmigrate' && st !== 'paused' && st !== 'restore-vm' && st !== 'prelaunch')
        throw new Error(`QEMU destination: status '${st}' after the migration; stderr: ${tail(dst.stderr)}`);
      if (performance.now() > end)
        throw new Error(`QEMU destination: not running ${AFTER_WAIT_MS / 1000} s after the migration (status '${st}')`);
      await sleep(5);
    }
    const afterLine = (
      await waitForText(dst, read(dlog), DIRTY_STATUS, AFTER_WAIT_MS, 'QEMU destination guest status line')
    )[0];
    // Events can trail the replies by a little.
    const evEnd = performance.now() + 2000;
    let stopEv: QmpEvent | undefined;
    let resumeEv: QmpEvent | undefined;
    for (;;) {
      stopEv = events.src.filter((e) => e.event === 'STOP').pop();
      resumeEv = events.dst.find((e) => e.event === 'RESUME');
      if ((stopEv && resumeEv) || performance.now() > evEnd) break;
      await sleep(5);
    }
    if (!stopEv || !resumeEv)
      throw new Error(
        `QEMU: no ${stopEv ? '' : 'STOP event from the source '}${resumeEv ? '' : 'RESUME event from the destination'} seen`,
      );
    return {
      ...mig,
      ok: true,
      rep,
      converged: mig.forced === null,
      stopToResumeMs: eventMs(resumeEv) - eventMs(stopEv),
      toResumeMs: eventMs(resumeEv) - mig.startedAtEpochMs,
      bootMs,
      dirtyLine,
      afterLine,
    };
  } finally {
    for (const [t, q] of [
      [src, sq],
      [dst, dq],
    ] as const) {
      if (t) await stop(t, async () => q?.execute('quit', undefined, { timeoutMs: 3000 }));
      q?.close();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Pause -> END written, from the report's phases (NaN if any is missing). */
function toEnd(phases: unknown): number {
  const p = (phases ?? {}) as Record<string, unknown>;
  return Number(p['pauseMs'] ?? NaN) + Number(p['finalPagesMs'] ?? NaN) + Number(p['stateMs'] ?? NaN);
}

function xenkvmSummary(xr: (XenkvmRun | Failed)[]): VmmSummary {
  const xok = xr.filter((r): r is XenkvmRun => r.ok);
  return {
    totalMs: range(xok.map((r) => r.totalMs)),
    downtimeMs: range(xok.map((r) => r.downtimeMs)),
    mibSent: range(xok.map((r) => r.bytes / MiB)),
    guestDowntimeMs: range(xok.map((r) => r.guestDowntimeMs)),
    toEndMs: range(xok.map((r) => r.toEndMs)),
    rounds: range(xok.map((r) => r.rounds)),
    ok: xok.length,
    failed: xr.length - xok.length,
    converged: xok.filter((r) => r.converged === 'downtime').length,
  };
}

function summarizeRate(
  rate: number,
  cmdline: string,
  xr: (XenkvmRun | Failed)[],
  qr: (QemuRun | Failed)[] | null,
  ar: (XenkvmRun | Failed)[] | null,
): RateResult {
  const xs = xenkvmSummary(xr);
  let qs: VmmSummary | null = null;
  if (qr) {
    const qok = qr.filter((r): r is QemuRun => r.ok);
    qs = {
      totalMs: range(qok.map((r) => r.totalMs)),
      downtimeMs: range(qok.map((r) => r.downtimeMs)),
      mibSent: range(qok.map((r) => r.bytes / MiB)),
      rounds: range(qok.map((r) => r.syncs)),
      stopToResumeMs: range(qok.map((r) => r.stopToResumeMs)),
      toResumeMs: range(qok.map((r) => r.toResumeMs)),
      ok: qok.length,
      failed: qr.length - qok.length,
      converged: qok.filter((r) => r.converged).length,
    };
  }
  const ratio = (a: Range | null | undefined, b: Range | null | undefined) =>
    a && b && b.median > 0 ? a.median / b.median : null;
  const cmp = (a: Range | null | undefined, b: Range | null | undefined, f: (x: number, y: number) => boolean) =>
    a && b ? f(a.median, b.median) : null;
  return {
    dirtyMiBs: rate,
    cmdline,
    xenkvm: { runs: xr, summary: xs },
    alt: ar ? { bin: ALT!, runs: ar, summary: xenkvmSummary(ar) } : null,
    qemu: qr && qs ? { runs: qr, summary: qs } : null,
    ratios: {
      totalMs: ratio(xs.totalMs, qs?.totalMs),
      totalVsToResume: ratio(xs.totalMs, qs?.toResumeMs),
      sourceShare: ratio(xs.toEndMs, qs?.downtimeMs),
      guestPause: ratio(xs.guestDowntimeMs, qs?.stopToResumeMs),
    },
    targets: {
      totalBelowQemu: cmp(xs.totalMs, qs?.totalMs, (x, q) => x < q),
      totalBelowQemuToResume: cmp(xs.totalMs, qs?.toResumeMs, (x, q) => x < q),
      sourceShareNotAboveQemu: cmp(xs.toEndMs, qs?.downtimeMs, (x, q) => x <= q),
      guestPauseNotAboveQemu: cmp(xs.guestDowntimeMs, qs?.stopToResumeMs, (x, q) => x <= q),
    },
  };
}

function fmtRange(r: Range | null | undefined, digits = 0): string {
  if (!r) return '-';
  const f = (x: number) => x.toFixed(digits);
  return f(r.min) === f(r.max) ? f(r.median) : `${f(r.median)} (${f(r.min)}–${f(r.max)})`;
}

function fmtRatio(x: number | null): string {
  return x === null ? '-' : `${x.toFixed(2)}x`;
}

function printTables(rates: RateResult[]): void {
  console.log(
    `\nmigrate: ${MEM_MIB} MiB, ${VCPUS} vCPUs, loopback TCP, downtime target ${DOWNTIME_MS} ms; median (min–max) of the runs that completed`,
  );
  const head = [
    'dirty',
    'vmm',
    'total ms',
    'to answer ms',
    'guest paused ms',
    'source share ms',
    'MiB sent',
    'rounds',
    'converged',
    'failed',
  ];
  const lines: string[][] = [head];
  const xenkvmLine = (dirty: string, vmm: string, x: VmmSummary) => [
    dirty,
    vmm,
    fmtRange(x.totalMs),
    fmtRange(x.downtimeMs, 1),
    fmtRange(x.guestDowntimeMs, 1),
    fmtRange(x.toEndMs, 1),
    fmtRange(x.mibSent, 1),
    fmtRange(x.rounds),
    `${x.converged}/${x.ok}`,
    String(x.failed),
  ];
  for (const r of rates) {
    const x = r.xenkvm.summary;
    lines.push(xenkvmLine(`${r.dirtyMiBs} MiB/s`, 'xenkvm', x));
    if (r.alt) lines.push(xenkvmLine('', 'xenkvm ALT', r.alt.summary));
    if (r.qemu) {
      const q = r.qemu.summary;
      lines.push([
        '',
        'QEMU',
        fmtRange(q.totalMs),
        '-',
        fmtRange(q.stopToResumeMs, 1),
        fmtRange(q.downtimeMs, 1),
        fmtRange(q.mibSent, 1),
        fmtRange(q.rounds),
        `${q.converged}/${q.ok}`,
        String(q.failed),
      ]);
      lines.push(['', 'QEMU to RESUME', fmtRange(q.toResumeMs), '', '', '', '', '', '', '']);
      lines.push([
        '',
        'xenkvm/QEMU',
        fmtRatio(r.ratios.totalMs),
        '',
        fmtRatio(r.ratios.guestPause),
        fmtRatio(r.ratios.sourceShare),
        ratioOf(x.mibSent, q.mibSent),
        '',
        '',
        '',
      ]);
      lines.push(['', 'xenkvm/QEMU to RESUME', fmtRatio(r.ratios.totalVsToResume), '', '', '', '', '', '', '']);
    }
  }
  const w = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  for (const l of lines) console.log(`  ${l.map((c, i) => (i < 2 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ')}`);
  if (ALT) console.log(`  xenkvm ALT: ${ALT}`);
  console.log(
    '  notes: total: xenkvm from its migrate start to the destination\'s "guest running" answer back at the source; QEMU its',
  );
  console.log(
    '    total-time (ends when the source is done), and "QEMU to RESUME" from `migrate` to the destination\'s RESUME event.',
  );
  console.log(
    "    to answer: xenkvm from pausing the source to that answer back (the report's downtimeMs); QEMU has no such figure.",
  );
  console.log(
    "    guest paused: xenkvm from pausing the source to a vCPU running guest code at the destination, the answer's one-way",
  );
  console.log(
    '    trip included (guestDowntimeMs, no clocks compared); QEMU from its source STOP to its destination RESUME event (QMP',
  );
  console.log('    timestamps), which leaves out stopping the vCPUs and starting them again.');
  console.log(
    '    source share: xenkvm from pausing the source to END written (phases pause + finalPages + state); QEMU its own',
  );
  console.log(
    '    `downtime`, from stopping the source to the source done, before its destination has loaded the state.',
  );
  console.log(
    '    rounds: xenkvm pre-copy rounds (round 0 included, the paused final one not); QEMU ram.dirty-sync-count (its set-up and',
  );
  console.log(
    `    final syncs included, so ~rounds + 1). converged: runs that met the target; the others stopped at ${MAX_ROUNDS} rounds / ${GIVE_UP_MS / 1000} s`,
  );
  console.log(
    '    and paused anyway (xenkvm --on-timeout pause; QEMU: the bench raised downtime-limit to its maximum).',
  );
  if (!SPIN)
    console.log(
      "    Without Xen the guest paces `dirty` by spinning: QEMU's source vCPU burns a core during the migration, xenkvm's sleeps (1 ms ticks).",
    );
}

function ratioOf(a: Range | null | undefined, b: Range | null | undefined): string {
  return a && b && b.median > 0 ? `${(a.median / b.median).toFixed(2)}x` : '-';
}

function printTargets(rates: RateResult[]): Record<string, unknown> {
  const say = (v: boolean | null) => (v === null ? 'not measured' : v ? 'MET' : 'NOT MET');
  console.log(
    `\ntargets (medians; same ${DOWNTIME_MS} ms downtime target; each pair over the same span): downtime <= QEMU's, total time < QEMU's`,
  );
  const out: Record<string, unknown> = {};
  for (const r of rates) {
    const x = r.xenkvm.summary;
    const q = r.qemu?.summary;
    const m = (a: Range | null | undefined) => (a ? a.median.toFixed(1) : '-');
    console.log(
      `  ${String(r.dirtyMiBs).padStart(3)} MiB/s: guest paused ${say(r.targets.guestPauseNotAboveQemu)} (${m(x.guestDowntimeMs)} vs STOP->RESUME ${m(q?.stopToResumeMs)} ms),` +
        ` source share ${say(r.targets.sourceShareNotAboveQemu)} (${m(x.toEndMs)} vs own downtime ${m(q?.downtimeMs)} ms),` +
        ` total ${say(r.targets.totalBelowQemu)} (${m(x.totalMs)} vs ${m(q?.totalMs)} ms; vs to RESUME ${m(q?.toResumeMs)}: ${say(r.targets.totalBelowQemuToResume)})`,
    );
    out[`${r.dirtyMiBs}`] = r.targets;
  }
  return out;
}

/**
 * XENKVM_MIGRATE_TRACE=1: both processes' marks (src/trace.ts)
 * from the source's pause on, in ms after it; the destination's socket reads
 * are summed between consecutive other marks.
 */
function printTimeline(marks: Array<{ side: string; label: string; at: number }>): void {
  const pause = marks.find((m) => m.side === 'source' && m.label === 'pause');
  if (!pause) return console.log('      trace: no pause mark');
  const after = marks.filter((m) => m.at >= pause.at - 0.5).sort((a, b) => a.at - b.at);
  const rows: string[] = [];
  let reads = 0;
  let readBytes = 0;
  let lastRead = 0;
  const flushReads = (): void => {
    if (reads > 0)
      rows.push(
        `${(lastRead - pause.at).toFixed(2).padStart(8)}  destination  ${reads} reads, ${(readBytes / 1024).toFixed(0)} KiB (last at this time)`,
      );
    reads = 0;
    readBytes = 0;
  };
  for (const m of after) {
    if (m.side === 'destination' && m.label.startsWith('read.')) {
      reads++;
      readBytes += Number(m.label.slice(5));
      lastRead = m.at;
      continue;
    }
    flushReads();
    rows.push(`${(m.at - pause.at).toFixed(2).padStart(8)}  ${m.side.padEnd(11)}  ${m.label}`);
  }
  flushReads();
  console.log(
    `      trace (ms after the source paused at ${pause.at.toFixed(3)} ms since the epoch):\n${rows.map((r) => `      ${r}`).join('\n')}`,
  );
}
