// Which guest pages changed since the last look: KVM's dirty log for what the
// vCPUs wrote (KVM_GET_DIRTY_LOG hands back the bitmap and re-arms write
// protection), OR'd with the pages the emulator wrote for the guest
// (hypercall copy-outs, XenShared.dirty).  Pages the emulator owns and writes
// behind KVM's back all the time (shared_info, vcpu_info, time and runstate
// areas, the hypercall page) are not tracked page by page: the final round,
// with the guest paused, always resends them (`markEmulatorPages`).
import { ioctlBuf, MAP_ANONYMOUS, MAP_PRIVATE, mmap, munmap, PROT_READ, PROT_WRITE, viewOf } from '../../kvm/libc.js';
import { KVM } from '../../kvm/ioctls.js';
import { kvm_dirty_log } from '../../kvm/structs.js';
import { INVALID_GPA } from '../../xen/domain.js';
import { VcpuField } from '../../xen/shared.js';
import type { XenMachine } from '../../xen/machine.js';
import { PAGE_SIZE } from '../format.js';

export class DirtyLog {
  readonly pages: number;
  /** KVM's bitmap, in memory KVM writes through a pointer (outside the JS heap). */
  private readonly kvmAddr: bigint;
  private readonly kvmBytes: number;
  private readonly kvmWords: Uint32Array;
  private readonly request = new Uint8Array(kvm_dirty_log.size);
  private enabled = false;
  private freed = false;

  constructor(private readonly machine: XenMachine) {
    this.pages = machine.ram.size / PAGE_SIZE;
    this.kvmBytes = Math.ceil(this.pages / 64) * 8;
    this.kvmAddr = mmap(this.kvmBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    const view = viewOf(this.kvmAddr, this.kvmBytes);
    this.kvmWords = new Uint32Array(view.buffer, view.byteOffset, this.kvmBytes / 4);
    const v = new DataView(this.request.buffer);
    v.setUint32(0, 0, true); // slot 0: all of guest RAM
    v.setBigUint64(8, this.kvmAddr, true);
  }

  /** A fresh, empty bitmap of the same layout (bit i&7 of byte i>>3 for page i). */
  newBitmap(): Uint8Array {
    return new Uint8Array(this.kvmBytes);
  }

  start(): void {
    this.machine.setDirtyLogging(true);
    this.enabled = true;
  }

  stop(): void {
    if (!this.enabled) return;
    this.enabled = false;
    try {
      this.machine.setDirtyLogging(false);
    } catch {
      /* the machine is being destroyed */
    }
  }

  /** ORs every page written since the last call into `into` and re-arms tracking; returns how many bits `into` now has set. */
  collect(into: Uint8Array): number {
    ioctlBuf(this.machine.vm.fd, KVM.GET_DIRTY_LOG, this.request, 'KVM_GET_DIRTY_LOG');
    const out = new Uint32Array(into.buffer, into.byteOffset, this.kvmBytes / 4);
    const emu = this.machine.xen.dirty;
    const kvm = this.kvmWords;
    let n = 0;
    for (let i = 0; i < out.length; i++) {
      // Read-and-clear: a write noted after this exchange lands in the next round.
      const e = i < emu.length && emu[i] !== 0 ? Atomics.exchange(emu, i, 0) : 0;
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
    const mark = (gpa: bigint, len: number): void => {
      if (gpa === INVALID_GPA) return;
      const first = Number(gpa) / PAGE_SIZE;
      const last = (Number(gpa) + len - 1) / PAGE_SIZE;
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

  /** Stops logging and frees the bitmap.  Idempotent. */
  close(): void {
    this.stop();
    if (this.freed) return;
    this.freed = true;
    munmap(this.kvmAddr, this.kvmBytes);
  }
}

export function popcount(w: number): number {
  w -= (w >>> 1) & 0x55555555;
  w = (w & 0x33333333) + ((w >>> 2) & 0x33333333);
  return (((w + (w >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

export function countBits(bitmap: Uint8Array): number {
  const words = new Uint32Array(bitmap.buffer, bitmap.byteOffset, bitmap.length >> 2);
  let n = 0;
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) n += popcount(words[i]!);
  return n;
}
