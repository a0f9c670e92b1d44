// The vCPU thread: runs KVM_RUN synchronously and serves its own exits
// (hypercalls, console ports, the hypercall-page MSR), as Firecracker's and
// QEMU's vCPU threads do.  A PIO exit handled here costs one koffi call and
// no thread hand-off, several times cheaper than serving it on the main
// thread (docs/architecture.md, "Threads"; figures in docs/benchmarks.md).
// Shared emulator state lives in SharedArrayBuffers (DomainState).
import { parentPort } from 'node:worker_threads';
import { KvmVcpu, type VcpuHandle } from '../kvm/vcpu.js';
import { Exit } from '../kvm/ioctls.js';
import { gettid } from '../kvm/libc.js';
import { Gpr } from '../kvm/types.js';
import { Errno, XEN_HYPERCALL_MSR, type ShutdownReasonName } from '../xen/abi.js';
import { GuestAccess } from '../xen/guest-access.js';
import { KVM, KVM_MP_STATE } from '../kvm/ioctls.js';
import { VcpuField } from '../xen/tables.js';
import { guestNowNs } from '../xen/time/clock.js';
import { hvmContextToState } from '../xen/vcpu/start.js';
import { XenContext, type XenThreadResources } from '../xen/context.js';
import { fillHypercallPage, HYPERCALL_PORT } from '../xen/hypercall/page.js';
import { dispatchHypercall } from '../xen/hypercall/dispatch.js';
import type { HypercallCall, HypercallEnv } from '../xen/hypercall/types.js';
import { Ctl, Req, VcpuState, type Outcome, type VcpuMessage } from './vcpu-control.js';
import { DEBUGCON_PORT, DEBUG_EXIT_PORT } from './io-ports.js';
import { threadInput } from './thread-input.js';

export interface VcpuWorkerData extends XenThreadResources {
  handle: VcpuHandle;
}

const EFER_LMA = 1n << 10n;
const EINTR = 4;
const EAGAIN = 11;
const U32 = 0xffffffffn;

const data = await threadInput<VcpuWorkerData>();
const port = parentPort!;
const me = data.handle.index;
const ctl = new Int32Array(data.control);
const base = me * Ctl.SIZE;
const post = (m: VcpuMessage, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

const vcpu = new KvmVcpu(data.handle);
const xen = new XenContext(data);
const domain = xen.shared.domain;
const warned = new Set<string>();
let outcome: Outcome | null = null;
/** An exit was handled since the last KVM_RUN: it must be completed before parking. */
let exitOutstanding = false;
/** The last KVM_RUN returned EINTR (a kick), so the vCPU may have stopped anywhere in guest code. */
let interrupted = false;
/** Times in a row this vCPU ran on instead of parking (breakpointPending). */
let ranOn = 0;

const stopRequested = () => Atomics.load(ctl, base + Ctl.REQ) !== Req.RUN;

/** Waits on this vCPU's WAKE word until `done()` or a stop/pause request; `deadlineNs` in guest time (0: none). */
function waitFor(done: () => boolean, deadlineNs: bigint): void {
  for (;;) {
    const seq = Atomics.load(ctl, base + Ctl.WAKE);
    if (done() || stopRequested()) return;
    let ms = Infinity;
    if (deadlineNs !== 0n) {
      const left = deadlineNs - guestNowNs(xen.shared);
      if (left <= 0n) return;
      ms = Number(left) / 1e6;
    }
    Atomics.wait(ctl, base + Ctl.WAKE, seq, ms);
  }
}

const env: HypercallEnv = {
  xen,
  domain,
  mem: new GuestAccess(xen.phys),
  services: {
    consoleWrite(bytes: Uint8Array): void {
      const copy = bytes.slice();
      post({ t: 'console', data: copy }, [copy.buffer]);
    },
    shutdown(reason: ShutdownReasonName): void {
      outcome ??= { kind: 'shutdown', reason };
    },
    warnOnce(key: string, message: string): void {
      if (warned.has(key)) return;
      warned.add(key);
      post({ t: 'log', key, message });
    },
    block(v: number): bigint {
      waitFor(() => xen.upcallPending(v), 0n);
      return 0n;
    },
    poll(v: number, ports: number[], timeoutNs: bigint): bigint {
      xen.shared.setVcpu(v, VcpuField.polling, 1n);
      try {
        waitFor(() => ports.some((p) => xen.isPending(p)), timeoutNs);
      } finally {
        xen.shared.setVcpu(v, VcpuField.polling, 0n);
      }
      return 0n;
    },
    startVcpu(v: number): void {
      xen.wakeVcpu(v);
    },
    notifyBackend(id: number): void {
      post({ t: 'backend', id });
    },
  },
};
const call: HypercallCall = { nr: 0, args: new BigUint64Array(5), is64: true, vcpu: me, restart: null };

function onHypercall(): void {
  const g = vcpu.gpr;
  call.nr = Number(g[Gpr.RAX]! & U32);
  const efer = vcpu.syncEfer;
  call.is64 = (efer & EFER_LMA) !== 0n && vcpu.syncCsLong;
  let result: bigint;
  if ((vcpu.syncCsSelector & 3) !== 0) {
    // Xen refuses hypercalls from guest user mode.
    result = BigInt(-Errno.EPERM);
  } else {
    const a = call.args;
    if (call.is64) {
      a[0] = g[Gpr.RDI]!;
      a[1] = g[Gpr.RSI]!;
      a[2] = g[Gpr.RDX]!;
      a[3] = g[Gpr.R10]!;
      a[4] = g[Gpr.R8]!;
    } else {
      a[0] = g[Gpr.RBX]! & U32;
      a[1] = g[Gpr.RCX]! & U32;
      a[2] = g[Gpr.RDX]! & U32;
      a[3] = g[Gpr.RSI]! & U32;
      a[4] = g[Gpr.RDI]! & U32;
    }
    env.mem.setPaging(vcpu.syncCr0, vcpu.syncCr3, vcpu.syncCr4, efer);
    result = dispatchHypercall(env, call);
    while (call.restart !== null) {
      if (reenterStub(call.restart)) return;
      // Entered some other way than the stub's start: finish here (each round makes progress).
      env.services.warnOnce(
        'restart-in-place',
        'a long hypercall did not come through the hypercall page: served whole',
      );
      call.args[0] = call.restart;
      result = dispatchHypercall(env, call);
    }
  }
  // Compat callers see a 32-bit result, sign included.
  g[Gpr.RAX] = call.is64 ? BigInt.asUintN(64, result) : (g[Gpr.RAX]! & ~U32) | BigInt.asUintN(32, result);
  vcpu.markGprDirty();
}

/**
 * A hypercall continuation (HypercallCall.restart): points RIP back at the
 * start of the stub the guest called (`mov eax, nr; out`) with the new first
 * argument, so the guest takes its interrupts and then re-issues the call,
 * as Xen rewinds a preempted hypercall.  KVM completes a port write by
 * skipping the instruction only while RIP is unchanged, so the moved RIP
 * stands.  False if the bytes there are not our stub (the caller then
 * finishes the call at once).
 */
function reenterStub(arg0: bigint): boolean {
  const g = vcpu.gpr;
  const rip = g[Gpr.RIP]!;
  const nr = call.nr;
  const stub = [0xb8, nr & 0xff, (nr >> 8) & 0xff, 0, 0, 0xe6, HYPERCALL_PORT];
  // RIP is at the OUT while KVM has not completed it; older kernels moved it past first.
  for (const back of [5n, 7n]) {
    const at = BigInt.asUintN(64, rip - back);
    const bytes = env.mem.read(at, stub.length);
    if (!bytes || !stub.every((b, i) => bytes[i] === b)) continue;
    g[Gpr.RIP] = at;
    if (call.is64) g[Gpr.RDI] = arg0;
    else g[Gpr.RBX] = (g[Gpr.RBX]! & ~U32) | (arg0 & U32);
    vcpu.markGprDirty();
    return true;
  }
  return false;
}

function onIo(): void {
  const portNr = vcpu.ioPort;
  if (!vcpu.ioIsOut) {
    // Nothing answers IN here: floating bus.
    const off = vcpu.ioDataOffset;
    vcpu.runBytes.fill(0xff, off, off + vcpu.ioSize * vcpu.ioCount);
    return;
  }
  switch (portNr) {
    case HYPERCALL_PORT:
      onHypercall();
      return;
    case DEBUGCON_PORT: {
      const off = vcpu.ioDataOffset;
      const len = vcpu.ioSize * vcpu.ioCount;
      env.services.consoleWrite(vcpu.runBytes.subarray(off, off + len));
      return;
    }
    case DEBUG_EXIT_PORT:
      env.services.shutdown(vcpu.runBytes[vcpu.ioDataOffset] === 0 ? 'poweroff' : 'crash');
      return;
    default:
      env.services.warnOnce(`port-${portNr}`, `guest wrote to unhandled I/O port 0x${portNr.toString(16)}`);
  }
}

function onWrmsr(): void {
  if (vcpu.msrIndex !== XEN_HYPERCALL_MSR) {
    vcpu.completeMsr(true);
    return;
  }
  const gpa = vcpu.msrData;
  const at = xen.phys.offsetOf(gpa, 4096);
  if ((gpa & 0xfffn) !== 0n || at < 0) {
    vcpu.completeMsr(true);
    return;
  }
  fillHypercallPage(xen.phys.bytes(at, 4096));
  domain.hypercallPageGpa = gpa;
  // The write latches the shared_info layout (docs/xen-abi.md).  Sync sregs are
  // from this exit, so EFER is the guest's current one.
  domain.longMode = (vcpu.syncEfer & EFER_LMA) !== 0n;
  vcpu.completeMsr(false);
}

function onExit(reason: number): void {
  switch (reason) {
    case Exit.IO:
      onIo();
      return;
    case Exit.X86_WRMSR:
      onWrmsr();
      return;
    case Exit.X86_RDMSR:
      vcpu.completeMsr(vcpu.msrIndex !== XEN_HYPERCALL_MSR, 0n);
      return;
    case Exit.MMIO:
      env.services.warnOnce(
        `mmio-${vcpu.mmioAddr}`,
        `guest touched unbacked memory at 0x${vcpu.mmioAddr.toString(16)}`,
      );
      return;
    case Exit.HLT:
      outcome ??= { kind: 'halted' };
      return;
    case Exit.SHUTDOWN:
      outcome ??= {
        kind: 'fault',
        detail: `vCPU ${me}: triple fault at rip 0x${vcpu.getRegs()[Gpr.RIP]!.toString(16)}`,
      };
      return;
    case Exit.INTERNAL_ERROR:
      outcome ??= { kind: 'fault', detail: `vCPU ${me}: KVM internal error (suberror ${vcpu.internalSuberror})` };
      return;
    case Exit.SYSTEM_EVENT:
      outcome ??=
        vcpu.systemEventType === 2
          ? { kind: 'shutdown', reason: 'reboot' }
          : { kind: 'fault', detail: `system event ${vcpu.systemEventType}` };
      return;
    default:
      outcome ??= { kind: 'fault', detail: `vCPU ${me}: unexpected KVM exit ${reason}` };
  }
}

/** Applies a start context stored by VCPUOP_initialise (this thread owns the vCPU fd). */
function applyStartContext(): void {
  const { gpr, sregs } = hvmContextToState(xen.shared.contextBytes(me));
  sregs.apicBase = vcpu.getSregs().apicBase;
  vcpu.setSregs(sregs);
  vcpu.setRegs(gpr);
  const mp = new Uint32Array([KVM_MP_STATE.RUNNABLE]);
  vcpu.ioctl(KVM.SET_MP_STATE, new Uint8Array(mp.buffer), 'KVM_SET_MP_STATE');
  xen.shared.setVcpu(me, VcpuField.startPending, 0n);
}

const isUp = () => xen.shared.vcpu(me, VcpuField.up) !== 0n;

const RFLAGS_IF = 0x200n;
const mpState = new Uint32Array(1);
let probeSeen = 0;

/**
 * Answers a new halt-probe round (machine.ts) after KVM_RUN returned `r`:
 * idle only when kicked out of a halt (EINTR) in KVM_MP_STATE_HALTED with
 * RFLAGS.IF clear.  The in-kernel irqchip keeps HLT from ever exiting to
 * userspace, so asking is the only way to see a guest that stopped for good.
 */
function answerProbe(r: number): void {
  const round = Atomics.load(ctl, base + Ctl.PROBE);
  if (round === probeSeen) return;
  probeSeen = round;
  let idle = false;
  if (r === -EINTR) {
    vcpu.ioctl(KVM.GET_MP_STATE, new Uint8Array(mpState.buffer), 'KVM_GET_MP_STATE');
    idle = mpState[0] === KVM_MP_STATE.HALTED && (vcpu.getRegs()[Gpr.RFLAGS]! & RFLAGS_IF) === 0n;
  }
  post({ t: 'idle', vcpu: me, round, idle });
}

const INT3 = 0xcc;
/** Runs on after a kick before parking regardless (each costs one kick interval, vcpu-thread.ts). */
const MAX_RUN_ON = 8;

/**
 * Whether this vCPU, just kicked out of guest code, may hold a #BP that KVM
 * has queued but not delivered.  PVM (the KVM on this project's hosts) moves
 * RIP past an INT3 before it delivers the #BP, while KVM_GET_VCPU_EVENTS
 * never reports a queued soft exception (the API has no instruction length
 * for one; KVM counts on RIP still pointing at the instruction).  State read
 * in that window lacks the exception: restored, the guest ran on past the
 * INT3 as if nothing had happened, and the test guest's ring-3 syscalls
 * (INT3) "returned" their own number, in 1 migration in ~50 and 1 state
 * round trip in 20-200.  So such a vCPU runs on until the next kick instead
 * of parking: entering the guest delivers whatever KVM has queued.  Seen from
 * here the window looks like an INT3 just before RIP; a vCPU there for
 * other reasons (an instruction whose last byte is 0xCC) only runs a little
 * longer.  KVM_GUESTDBG_SINGLESTEP would bound that run to one instruction,
 * but PVM sometimes hands its #DB to the guest instead of exiting.
 */
function breakpointPending(): boolean {
  env.mem.setPaging(vcpu.syncCr0, vcpu.syncCr3, vcpu.syncCr4, vcpu.syncEfer);
  const b = env.mem.read(BigInt.asUintN(64, vcpu.gpr[Gpr.RIP]! - 1n), 1);
  return b !== null && b[0] === INT3;
}

/** On a request other than RUN: false to park (or stop) now, true to run on once more for a pause (breakpointPending). */
function runOnFirst(): boolean {
  if (
    !interrupted ||
    exitOutstanding ||
    ranOn >= MAX_RUN_ON ||
    Atomics.load(ctl, base + Ctl.REQ) !== Req.PAUSE ||
    !breakpointPending()
  )
    return false;
  ranOn++;
  // The kick set immediate_exit; without clearing it KVM_RUN would return before entering the guest.
  vcpu.clearImmediateExit();
  return true;
}

/**
 * Parks until the main thread asks for RUN (and this vCPU is up) or STOP;
 * returns false for STOP.  A pending PIO/MSR completion is flushed first
 * (KVM_RUN with immediate_exit), so the state seen while parked is final.
 *
 * RUN counts only if it is still there when loaded again after RUNNING is
 * published: a pause() issued right after the resume may have read the
 * PAUSED state before RUNNING replaced it and be reading or writing the
 * vCPU's state now, without waiting for this thread.  Sequentially
 * consistent atomics leave two cases: pause() sees RUNNING and waits, or
 * this second load sees the pause and the thread parks again untouched.
 */
function park(): boolean {
  ranOn = 0;
  if (exitOutstanding) {
    vcpu.requestImmediateExit();
    vcpu.runOnce();
    exitOutstanding = false;
  }
  // What the last KVM_RUN left behind says nothing once the state may have been rewritten.
  interrupted = false;
  do {
    Atomics.store(ctl, base + Ctl.STATE, VcpuState.PAUSED);
    Atomics.notify(ctl, base + Ctl.STATE);
    for (;;) {
      const req = Atomics.load(ctl, base + Ctl.REQ);
      if (req === Req.STOP) return false;
      if (req === Req.RUN && isUp()) break;
      const seq = Atomics.load(ctl, base + Ctl.WAKE);
      if (Atomics.load(ctl, base + Ctl.REQ) !== req || (req === Req.RUN && isUp())) continue;
      Atomics.wait(ctl, base + Ctl.WAKE, seq);
    }
    // Cleared before RUNNING is published: the kick of a pause request this
    // thread has not seen yet then lands after the clear.
    vcpu.clearImmediateExit();
    Atomics.store(ctl, base + Ctl.STATE, VcpuState.RUNNING);
    Atomics.notify(ctl, base + Ctl.STATE);
  } while (Atomics.load(ctl, base + Ctl.REQ) !== Req.RUN);
  // A vCPU brought up by VCPUOP_up (perhaps before this thread started, on a
  // loaded host) starts from the context the guest gave it.
  if (xen.shared.vcpu(me, VcpuField.startPending) !== 0n) applyStartContext();
  return true;
}

function loop(): void {
  Atomics.store(ctl, base + Ctl.TID, gettid());
  // Threads start parked (the machine lets them run with start()).
  if (!park()) return;
  for (;;) {
    if (Atomics.load(ctl, base + Ctl.REQ) !== Req.RUN && !runOnFirst() && !park()) return;
    const r = vcpu.runOnce();
    exitOutstanding = false;
    interrupted = r === -EINTR;
    answerProbe(r);
    if (r === -EINTR) {
      // A kick with RUN still requested (the halt probe): run on.  Cleared
      // before REQ is read again, so a pause whose kick came after that read
      // still finds immediate_exit set (the same order as park()).
      vcpu.clearImmediateExit();
      continue;
    }
    if (r === -EAGAIN) continue;
    if (r < 0) outcome ??= { kind: 'fault', detail: `vCPU ${me}: KVM_RUN failed (errno ${-r})` };
    else {
      exitOutstanding = true;
      onExit(r);
    }
    if (outcome !== null) {
      post({ t: 'outcome', outcome });
      outcome = null;
      // The machine decides what happens next (stop all vCPUs); wait for it.
      Atomics.compareExchange(ctl, base + Ctl.REQ, Req.RUN, Req.PAUSE);
    }
  }
}

try {
  loop();
} catch (e) {
  post({ t: 'outcome', outcome: { kind: 'fault', detail: `vCPU ${me} thread failed: ${(e as Error).message}` } });
} finally {
  Atomics.store(ctl, base + Ctl.STATE, VcpuState.STOPPED);
  Atomics.notify(ctl, base + Ctl.STATE);
}
