// The vCPU thread: runs KVM_RUN synchronously and serves its own exits
// (hypercalls, console ports, the hypercall-page MSR), as Firecracker's and
// QEMU's vCPU threads do.  A PIO exit handled here costs one koffi call and
// no thread hand-off (ARCHITECTURE.md: 10.5 µs versus 60 µs through the main
// thread).  Shared emulator state lives in SharedArrayBuffers (DomainState).
import { parentPort, workerData } from 'node:worker_threads';
import { KvmVcpu, type VcpuHandle } from '../kvm/vcpu.js';
import { Exit } from '../kvm/ioctls.js';
import { gettid, viewOf } from '../kvm/libc.js';
import { Gpr } from '../kvm/types.js';
import { Errno, XEN_HYPERCALL_MSR, type ShutdownReasonName } from './abi.js';
import { DomainState } from './domain.js';
import { GuestAccess } from './guest-access.js';
import { fillHypercallPage, HYPERCALL_PORT } from './hypercall-page.js';
import { dispatchHypercall, type HypercallCall, type HypercallEnv } from './hypercalls.js';
import { Ctl, Req, VcpuState, type Outcome, type VcpuMessage } from './vcpu-control.js';
import { DEBUGCON_PORT, DEBUG_EXIT_PORT } from './ports.js';

export interface VcpuWorkerData {
  handle: VcpuHandle;
  ramAddr: bigint;
  ramSize: number;
  domain: SharedArrayBuffer;
  control: SharedArrayBuffer;
  nrVcpus: number;
}

const EFER_LMA = 1n << 10n;
const EINTR = 4;
const EAGAIN = 11;
const U32 = 0xffffffffn;

const data = workerData as VcpuWorkerData;
const port = parentPort!;
const ctl = new Int32Array(data.control);
const post = (m: VcpuMessage, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

const vcpu = new KvmVcpu(data.handle);
const ram = viewOf(data.ramAddr, data.ramSize);
const domain = new DomainState(data.domain);
const warned = new Set<string>();
let outcome: Outcome | null = null;

const env: HypercallEnv = {
  domain,
  mem: new GuestAccess(ram),
  nrVcpus: data.nrVcpus,
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
  },
};
const call: HypercallCall = { nr: 0, args: new BigUint64Array(5), is64: true, vcpu: data.handle.index };

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
      a[0] = g[Gpr.RDI]!; a[1] = g[Gpr.RSI]!; a[2] = g[Gpr.RDX]!; a[3] = g[Gpr.R10]!; a[4] = g[Gpr.R8]!;
    } else {
      a[0] = g[Gpr.RBX]! & U32; a[1] = g[Gpr.RCX]! & U32; a[2] = g[Gpr.RDX]! & U32; a[3] = g[Gpr.RSI]! & U32; a[4] = g[Gpr.RDI]! & U32;
    }
    env.mem.setPaging(vcpu.syncCr0, vcpu.syncCr3, vcpu.syncCr4, efer);
    result = dispatchHypercall(env, call);
  }
  // Compat callers see a 32-bit result, sign included.
  g[Gpr.RAX] = call.is64 ? BigInt.asUintN(64, result) : (g[Gpr.RAX]! & ~U32) | BigInt.asUintN(32, result);
  vcpu.markGprDirty();
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
  if ((gpa & 0xfffn) !== 0n || gpa + 4096n > BigInt(data.ramSize)) {
    vcpu.completeMsr(true);
    return;
  }
  fillHypercallPage(ram, Number(gpa));
  domain.hypercallPageGpa = gpa;
  // The write latches the shared_info layout (XEN-ABI.md).  Sync sregs are
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
      env.services.warnOnce(`mmio-${vcpu.mmioAddr}`, `guest touched unbacked memory at 0x${vcpu.mmioAddr.toString(16)}`);
      return;
    case Exit.HLT:
      outcome ??= { kind: 'halted' };
      return;
    case Exit.SHUTDOWN:
      outcome ??= { kind: 'fault', detail: `vCPU ${call.vcpu}: triple fault at rip 0x${vcpu.getRegs()[Gpr.RIP]!.toString(16)}` };
      return;
    case Exit.INTERNAL_ERROR:
      outcome ??= { kind: 'fault', detail: `vCPU ${call.vcpu}: KVM internal error (suberror ${vcpu.internalSuberror})` };
      return;
    case Exit.SYSTEM_EVENT:
      outcome ??= vcpu.systemEventType === 2 ? { kind: 'shutdown', reason: 'reboot' } : { kind: 'fault', detail: `system event ${vcpu.systemEventType}` };
      return;
    default:
      outcome ??= { kind: 'fault', detail: `vCPU ${call.vcpu}: unexpected KVM exit ${reason}` };
  }
}

/** Parks until the main thread asks for RUN or STOP; returns false for STOP. */
function park(): boolean {
  Atomics.store(ctl, Ctl.STATE, VcpuState.PAUSED);
  Atomics.notify(ctl, Ctl.STATE);
  for (;;) {
    const req = Atomics.load(ctl, Ctl.REQ);
    if (req === Req.STOP) return false;
    if (req === Req.RUN) break;
    Atomics.wait(ctl, Ctl.REQ, req);
  }
  // Cleared only after seeing RUN: a kick racing with this resume re-sets it.
  vcpu.clearImmediateExit();
  Atomics.store(ctl, Ctl.STATE, VcpuState.RUNNING);
  Atomics.notify(ctl, Ctl.STATE);
  return true;
}

function loop(): void {
  Atomics.store(ctl, Ctl.TID, gettid());
  Atomics.store(ctl, Ctl.STATE, VcpuState.RUNNING);
  Atomics.notify(ctl, Ctl.STATE);
  for (;;) {
    if (Atomics.load(ctl, Ctl.REQ) !== Req.RUN && !park()) return;
    const r = vcpu.runOnce();
    if (r === -EINTR || r === -EAGAIN) continue;
    if (r < 0) outcome ??= { kind: 'fault', detail: `vCPU ${call.vcpu}: KVM_RUN failed (errno ${-r})` };
    else onExit(r);
    if (outcome !== null) {
      post({ t: 'outcome', outcome });
      outcome = null;
      // The machine decides what happens next (stop all vCPUs); wait for it.
      Atomics.compareExchange(ctl, Ctl.REQ, Req.RUN, Req.PAUSE);
    }
  }
}

try {
  loop();
} catch (e) {
  post({ t: 'outcome', outcome: { kind: 'fault', detail: `vCPU ${call.vcpu} thread failed: ${(e as Error).message}` } });
} finally {
  Atomics.store(ctl, Ctl.STATE, VcpuState.STOPPED);
  Atomics.notify(ctl, Ctl.STATE);
}
