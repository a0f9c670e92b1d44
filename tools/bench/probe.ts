// Exit-time probe for a real guest run, loaded with `node --import` into a
// child process (probe-run.ts) so it also runs in every vCPU worker (Workers
// inherit execArgv).  It wraps KvmVcpu.prototype.runOnce and, per exit,
// records how long KVM_RUN took (guest code since the last entry + the exit
// and entry themselves, host-measured) and how long the thread then spent in
// userspace before the next KVM_RUN (our exit handling).  src/ is untouched:
// the vCPU worker imports the very module instance patched here.
//
// Exits are grouped in segments: a console_io hypercall (the guest printing a
// report line) closes the current segment.  The bench guest prints one line
// per measured phase, so each phase's xen_version exits land in one segment.
// Written as JSON to $XENKVM_BENCH_PROBE after each segment closes.
import { isMainThread } from 'node:worker_threads';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { KvmVcpu } from '../../src/kvm/vcpu.js';
import { Exit } from '../../src/kvm/ioctls.js';
import { Gpr } from '../../src/kvm/types.js';
import { Hypercall } from '../../src/xen/abi.js';
import { HYPERCALL_PORT } from '../../src/xen/hypercall/page.js';

export interface ProbeSegment {
  /** Hypercall number -> count of its exits in this segment. */
  hypercalls: Record<string, number>;
  /** µs per exit, for xen_version exits only (the measured hypercall). */
  runUs: number[];
  handleUs: number[];
  /** Part of handleUs up to the handler's KvmVcpu.markGprDirty() call: decode + dispatch. */
  dispatchUs: number[];
}

const outPath = process.env['XENKVM_BENCH_PROBE'];

if (!isMainThread && outPath) {
  const segments: ProbeSegment[] = [];
  const fresh = (): ProbeSegment => ({ hypercalls: {}, runUs: [], handleUs: [], dispatchUs: [] });
  let seg = fresh();
  let lastReturn = 0;
  let lastWasXenVersion = false;
  let lastMark = 0;
  const origMark = KvmVcpu.prototype.markGprDirty;
  KvmVcpu.prototype.markGprDirty = function (this: KvmVcpu): void {
    lastMark = performance.now();
    origMark.call(this);
  };
  const orig = KvmVcpu.prototype.runOnce;
  KvmVcpu.prototype.runOnce = function (this: KvmVcpu): number {
    const t0 = performance.now();
    if (lastWasXenVersion) {
      seg.handleUs.push((t0 - lastReturn) * 1000);
      seg.dispatchUs.push((lastMark - lastReturn) * 1000);
    }
    const r = orig.call(this);
    const t1 = performance.now();
    lastReturn = t1;
    lastWasXenVersion = false;
    if (r === Exit.IO && this.ioPort === HYPERCALL_PORT) {
      const nr = Number(this.gpr[Gpr.RAX]! & 0xffffffffn);
      seg.hypercalls[nr] = (seg.hypercalls[nr] ?? 0) + 1;
      if (nr === Hypercall.xen_version) {
        seg.runUs.push((t1 - t0) * 1000);
        lastWasXenVersion = true;
      } else if (nr === Hypercall.console_io) {
        if (seg.runUs.length > 0) {
          segments.push(seg);
          // Synchronous and rare (once per report line), outside any timed span.
          writeFileSync(outPath, JSON.stringify(segments));
        }
        seg = fresh();
      }
    }
    return r;
  };
}
