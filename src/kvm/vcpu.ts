// One KVM vCPU: its fd, its kvm_run page, and zero-copy views over the
// sync-regs area.  A KvmVcpu belongs to one thread (the one calling run());
// other threads only kick it through a VcpuKick built from the same handle.
//
// Safety: `runAddr` is an mmap of the vCPU fd made by createVcpuHandle; every
// view here is valid until destroyVcpuHandle unmaps it, which the owner of the
// handle (the machine) does only after the vCPU's thread has stopped.
import { ioctlBuf, ioctlRaw, mmap, munmap, closeFd, MAP_SHARED, PROT_READ, PROT_WRITE, viewOf } from './libc.js';
import { offsetOf } from './layout.js';
import { KVM, KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS } from './ioctls.js';
import * as S from './structs.js';
import { readSregs, SREGS_OFF, writeSregs } from './sregs.js';
import type { KvmVm } from './kvm.js';
import type { SpecialRegs } from './types.js';

/** What a thread needs to drive or kick a vCPU; plain data, passable to a Worker. */
export interface VcpuHandle {
  index: number;
  fd: number;
  runAddr: bigint;
  runSize: number;
}

export function createVcpuHandle(vm: KvmVm, index: number): VcpuHandle {
  const fd = vm.createVcpu(index);
  try {
    const runAddr = mmap(vm.kvm.vcpuMmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return { index, fd, runAddr, runSize: vm.kvm.vcpuMmapSize };
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

export function destroyVcpuHandle(h: VcpuHandle): void {
  munmap(h.runAddr, h.runSize);
  closeFd(h.fd);
}

const RUN = {
  immediateExit: offsetOf(S.kvm_run, 'immediate_exit'),
  exitReason: offsetOf(S.kvm_run, 'exit_reason'),
  validRegs: offsetOf(S.kvm_run, 'kvm_valid_regs'),
  dirtyRegs: offsetOf(S.kvm_run, 'kvm_dirty_regs'),
  ioDirection: offsetOf(S.kvm_run, 'exit.io.direction'),
  ioSize: offsetOf(S.kvm_run, 'exit.io.size'),
  ioPort: offsetOf(S.kvm_run, 'exit.io.port'),
  ioCount: offsetOf(S.kvm_run, 'exit.io.count'),
  ioDataOffset: offsetOf(S.kvm_run, 'exit.io.data_offset'),
  msrError: offsetOf(S.kvm_run, 'exit.msr.error'),
  msrIndex: offsetOf(S.kvm_run, 'exit.msr.index'),
  msrData: offsetOf(S.kvm_run, 'exit.msr.data'),
  mmioAddr: offsetOf(S.kvm_run, 'exit.mmio.phys_addr'),
  internalSuberror: offsetOf(S.kvm_run, 'exit.internal.suberror'),
  systemEventType: offsetOf(S.kvm_run, 'exit.system_event.type'),
  syncRegs: offsetOf(S.kvm_run, 's.regs.regs'),
  syncSregs: offsetOf(S.kvm_run, 's.regs.sregs'),
} as const;

/** Kicks a vCPU out of KVM_RUN from any thread: set immediate_exit, then signal its thread. */
export class VcpuKick {
  private readonly run: Uint8Array;
  constructor(h: VcpuHandle) {
    this.run = viewOf(h.runAddr, h.runSize);
  }
  /** Makes the next (or current, once signalled) KVM_RUN return EINTR. */
  requestExit(): void {
    this.run[RUN.immediateExit] = 1;
  }
}

export class KvmVcpu {
  readonly index: number;
  readonly fd: number;
  /** General registers in kvm_regs order, *in* kvm_run: valid after run(); write, then markGprDirty(). */
  readonly gpr: BigUint64Array;
  /** The kvm_run page. */
  readonly runBytes: Uint8Array;
  private readonly run: DataView;
  private readonly sregsBuf = new Uint8Array(S.kvm_sregs.size);
  private readonly regsBuf = new BigUint64Array(S.kvm_regs.size / 8);

  constructor(h: VcpuHandle) {
    this.index = h.index;
    this.fd = h.fd;
    this.runBytes = viewOf(h.runAddr, h.runSize);
    this.run = new DataView(this.runBytes.buffer, this.runBytes.byteOffset, this.runBytes.byteLength);
    this.gpr = new BigUint64Array(this.runBytes.buffer, this.runBytes.byteOffset + RUN.syncRegs, 18);
    // Ask KVM to copy registers into kvm_run on every exit (KVM_CAP_SYNC_REGS):
    // cheaper than KVM_GET_REGS/SREGS ioctls on the hypercall path.
    this.run.setBigUint64(RUN.validRegs, BigInt(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS), true);
  }

  /** KVM_RUN: the exit reason, or -errno (EINTR after a kick, EAGAIN). */
  runOnce(): number {
    const r = ioctlRaw(this.fd, KVM.RUN, 0);
    return r < 0 ? r : this.run.getUint32(RUN.exitReason, true);
  }

  /** The next KVM_RUN completes pending I/O and returns EINTR at once (KVM's documented way to settle state). */
  requestImmediateExit(): void {
    this.run.setUint8(RUN.immediateExit, 1);
  }

  clearImmediateExit(): void {
    this.run.setUint8(RUN.immediateExit, 0);
  }

  markGprDirty(): void {
    this.run.setBigUint64(RUN.dirtyRegs, this.run.getBigUint64(RUN.dirtyRegs, true) | BigInt(KVM_SYNC_X86_REGS), true);
  }

  // --- exit details (valid until the next runOnce) ---
  get ioIsOut(): boolean {
    return this.run.getUint8(RUN.ioDirection) === 1;
  }
  get ioSize(): number {
    return this.run.getUint8(RUN.ioSize);
  }
  get ioPort(): number {
    return this.run.getUint16(RUN.ioPort, true);
  }
  get ioCount(): number {
    return this.run.getUint32(RUN.ioCount, true);
  }
  /** Offset in runBytes of the I/O data (OUT: what the guest wrote; IN: where to put the answer). */
  get ioDataOffset(): number {
    return Number(this.run.getBigUint64(RUN.ioDataOffset, true));
  }
  get msrIndex(): number {
    return this.run.getUint32(RUN.msrIndex, true);
  }
  get msrData(): bigint {
    return this.run.getBigUint64(RUN.msrData, true);
  }
  get mmioAddr(): bigint {
    return this.run.getBigUint64(RUN.mmioAddr, true);
  }
  get internalSuberror(): number {
    return this.run.getUint32(RUN.internalSuberror, true);
  }
  get systemEventType(): number {
    return this.run.getUint32(RUN.systemEventType, true);
  }

  /** Finish an MSR exit: `fault` makes the guest take #GP; `value` is what RDMSR reads. */
  completeMsr(fault: boolean, value = 0n): void {
    this.run.setUint8(RUN.msrError, fault ? 1 : 0);
    this.run.setBigUint64(RUN.msrData, value, true);
  }

  // --- sync-regs reads for the hypercall path (no allocation) ---
  get syncCsSelector(): number {
    return this.run.getUint16(RUN.syncSregs + SREGS_OFF.csSelector, true);
  }
  get syncCsLong(): boolean {
    return this.run.getUint8(RUN.syncSregs + SREGS_OFF.csL) !== 0;
  }
  get syncEfer(): bigint {
    return this.run.getBigUint64(RUN.syncSregs + SREGS_OFF.efer, true);
  }
  get syncCr0(): bigint {
    return this.run.getBigUint64(RUN.syncSregs + SREGS_OFF.cr0, true);
  }
  get syncCr3(): bigint {
    return this.run.getBigUint64(RUN.syncSregs + SREGS_OFF.cr3, true);
  }
  get syncCr4(): bigint {
    return this.run.getBigUint64(RUN.syncSregs + SREGS_OFF.cr4, true);
  }

  // --- full register access through ioctls (boot, save, restore) ---
  getRegs(): bigint[] {
    ioctlBuf(this.fd, KVM.GET_REGS, new Uint8Array(this.regsBuf.buffer), 'KVM_GET_REGS');
    return Array.from(this.regsBuf);
  }

  setRegs(values: ArrayLike<bigint>): void {
    for (let i = 0; i < this.regsBuf.length; i++) this.regsBuf[i] = values[i] ?? 0n;
    ioctlBuf(this.fd, KVM.SET_REGS, new Uint8Array(this.regsBuf.buffer), 'KVM_SET_REGS');
  }

  getSregs(): SpecialRegs {
    ioctlBuf(this.fd, KVM.GET_SREGS, this.sregsBuf, 'KVM_GET_SREGS');
    return readSregs(new DataView(this.sregsBuf.buffer), 0);
  }

  setSregs(s: SpecialRegs): void {
    writeSregs(new DataView(this.sregsBuf.buffer), 0, s);
    ioctlBuf(this.fd, KVM.SET_SREGS, this.sregsBuf, 'KVM_SET_SREGS');
  }

  /** Raw struct ioctl with a caller-sized buffer (state get/put of fixed-size structs). */
  ioctl(request: number, buf: Uint8Array, what: string): number {
    return ioctlBuf(this.fd, request, buf, what);
  }
}
