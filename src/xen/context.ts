// One thread's handle on the emulated domain: the shared tables, views over
// guest RAM, an MSI sender, and event delivery exactly as Xen's 2-level ABI
// does it (docs/xen-abi.md, "Event channels").  Pending, mask and selector
// bits live in guest memory and are changed with atomic read-modify-writes,
// because the guest clears them concurrently (Atomics on the mmap'd RAM view
// are real locked instructions; docs/architecture.md, "Shared state").
import { MsiSender } from '../kvm/msi.js';
import { viewsOf } from '../kvm/guest-ram.js';
import { madvise, MADV_DONTNEED, viewOf } from '../kvm/libc.js';
import { GuestPhys, XEN_PAGES_BYTES } from './memory/guest-phys.js';
import { MemoryLayout } from './memory/layout.js';
import { HvmParam, SharedInfo, VCPU_INFO_SIZE, VcpuInfo } from './abi.js';
import { INVALID_GPA } from './domain.js';
import { trackGuestWrites } from './guest-access.js';
import { VcpuField, XenShared, type XenSharedBuffers } from './tables.js';
import { Ctl } from './vcpu/control-block.js';
import { kvmFrameSlots, NO_FRAME_SLOTS, type FrameSlots } from './gnttab/slots.js';

export interface XenThreadResources {
  ramAddr: bigint;
  ramSize: number;
  /** The emulator's pages (special pages, grant frames; XEN_PAGES_BYTES), or 0n for a private buffer. */
  xenPagesAddr: bigint;
  vmFd: number;
  xen: XenSharedBuffers;
  /** Every vCPU's control block (Ctl.SIZE Int32 words each). */
  control: SharedArrayBuffer;
}

/** Where upcall interrupts go: an MSI to the LAPIC with ID `apicId` (MsiSender on the VM fd). */
export interface UpcallSender {
  send(apicId: number, vector: number): void;
}

export class XenContext {
  readonly shared: XenShared;
  /** Guest RAM by RAM offset, and the layout that maps guest-physical addresses to it. */
  readonly phys: GuestPhys;
  readonly ctl: Int32Array;
  /** Moves grant frames in guest-physical space (KVM slots; nothing without a VM). */
  readonly frameSlots: FrameSlots;
  private readonly msi: UpcallSender;
  /** Host address of guest RAM; 0n when the RAM views are the caller's plain memory. */
  private readonly ramAddr: bigint;

  /**
   * Guest RAM and the upcall path default to the VM's (its mapping at
   * `ramAddr`, MSIs on `vmFd`); the hypercall tests pass their own, to run
   * the handlers on plain memory without /dev/kvm.
   */
  constructor(
    r: XenThreadResources,
    ram: readonly Uint8Array[] = viewsOf(r.ramAddr, r.ramSize),
    msi: UpcallSender = new MsiSender(r.vmFd),
  ) {
    this.shared = XenShared.attach(r.xen);
    const xenPages = r.xenPagesAddr === 0n ? undefined : viewOf(r.xenPagesAddr, XEN_PAGES_BYTES);
    this.phys = new GuestPhys(new MemoryLayout(r.ramSize, this.shared.grants), ram, xenPages);
    this.frameSlots = r.xenPagesAddr === 0n ? NO_FRAME_SLOTS : kvmFrameSlots(r.vmFd, r.xenPagesAddr);
    this.ctl = new Int32Array(r.control);
    this.msi = msi;
    this.ramAddr = r.ramAddr;
    trackGuestWrites(this.phys, this.shared);
  }

  get nrVcpus(): number {
    return this.shared.nrVcpus;
  }

  /**
   * Gives the host memory behind RAM [offset, offset+len) back (whole pages):
   * the pages read as zero afterwards and cost nothing until written again.
   * Live migration must send them again, so they are marked dirty.
   */
  releaseRam(offset: number, len: number): void {
    if (this.ramAddr === 0n || !madvise(this.ramAddr + BigInt(offset), len, MADV_DONTNEED)) {
      for (let o = offset; o < offset + len; o += 4096) this.phys.fill(0, o, 4096);
    }
    for (let o = offset; o < offset + len; o += 4096) this.shared.noteWrite(o);
  }

  /** Ports the guest's shared_info layout can name (2-level: 64 words of 64 or 32 bits). */
  get nrPorts(): number {
    return this.shared.domain.longMode ? 4096 : 1024;
  }

  // Bit arrays in guest memory (`at` is a RAM offset): 64-bit words for a
  // 64-bit guest, 32-bit words for a compat one, as Xen's 2-level ABI has them.
  private testAndSet(at: number, bit: number): boolean {
    if (this.shared.domain.longMode) {
      const m = 1n << BigInt(bit & 63);
      return (this.phys.atomicOr64(at + (bit >> 6) * 8, m) & m) !== 0n;
    }
    const m = (1 << (bit & 31)) >>> 0;
    return (this.phys.atomicOr32(at + (bit >> 5) * 4, m) & m) !== 0;
  }

  private testAndClear(at: number, bit: number): boolean {
    if (this.shared.domain.longMode) {
      const m = 1n << BigInt(bit & 63);
      return (this.phys.atomicAnd64(at + (bit >> 6) * 8, ~m & 0xffffffffffffffffn) & m) !== 0n;
    }
    const m = (1 << (bit & 31)) >>> 0;
    return (this.phys.atomicAnd32(at + (bit >> 5) * 4, ~m) & m) !== 0;
  }

  testBit(at: number, bit: number): boolean {
    if (this.shared.domain.longMode)
      return ((this.phys.atomicLoad64(at + (bit >> 6) * 8) >> BigInt(bit & 63)) & 1n) !== 0n;
    return ((this.phys.atomicLoad32(at + (bit >> 5) * 4) >>> (bit & 31)) & 1) !== 0;
  }

  /** RAM offset of shared_info, or -1 while the guest has not placed it (or placed it outside RAM). */
  private sharedInfo(): number {
    const gpa = this.shared.domain.sharedInfoGpa;
    return gpa === INVALID_GPA ? -1 : this.phys.offsetOf(gpa, 4096);
  }

  /** RAM offset of vCPU `v`'s vcpu_info, or -1. */
  vcpuInfo(v: number): number {
    const vi = this.shared.vcpuInfoGpa(v);
    return vi === INVALID_GPA ? -1 : this.phys.offsetOf(vi, VCPU_INFO_SIZE);
  }

  pendingBase(si: number): number {
    return si + (this.shared.domain.longMode ? SharedInfo.pending64 : SharedInfo.pending32);
  }

  maskBase(si: number): number {
    return si + (this.shared.domain.longMode ? SharedInfo.mask64 : SharedInfo.mask32);
  }

  isPending(port: number): boolean {
    const si = this.sharedInfo();
    return si >= 0 && this.testBit(this.pendingBase(si), port);
  }

  isMasked(port: number): boolean {
    const si = this.sharedInfo();
    return si >= 0 && this.testBit(this.maskBase(si), port);
  }

  /** Xen's evtchn_2l_set_pending. */
  setPending(port: number): void {
    const si = this.sharedInfo();
    if (si < 0) return;
    if (this.testAndSet(this.pendingBase(si), port)) return;
    if (!this.testBit(this.maskBase(si), port)) this.selectAndMark(port);
    this.wakePollers();
  }

  clearPending(port: number): void {
    const si = this.sharedInfo();
    if (si >= 0) this.testAndClear(this.pendingBase(si), port);
  }

  /** Xen's evtchn_2l_unmask. */
  unmask(port: number): void {
    const si = this.sharedInfo();
    if (si < 0) return;
    if (this.testAndClear(this.maskBase(si), port) && this.testBit(this.pendingBase(si), port))
      this.selectAndMark(port);
  }

  private selectAndMark(port: number): void {
    const v = this.shared.portVcpu(port);
    const vi = this.vcpuInfo(v);
    if (vi < 0) return;
    const sel = vi + (this.shared.domain.longMode ? VcpuInfo.pendingSel64 : VcpuInfo.pendingSel32);
    const wordBits = this.shared.domain.longMode ? 6 : 5;
    if (!this.testAndSet(sel, port >> wordBits)) this.markVcpu(v);
  }

  /** Xen's vcpu_mark_events_pending: set upcall_pending; on 0→1 raise the upcall. */
  markVcpu(v: number): void {
    const vi = this.vcpuInfo(v);
    if (vi < 0) return;
    if (this.phys.atomicExchange8(vi + VcpuInfo.upcallPending, 1) !== 0) return;
    this.raiseUpcall(v);
  }

  /** The upcall vector of `v`: its own (HVMOP_set_evtchn_upcall_vector), else CALLBACK_IRQ's vector type. */
  upcallVector(v: number): number {
    const own = Number(this.shared.vcpu(v, VcpuField.callbackVector));
    if (own !== 0) return own;
    const cb = this.shared.domain.hvmParams[HvmParam.CALLBACK_IRQ]!;
    return cb >> 56n === 2n ? Number(cb & 0xffn) : 0;
  }

  raiseUpcall(v: number): void {
    const vector = this.upcallVector(v);
    // An edge MSI to the vCPU's LAPIC (APIC ID = vCPU index): the in-kernel
    // LAPIC wakes a halted vCPU and interrupts a running one, no userspace needed.
    if (vector !== 0) this.msi.send(v, vector);
    this.wakeVcpu(v);
  }

  /** Wakes `v`'s thread if it waits in SCHEDOP_block/poll (or is parked). */
  wakeVcpu(v: number): void {
    Atomics.add(this.ctl, v * Ctl.SIZE + Ctl.WAKE, 1);
    Atomics.notify(this.ctl, v * Ctl.SIZE + Ctl.WAKE);
  }

  private wakePollers(): void {
    for (let v = 0; v < this.shared.nrVcpus; v++) if (this.shared.vcpu(v, VcpuField.polling) !== 0n) this.wakeVcpu(v);
  }

  upcallPending(v: number): boolean {
    const vi = this.vcpuInfo(v);
    return vi >= 0 && this.phys.atomicLoad8(vi + VcpuInfo.upcallPending) !== 0;
  }
}
