// Worker half of pio-node.ts: owns the vCPU and times each exit with
// performance.now() (µs resolution is enough for ~5-10 µs events; the two
// calls cost ~0.1 µs).  The dispatch mode repeats the hypercall hot path of
// src/machine/vcpu-worker.ts (sync-regs read, dispatchHypercall, sync-regs write)
// so that its cost is measured without the rest of a guest.
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { KvmVcpu, type VcpuHandle } from '../../src/kvm/vcpu.js';
import { Exit } from '../../src/kvm/ioctls.js';
import { viewOf } from '../../src/kvm/libc.js';
import { Gpr } from '../../src/kvm/types.js';
import { DomainState } from '../../src/xen/domain.js';
import { GuestPhys } from '../../src/xen/memory/guest-phys.js';
import { MemoryLayout } from '../../src/xen/memory/layout.js';
import { GuestAccess } from '../../src/xen/guest-access.js';
import { HYPERCALL_PORT } from '../../src/xen/hypercall/page.js';
import { dispatchHypercall } from '../../src/xen/hypercall/dispatch.js';
import type { HypercallCall, HypercallEnv } from '../../src/xen/hypercall/types.js';
import { Hypercall, XEN_VERSION_MAJOR, XEN_VERSION_MINOR, XenVer } from '../../src/xen/abi.js';
import { offsetOf } from '../../src/kvm/layout.js';
import * as S from '../../src/kvm/structs.js';
import { KVM_SYNC_X86_REGS } from '../../src/kvm/ioctls.js';
import type { PioMode } from './pio-node.js';

export interface PioWorkerData {
  handle: VcpuHandle;
  ramAddr: bigint;
  ramSize: number;
  mode: PioMode;
  n: number;
  warm: number;
  /** 3n float64 (µs): KVM_RUN durations, whole iterations, then userspace time between a KVM_RUN's return and the next call. */
  samples: SharedArrayBuffer;
}
export interface PioWorkerDone {
  error: string | null;
}

const EINTR = 4,
  EAGAIN = 11;
const U32 = 0xffffffffn;
const d = workerData as PioWorkerData;
const post = (m: PioWorkerDone): void => parentPort!.postMessage(m);

function main(): void {
  const vcpu = new KvmVcpu(d.handle);
  // Only xen_version(XENVER_version) is served here, and it reads no part of
  // the environment beyond what the dispatcher itself uses (services on
  // errors).  Building the rest (XenContext: shared tables, MSI sender) would
  // tie this bench to every change of the emulator's environment, hence the cast.
  const env = {
    domain: new DomainState(),
    mem: new GuestAccess(new GuestPhys(new MemoryLayout(d.ramSize), [viewOf(d.ramAddr, d.ramSize)])),
    services: {
      consoleWrite() {},
      shutdown() {},
      warnOnce(_k: string, m: string) {
        throw new Error(m);
      },
    },
  } as unknown as HypercallEnv;
  const call: HypercallCall = { nr: 0, args: new BigUint64Array(5), is64: true, vcpu: 0, restart: null };
  const out = new Float64Array(d.samples);
  const dispatch = d.mode === 'dispatch' || d.mode === 'spin';
  const lean = d.mode === 'lean';
  // Lean path: the register file and kvm_dirty_regs as 32-bit words, so the hot path allocates no BigInt.
  const g32 = new Uint32Array(vcpu.gpr.buffer, vcpu.gpr.byteOffset, vcpu.gpr.length * 2);
  const dirtyWord = (vcpu.runBytes.byteOffset + offsetOf(S.kvm_run, 'kvm_dirty_regs')) / 4;
  const run32 = new Uint32Array(vcpu.runBytes.buffer);
  const RAX = Gpr.RAX * 2,
    RDI = Gpr.RDI * 2;
  const VERSION = (XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR;
  let prev = performance.now();
  let prevReturn = prev;
  for (let i = -d.warm; i < d.n; i++) {
    const t0 = performance.now();
    const r = vcpu.runOnce();
    const t1 = performance.now();
    if (r === -EINTR || r === -EAGAIN) {
      i--;
      continue;
    }
    if (r !== Exit.IO || vcpu.ioPort !== HYPERCALL_PORT)
      throw new Error(`unexpected exit ${r} (port 0x${vcpu.ioPort.toString(16)})`);
    if (lean) {
      // The shape a fast path in vcpu-worker.ts could take: decode from 32-bit
      // words, answer the trivial call inline, fall back to the dispatcher.
      if (g32[RAX] === Hypercall.xen_version && g32[RDI] === XenVer.version && g32[RDI + 1] === 0) {
        g32[RAX] = VERSION;
        g32[RAX + 1] = 0;
        run32[dirtyWord] = run32[dirtyWord]! | KVM_SYNC_X86_REGS;
      } else {
        throw new Error('lean mode only serves xen_version(XENVER_version)');
      }
    } else if (dispatch) {
      // As vcpu-worker.ts onHypercall(), for a 64-bit ring-0 caller.
      const g = vcpu.gpr;
      call.nr = Number(g[Gpr.RAX]! & U32);
      call.is64 = vcpu.syncCsLong;
      if ((vcpu.syncCsSelector & 3) !== 0) throw new Error('guest is not in ring 0');
      const a = call.args;
      a[0] = g[Gpr.RDI]!;
      a[1] = g[Gpr.RSI]!;
      a[2] = g[Gpr.RDX]!;
      a[3] = g[Gpr.R10]!;
      a[4] = g[Gpr.R8]!;
      env.mem.setPaging(vcpu.syncCr0, vcpu.syncCr3, vcpu.syncCr4, vcpu.syncEfer);
      g[Gpr.RAX] = BigInt.asUintN(64, dispatchHypercall(env, call));
      vcpu.markGprDirty();
    }
    if (i >= 0) {
      out[i] = (t1 - t0) * 1000;
      out[d.n + i] = (t0 - prev) * 1000; // previous iteration: its KVM_RUN + its handling
      out[2 * d.n + i] = (t0 - prevReturn) * 1000; // previous exit's handling
    }
    prev = t0;
    prevReturn = t1;
  }
  // Iteration samples are shifted by one (each closes at the next KVM_RUN); the first is the warm-up's last.
}

try {
  main();
  post({ error: null });
} catch (e) {
  post({ error: (e as Error).message });
}
