// The timer thread: fires every vCPU's single-shot and periodic timers by
// making its VIRQ_TIMER port pending.  It sleeps in Atomics.wait until the
// nearest deadline or until a vCPU thread re-arms a timer (wakeTimers), with
// the kernel's timer slack set to 1 ns so wake-ups land within microseconds
// rather than the default 50 µs slack.
import { gettid, prctl, PR_SET_TIMERSLACK } from '../kvm/libc.js';
import { Virq } from '../xen/abi.js';
import { SyncField, VcpuField } from '../xen/tables.js';
import { guestNowNs } from '../xen/time/clock.js';
import { XenContext, type XenThreadResources } from '../xen/context.js';
import { threadInput } from './thread-input.js';

const xen = new XenContext(await threadInput<XenThreadResources>());
const s = xen.shared;
prctl(PR_SET_TIMERSLACK, 1);
Atomics.store(s.sync, SyncField.timerTid, gettid());

function fire(v: number): void {
  const port = s.virqPort(v, Virq.TIMER);
  if (port !== 0) xen.setPending(port);
}

const NEVER = 1n << 62n;

/**
 * Claims a due timer with `claim` (a compare-and-set that fails if the vCPU
 * re-armed or stopped it) and fires it, flagged as firing meanwhile: a stop
 * hypercall waits the flag out, so no tick lands after the stop returns.
 */
function firing(v: number, claim: () => boolean): boolean {
  s.setVcpu(v, VcpuField.timerFiring, 1n);
  try {
    if (!claim()) return false;
    fire(v);
    return true;
  } finally {
    s.setVcpu(v, VcpuField.timerFiring, 0n);
    s.notifyVcpuWord(v, VcpuField.timerFiring);
  }
}

for (;;) {
  if (Atomics.load(s.sync, SyncField.timerStop) !== 0) break;
  const seq = Atomics.load(s.sync, SyncField.timerWake);
  if (Atomics.load(s.sync, SyncField.timerPause) !== 0) {
    // Paused with the vCPUs: a deadline passing now fires after resume, so
    // a snapshot never sees a timer both armed and already delivered.
    Atomics.store(s.sync, SyncField.timerParked, 1);
    Atomics.notify(s.sync, SyncField.timerParked);
    Atomics.wait(s.sync, SyncField.timerWake, seq);
    continue;
  }
  Atomics.store(s.sync, SyncField.timerParked, 0);
  // Loaded again after the store: a pause() that read the parked flag of the
  // previous pause before this store is not waiting for this thread, so it
  // must not fire now (same handshake as a vCPU thread leaving park()).
  if (Atomics.load(s.sync, SyncField.timerPause) !== 0) continue;
  const now = guestNowNs(s);
  let next = NEVER;
  for (let v = 0; v < s.nrVcpus; v++) {
    const ss = s.vcpu(v, VcpuField.singleshotNs);
    if (ss !== 0n) {
      // Compare-and-clear: a vCPU re-arming or stopping meanwhile wins.
      if (ss <= now) firing(v, () => s.compareAndSetVcpu(v, VcpuField.singleshotNs, ss, 0n));
      else if (ss < next) next = ss;
    }
    const period = s.vcpu(v, VcpuField.periodicPeriodNs);
    if (period !== 0n) {
      let due = s.vcpu(v, VcpuField.periodicNextNs);
      if (due !== 0n && due <= now) {
        // Missed periods are not replayed (a paused guest gets one tick).
        const after = due + period <= now ? now + period : due + period;
        const was = due;
        if (firing(v, () => s.compareAndSetVcpu(v, VcpuField.periodicNextNs, was, after))) due = after;
        else due = s.vcpu(v, VcpuField.periodicNextNs);
      }
      if (due !== 0n && due < next) next = due;
    }
  }
  const waitMs = next === NEVER ? Infinity : Number(next - now) / 1e6;
  if (waitMs > 0) Atomics.wait(s.sync, SyncField.timerWake, seq, waitMs);
}
