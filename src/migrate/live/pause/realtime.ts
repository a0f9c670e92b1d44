// The pause of a live migration is a relay between threads on both hosts:
// the source's main thread parks the vCPUs, saves and sends; the
// destination's main thread applies, starts the vCPUs and answers; the
// source's reads the answer.  On a host with few cores each hand-off waited
// for the scheduler to give the woken thread a core (milliseconds each in
// scheduler traces; docs/benchmarks.md, "Log"), so for that window
// each side's main thread runs SCHED_FIFO, and so do the vCPU and timer threads that
// must park or start in it, one priority below so that the main thread still
// preempts a vCPU that runs guest code.  A woken real-time thread preempts
// ordinary ones at once.  The window is short and the main thread blocks on
// I/O within it, and the kernel's real-time throttling (5% of each second
// kept for others by default) bounds any mistake.  A thread created inside
// the window (libuv's pool) must not inherit the policy for good, hence
// SCHED_RESET_ON_FORK.  Without the privilege (CAP_SYS_NICE) this does
// nothing; XENKVM_MIGRATE_REALTIME=0 turns it off.
import {
  SCHED_FIFO,
  SCHED_OTHER,
  SCHED_RESET_ON_FORK,
  setThreadScheduler,
  threadScheduler,
} from '../../../kvm/libc.js';

/** Low among real-time priorities: above every ordinary thread, below the kernel's own. */
const MAIN_PRIORITY = 10;
const HELPER_PRIORITY = MAIN_PRIORITY - 1;

const allowed = process.env['XENKVM_MIGRATE_REALTIME'] !== '0';

/**
 * Makes the calling (main) thread real-time, and the threads `helpers` (tids
 * of this process) one priority lower, until the returned function is
 * called; a no-op when not allowed or not permitted, or already real-time.
 */
export function realtimeWindow(helpers: readonly number[] = []): () => void {
  if (
    !allowed ||
    threadScheduler() !== SCHED_OTHER ||
    !setThreadScheduler(SCHED_FIFO | SCHED_RESET_ON_FORK, MAIN_PRIORITY)
  )
    return () => {};
  const raised = helpers.filter(
    (tid) => tid > 0 && setThreadScheduler(SCHED_FIFO | SCHED_RESET_ON_FORK, HELPER_PRIORITY, tid),
  );
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    // Helpers first: once the main thread is ordinary again, a real-time vCPU could keep it from running.
    for (const tid of raised) setThreadScheduler(SCHED_OTHER, 0, tid);
    setThreadScheduler(SCHED_OTHER, 0);
  };
}
