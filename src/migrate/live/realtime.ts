// The pause of a live migration is a relay between threads on both hosts:
// the source's main thread parks the vCPUs, saves and sends; the
// destination's main thread applies, starts the vCPUs and answers; the
// source's reads the answer.  On a host with few cores each hand-off waited
// for the scheduler to give the woken thread a core (0.1-5 ms each in
// scheduler traces, 10 ms once for a single vCPU to park), so each side's
// main thread runs SCHED_FIFO for that window only: a woken real-time thread
// preempts ordinary ones at once.  The window is short and the thread
// blocks on I/O within it, and the kernel's real-time throttling (5% of each
// second kept for others by default) bounds any mistake.  A thread created
// inside the window (a vCPU, libuv's pool) must not inherit the policy for
// good, hence SCHED_RESET_ON_FORK.  Without the
// privilege (CAP_SYS_NICE) this does nothing; XENKVM_MIGRATE_REALTIME=0
// turns it off.
import { SCHED_FIFO, SCHED_OTHER, SCHED_RESET_ON_FORK, setThreadScheduler, threadScheduler } from '../../kvm/libc.js';

/** Low among real-time priorities: above every ordinary thread, below the kernel's own. */
const PRIORITY = 10;

const allowed = process.env['XENKVM_MIGRATE_REALTIME'] !== '0';

/**
 * Makes the calling (main) thread real-time until the returned function is
 * called; a no-op when not allowed or not permitted, or already real-time.
 */
export function realtimeWindow(): () => void {
  if (!allowed || threadScheduler() !== SCHED_OTHER || !setThreadScheduler(SCHED_FIFO | SCHED_RESET_ON_FORK, PRIORITY)) return () => {};
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    setThreadScheduler(SCHED_OTHER, 0);
  };
}
