// Which guest pages changed since the last look: KVM's dirty log for what the
// vCPUs wrote, OR'd with the pages the emulator wrote for the guest
// (hypercall copy-outs, XenShared.dirty).  Pages the emulator owns and writes
// behind KVM's back all the time (shared_info, vcpu_info, time and runstate
// areas, the hypercall page) are not tracked page by page: the final round,
// with the guest paused, always resends them (`markEmulatorPages`).
//
// Where KVM offers KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (as here), reading the
// log and re-arming it are separate: KVM_GET_DIRTY_LOG only copies the
// bitmap, and `clear(first, count)` re-arms one range (KVM_CLEAR_DIRTY_LOG)
// just before the sender reads its pages.  Plain KVM_GET_DIRTY_LOG re-arms
// every page at the moment of the collect, so a page written between then
// and its copy went with the new data and then again in the next round: at
// high dirty rates a large share of all bytes sent (docs/benchmarks.md,
// "Log").  Logging starts
// with every page marked dirty (KVM_DIRTY_LOG_INITIALLY_SET), so switching
// it on does not write-protect all of RAM; round 0 re-arms each range as it
// reads it.  (The ioctls themselves are cheap either way.)
import { ioctlBuf, MAP_ANONYMOUS, MAP_PRIVATE, mmap, munmap, PROT_READ, PROT_WRITE, viewOf } from '../../kvm/libc.js';
import { offsetOf } from '../../kvm/layout.js';
import { Cap, KVM, KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from '../../kvm/ioctls.js';
import { kvm_clear_dirty_log, kvm_dirty_log } from '../../kvm/structs.js';
import { INVALID_GPA } from '../../xen/domain.js';
import { VcpuField } from '../../xen/tables.js';
import type { XenMachine } from '../../machine/machine.js';
import { PAGE_SIZE } from '../stream/format.js';
import type { RamWriteOptions } from '../ram/write.js';

export class DirtyLog {
  readonly pages: number;
  /** KVM's bitmap, in memory KVM writes through a pointer (outside the JS heap). */
  private readonly kvmAddr: bigint;
  private readonly kvmBytes: number;
  private readonly kvmWords: Uint32Array;
  /** One KVM_GET_DIRTY_LOG request per memory slot, each pointing at its part of the one bitmap. */
  private readonly requests: Uint8Array[];
  /** RAM page where each slot starts (the layout's regions, slot i = region i). */
  private readonly slotFirstPage: number[];
  private enabled = false;
  private freed = false;
  /** KVM_CLEAR_DIRTY_LOG is in use (see the top of this file); false: KVM_GET_DIRTY_LOG re-arms. */
  readonly manual: boolean;
  private readonly initiallySet: boolean;
  private readonly clearRequest = new Uint8Array(kvm_clear_dirty_log.size);
  private readonly clearView = new DataView(this.clearRequest.buffer);
  /** The bits to clear, in memory KVM reads through a pointer: one range's worth. */
  private readonly clearAddr: bigint;
  private readonly clearBytes: Uint8Array;

  constructor(private readonly machine: XenMachine) {
    this.pages = machine.ram.size / PAGE_SIZE;
    this.kvmBytes = Math.ceil(this.pages / 64) * 8;
    this.kvmAddr = mmap(this.kvmBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    const view = viewOf(this.kvmAddr, this.kvmBytes);
    this.kvmWords = new Uint32Array(view.buffer, view.byteOffset, this.kvmBytes / 4);
    // A slot's bitmap starts at its first page's bit, which must begin a
    // 64-bit word: the low region ends on a 64-page boundary (layout.ts).
    this.slotFirstPage = machine.layout.regions.map((r) => r.offset / PAGE_SIZE);
    this.requests = this.slotFirstPage.map((first, slot) => {
      const req = new Uint8Array(kvm_dirty_log.size);
      const v = new DataView(req.buffer);
      v.setUint32(offsetOf(kvm_dirty_log, 'slot'), slot, true);
      v.setBigUint64(offsetOf(kvm_dirty_log, 'dirty_bitmap'), this.kvmAddr + BigInt(first / 8), true);
      return req;
    });
    const caps = machine.kvm.check(Cap.MANUAL_DIRTY_LOG_PROTECT2);
    this.manual = (caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0;
    this.initiallySet = this.manual && (caps & KVM_DIRTY_LOG_INITIALLY_SET) !== 0;
    this.clearAddr = mmap(CLEAR_RANGE_PAGES / 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    this.clearBytes = viewOf(this.clearAddr, CLEAR_RANGE_PAGES / 8);
    this.clearView.setBigUint64(offsetOf(kvm_clear_dirty_log, 'dirty_bitmap'), this.clearAddr, true);
  }

  /** A fresh, empty bitmap of the same layout (bit i&7 of byte i>>3 for page i). */
  newBitmap(): Uint8Array {
    return new Uint8Array(this.kvmBytes);
  }

  start(): void {
    // Before logging starts: the option decides how the slot's log begins.
    if (this.manual)
      this.machine.vm.enableCap(Cap.MANUAL_DIRTY_LOG_PROTECT2, [
        KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | (this.initiallySet ? KVM_DIRTY_LOG_INITIALLY_SET : 0),
      ]);
    this.machine.setDirtyLogging(true);
    this.enabled = true;
  }

  stop(): void {
    if (!this.enabled) return;
    this.enabled = false;
    try {
      this.machine.setDirtyLogging(false);
      // Back to KVM's default for whoever logs next.
      if (this.manual) this.machine.vm.enableCap(Cap.MANUAL_DIRTY_LOG_PROTECT2, [0]);
    } catch {
      /* the machine is being destroyed */
    }
  }

  /**
   * writeRam options that re-arm each range just before the scan reads it
   * (manual mode): the pages set in `bits`, the sender's bitmap; or, for a
   * full pass (no bits), every page, needed only when the log started with
   * every page marked (round 0 sends every page anyway).  Empty otherwise.
   */
  rearmBeforeRead(bits?: Uint8Array): Pick<RamWriteOptions, 'beforeRange'> {
    if (!(bits ? this.manual : this.initiallySet)) return {};
    return { beforeRange: { rangePages: CLEAR_RANGE_PAGES, call: (first, n) => this.clear(first, n, bits) } };
  }

  /**
   * Manual mode: re-arms tracking of the pages set in `bits` (the sender's
   * bitmap, all pages when absent) within [first, first + count): KVM
   * clears them from its log and write-protects them, so a write after this
   * call shows up in the next collect().  Call it before reading those
   * pages.  `first` must be a multiple of 64 and count at most
   * CLEAR_RANGE_PAGES; a no-op unless `manual`.
   */
  clear(first: number, count: number, bits?: Uint8Array): void {
    if (!this.manual) return;
    const n = Math.min(count, this.pages - first);
    if (n <= 0) return;
    const bytes = Math.ceil(n / 8);
    if (bits) this.clearBytes.set(bits.subarray(first >> 3, (first >> 3) + bytes));
    else this.clearBytes.fill(0xff, 0, bytes);
    // KVM wants whole 64-page words unless the range ends the slot; bits past `n` are zero or beyond the slot.
    const num = first + n === this.pages ? n : Math.ceil(n / 64) * 64;
    if (num > n) this.clearBytes.fill(0, bytes, num / 8);
    // Ranges never span two slots: the low region ends on a CLEAR_RANGE_PAGES boundary.
    const slot = this.slotOf(first);
    this.clearView.setUint32(offsetOf(kvm_clear_dirty_log, 'slot'), slot, true);
    this.clearView.setUint32(offsetOf(kvm_clear_dirty_log, 'num_pages'), num, true);
    this.clearView.setBigUint64(
      offsetOf(kvm_clear_dirty_log, 'first_page'),
      BigInt(first - this.slotFirstPage[slot]!),
      true,
    );
    ioctlBuf(this.machine.vm.fd, KVM.CLEAR_DIRTY_LOG, this.clearRequest, 'KVM_CLEAR_DIRTY_LOG');
  }

  /**
   * ORs every page written since the last call (manual mode: since its range
   * was last cleared) into `into`; without manual mode this also re-arms
   * tracking.  Returns how many bits `into` now has set.
   */
  collect(into: Uint8Array): number {
    this.getLogs();
    return this.merge(into, true);
  }

  private getLogs(): void {
    for (const req of this.requests) ioctlBuf(this.machine.vm.fd, KVM.GET_DIRTY_LOG, req, 'KVM_GET_DIRTY_LOG');
  }

  private slotOf(page: number): number {
    let slot = 0;
    while (slot + 1 < this.slotFirstPage.length && page >= this.slotFirstPage[slot + 1]!) slot++;
    return slot;
  }

  /**
   * collect()'s work without its effects, so that V8 has compiled it before
   * the pause (rehearse.ts): where KVM_GET_DIRTY_LOG would re-arm tracking
   * it is left out, and the emulator's bits stay where they are.  Run cold,
   * the merge took a measurable share of the pause (docs/benchmarks.md).
   */
  rehearseCollect(into: Uint8Array): void {
    if (this.manual) this.getLogs();
    this.merge(into, false);
  }

  private merge(into: Uint8Array, take: boolean): number {
    const out = new Uint32Array(into.buffer, into.byteOffset, this.kvmBytes / 4);
    const emu = this.machine.xen.dirty;
    const kvm = this.kvmWords;
    let n = 0;
    for (let i = 0; i < out.length; i++) {
      // Read-and-clear: a write noted after this exchange lands in the next round.
      const e = i < emu.length && emu[i] !== 0 ? (take ? Atomics.exchange(emu, i, 0) : Atomics.load(emu, i)) : 0;
      const w = (out[i]! | kvm[i]! | e) >>> 0;
      out[i] = w;
      if (w !== 0) n += popcount(w);
    }
    return n;
  }

  /** Sets the pages the emulator owns and writes without tracking; returns how many were not yet set. */
  markEmulatorPages(into: Uint8Array): number {
    const x = this.machine.xen;
    let added = 0;
    const layout = this.machine.layout;
    const mark = (gpa: bigint, len: number): void => {
      if (gpa === INVALID_GPA) return;
      const at = layout.offsetOf(gpa, len);
      if (at < 0) return;
      const first = at / PAGE_SIZE;
      const last = (at + len - 1) / PAGE_SIZE;
      for (let p = Math.floor(first); p <= Math.floor(last) && p < this.pages; p++) {
        const bit = 1 << (p & 7);
        if ((into[p >> 3]! & bit) === 0) added++;
        into[p >> 3]! |= bit;
      }
    };
    mark(x.domain.sharedInfoGpa, PAGE_SIZE);
    mark(x.domain.hypercallPageGpa, PAGE_SIZE);
    for (let v = 0; v < x.nrVcpus; v++) {
      mark(x.vcpu(v, VcpuField.vcpuInfoGpa), 64);
      mark(x.vcpu(v, VcpuField.vcpuInfoDefaultGpa), 64);
      mark(x.vcpu(v, VcpuField.timeInfoGpa), 32);
      mark(x.vcpu(v, VcpuField.runstateGpa), 48);
    }
    return added;
  }

  /** Stops logging and frees the bitmaps.  Idempotent. */
  close(): void {
    this.stop();
    if (this.freed) return;
    this.freed = true;
    munmap(this.kvmAddr, this.kvmBytes);
    munmap(this.clearAddr, CLEAR_RANGE_PAGES / 8);
  }
}

/**
 * Pages re-armed by one KVM_CLEAR_DIRTY_LOG: 4 MiB, a multiple of KVM's
 * 64-page granule.  Smaller ranges leave less time between re-arming a page
 * and copying it (the window in which a write makes it go twice) at one
 * ioctl each; 256 per GiB.
 */
export const CLEAR_RANGE_PAGES = 1024;

export function popcount(w: number): number {
  w -= (w >>> 1) & 0x55555555;
  w = (w & 0x33333333) + ((w >>> 2) & 0x33333333);
  return (((w + (w >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
