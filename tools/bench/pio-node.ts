// The C peer's experiment from Node: the same 2 MiB long-mode ring-0 guest
// (`out %al, $0x9e; jmp`), driven through src/kvm (koffi, sync regs) by a
// worker thread, as xenkvm's vCPU threads drive a real guest.  Modes:
//   bare      KVM_RUN and nothing else: what koffi + Node add to the C figure;
//   mov       the guest also loads eax = 17 (xen_version) before each `out`,
//             as a hypercall stub does; the worker still does nothing: the
//             cost of one more emulated ring-0 instruction per exit;
//   dispatch  same guest code, served by the real dispatcher
//             (dispatchHypercall) the way vcpu-worker.ts does: what our
//             hypercall handling adds;
//   lean      same guest code, served by a prototype fast path (32-bit views
//             over the sync regs, no BigInt, paging regs not loaded): what a
//             leaner handler could save;
//   spin      dispatch, with ~100 emulated ring-0 instructions (a `dec; jnz`
//             loop) between exits, like the test guest's syscall path: does a
//             long stint in the guest make the next exit's handling slower?
// Setting up long mode directly (no PVH boot) keeps the guest at 2-3
// instructions per exit, so the figure is the exit path and not ring-0
// emulation of guest code.
import { Worker } from 'node:worker_threads';
import { GuestRam } from '../../src/kvm/guest-ram.js';
import { Kvm, KvmVm, encodeCpuid } from '../../src/kvm/kvm.js';
import { KvmVcpu, createVcpuHandle, destroyVcpuHandle } from '../../src/kvm/vcpu.js';
import { KVM } from '../../src/kvm/ioctls.js';
import { GPR_COUNT, Gpr, type Segment, type SpecialRegs } from '../../src/kvm/types.js';
import { Hypercall, XenVer } from '../../src/xen/abi.js';
import { HYPERCALL_PORT } from '../../src/xen/hypercall/page.js';
import { summarize, type Stats } from './stats.js';
import type { PioWorkerData, PioWorkerDone } from './pio-node-worker.js';

export type PioMode = 'bare' | 'mov' | 'dispatch' | 'lean' | 'spin';

export interface NodePioResult {
  mode: PioMode;
  /** KVM_RUN call alone (µs). */
  run: Stats;
  /** One whole loop iteration: KVM_RUN + exit handling (µs). */
  iteration: Stats;
  /** Userspace time from KVM_RUN's return to the next KVM_RUN (µs). */
  handler: Stats;
}

const MEM = 2 << 20;
/** Iterations of the spin mode's 2-instruction loop between exits. */
const SPIN_LOOPS = 50;
const PML4 = 0x1000,
  PDPT = 0x2000,
  PD = 0x3000,
  GDT = 0x4000,
  CODE = 0x10000,
  STACK = 0x20000;
// x86 architectural bits (SDM vol. 3).
const P = 1n,
  RW = 2n,
  PS = 0x80n;
const CR0 = 0x1n | 0x2n | 0x10n | 0x20n | 0x10000n | 0x80000000n; // PE MP ET NE WP PG
const CR4_PAE = 0x20n;
const EFER = 0x100n | 0x400n; // LME LMA

function code(mode: PioMode): number[] {
  const out = [0xe6, HYPERCALL_PORT]; // out %al, $port
  if (mode === 'bare') return [...out, 0xeb, 0xfc]; // jmp back 4
  if (mode === 'spin') {
    // mov $17, %eax; out; mov $SPIN_LOOPS, %ecx; 1: dec %ecx; jnz 1b; jmp start
    return [
      0xb8,
      Hypercall.xen_version,
      0,
      0,
      0,
      ...out,
      0xb9,
      SPIN_LOOPS,
      0,
      0,
      0,
      0xff,
      0xc9,
      0x75,
      0xfc,
      0xeb,
      0xee,
    ];
  }
  return [0xb8, Hypercall.xen_version, 0, 0, 0, ...out, 0xeb, 0xf7]; // mov $17, %eax; out; jmp back 9
}

function seg(selector: number, isCode: boolean): Segment {
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type: isCode ? 0xb : 0x3,
    present: true,
    dpl: 0,
    db: !isCode,
    s: true,
    l: isCode,
    g: true,
    avl: false,
    unusable: false,
  };
}

export async function runNodePio(mode: PioMode, n: number, warm = 1000): Promise<NodePioResult> {
  const kvm = Kvm.open();
  const vm = new KvmVm(kvm);
  const ram = new GuestRam(MEM);
  const handle = createVcpuHandle(vm, 0);
  try {
    vm.setMemory(0, 0, ram.size, ram.hostAddr);
    const v = new DataView(ram.bytes.buffer, ram.bytes.byteOffset, ram.bytes.byteLength);
    v.setBigUint64(PML4, BigInt(PDPT) | P | RW, true);
    v.setBigUint64(PDPT, BigInt(PD) | P | RW, true);
    v.setBigUint64(PD, P | RW | PS, true); // one 2 MiB page at 0
    v.setBigUint64(GDT + 8, 0x00af9b000000ffffn, true);
    v.setBigUint64(GDT + 16, 0x00cf93000000ffffn, true);
    ram.bytes.set(code(mode), CODE);

    const vcpu = new KvmVcpu(handle);
    vcpu.ioctl(KVM.SET_CPUID2, encodeCpuid(kvm.supportedCpuid()), 'KVM_SET_CPUID2');
    const cur = vcpu.getSregs();
    const data = seg(0x10, false);
    const sregs: SpecialRegs = {
      ...cur,
      cs: seg(0x08, true),
      ds: data,
      es: data,
      fs: data,
      gs: data,
      ss: data,
      gdt: { base: BigInt(GDT), limit: 23 },
      cr0: CR0,
      cr3: BigInt(PML4),
      cr4: CR4_PAE,
      efer: EFER,
    };
    vcpu.setSregs(sregs);
    const regs = new Array<bigint>(GPR_COUNT).fill(0n);
    regs[Gpr.RIP] = BigInt(CODE);
    regs[Gpr.RSP] = BigInt(STACK);
    regs[Gpr.RFLAGS] = 2n;
    regs[Gpr.RDI] = BigInt(XenVer.version);
    vcpu.setRegs(regs);

    const samples = new SharedArrayBuffer(3 * n * 8);
    const workerData: PioWorkerData = { handle, ramAddr: ram.hostAddr, ramSize: ram.size, mode, n, warm, samples };
    const worker = new Worker(new URL('./pio-node-worker.js', import.meta.url), { workerData });
    const done = await new Promise<PioWorkerDone>((resolve, reject) => {
      worker.once('message', (m: PioWorkerDone) => resolve(m));
      worker.once('error', reject);
      worker.once('exit', (c) => reject(new Error(`PIO worker exited (${c}) before reporting`)));
    });
    await worker.terminate();
    if (done.error) throw new Error(`PIO worker: ${done.error}`);
    const all = new Float64Array(samples);
    return {
      mode,
      run: summarize(all.subarray(0, n)),
      iteration: summarize(all.subarray(n, 2 * n)),
      handler: summarize(all.subarray(2 * n)),
    };
  } finally {
    destroyVcpuHandle(handle);
    ram.destroy();
    vm.destroy();
    kvm.close();
  }
}
