// Child process of the snapshot bench: where the time of `xenkvm restore`
// goes.  Runs the command's own code (restoreCommand, as `xenkvm restore
// FILE --quiet` does after its argument check) in a fresh process and marks
// each step as it begins, in ms since the process started:
//   node dist/tools/bench/restore-phases.js FILE [SOCK] [--eager]
// prints one JSON line (starting with `{"bootMs"`) once a vCPU runs guest
// code and, with SOCK, the control socket is there (`--qmp SOCK`), then
// exits.  Without bin/xenkvm.js's argument parsing (< 1 ms).
//
// The steps overlap: the vCPU and timer threads load on the other core from
// the start, and the emulator's and the run loop's modules load while RAM is
// read, so the figures are a timeline, not a sum of costs.

import { existsSync, readFileSync, rmSync } from 'node:fs';

const bootMs = performance.now(); // since the process's time origin: node's own start-up

const eager = process.argv.includes('--eager');
const [file, sock] = process.argv.slice(2).filter((a) => a !== '--eager');
if (!file) {
  process.stderr.write('usage: restore-phases FILE [SOCK] [--eager]\n');
  process.exit(2);
}

const marks: Record<string, number> = {};
const { restoreCommand } = await import('../../src/cli/restore.js');
marks['cli'] = performance.now();

/** utime + stime of the calling thread, from /proc (clock ticks of 10 ms). */
function threadCpuMs(): number {
  try {
    const f = readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

function report(): never {
  const at = (k: string) => marks[k] ?? Number.NaN;
  const ru = process.resourceUsage();
  const out = {
    bootMs,
    /** The restore command's modules: the file reader, RAM loader, guest RAM mapping (the emulator loads later, in parallel). */
    importMs: at('imported') - bootMs,
    /** Open the file, check preamble and HEADER; the vCPU threads for the header's count start here. */
    headerMs: at('header') - at('imported'),
    /** SECTION records read (decoded later), until the first RAM record. */
    sectionsMs: at('ram') - at('header'),
    /** RAM records read into fresh guest memory and checksummed, until END and the last read. */
    ramMs: at('loaded') - at('ram'),
    /** Waiting for the emulator's modules (loading since the header), decoding the sections. */
    emulatorMs: at('machine') - at('loaded'),
    /** XenMachine.create around the filled memory (VM, vCPUs) and the host CPU check. */
    createMs: at('state') - at('machine'),
    /** Device and vCPU state written to KVM and the emulator. */
    stateMs: at('done') - at('state'),
    /** Until the run loop's modules are there and the threads are let go. */
    toStartMs: at('started') - at('done'),
    /** From start() until vCPU 0's thread runs guest code. */
    startMs: at('running') - at('started'),
    /** Process start to running. */
    runningAtMs: at('running'),
    /** Lazy memory: process start until every stored page was in guest memory (the guest ran meanwhile). */
    filledAtMs: at('filled'),
    /** Process start until the control socket's file exists (with SOCK; it accepts connections a few ms later). */
    qmpAtMs: at('qmp'),
    /** Of runningAtMs, the main thread's busy (not waiting in the event loop) time. */
    mainBusyMs: performance.eventLoopUtilization().active,
    /** CPU time of the main thread itself (the rest: vCPU/timer threads, libuv's pool reading RAM, V8's helpers). */
    mainCpuMs: threadCpuMs(),
    cpuUserMs: ru.userCPUTime / 1000,
    cpuSystemMs: ru.systemCPUTime / 1000,
    minorFaults: ru.minorPageFault,
  };
  process.stdout.write(`\n${JSON.stringify(out)}\n`);
  process.exit(0);
}

const status = await restoreCommand({
  file,
  quiet: true,
  eager,
  ...(sock ? { qmp: sock } : {}),
  onPhase: (p) => {
    marks[p] = performance.now();
    // With lazy memory the report waits until it is all in, to give that time too.
    if (p === 'filled' && marks['running'] !== undefined && !sock) report();
    if (p !== 'running') return;
    if (!sock && (marks['lazy'] === undefined || marks['filled'] !== undefined)) report();
    const poll = setInterval(() => {
      if (!existsSync(sock)) return;
      marks['qmp'] = performance.now();
      clearInterval(poll);
      rmSync(sock, { force: true });
      report();
    }, 1);
  },
});
process.stderr.write(`restore-phases: the guest stopped (status ${status}) before it ran\n`);
process.exit(1);
