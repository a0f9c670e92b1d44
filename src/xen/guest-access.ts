// Reads and writes guest-virtual memory on behalf of a hypercall, the way the
// hypervisor's copy_from/to_guest does: translate page by page through the
// guest's own tables and fail (→ -EFAULT) on any hole, never throw.
import type { GuestPhys } from './memory/guest-phys.js';
import { NO_TRANSLATION, translate, type PagingRegs } from './page-walk.js';
import type { XenShared } from './tables.js';

/** The domain whose dirty-page bitmap a RAM view's writes go to (set by XenContext, read by GuestAccess). */
const writeTrackers = new WeakMap<GuestPhys, XenShared>();
export function trackGuestWrites(ram: GuestPhys, shared: XenShared): void {
  writeTrackers.set(ram, shared);
}

export class GuestAccess {
  readonly ram: GuestPhys;
  private readonly paging: PagingRegs = { cr0: 0n, cr3: 0n, cr4: 0n, efer: 0n };
  /** Live migration: hypercall copy-outs mark their pages dirty here. */
  private readonly tracker: XenShared | null;

  constructor(ram: GuestPhys) {
    this.ram = ram;
    this.tracker = writeTrackers.get(ram) ?? null;
  }

  /** Paging registers of the vCPU whose hypercall is being served (kept in place: no allocation per call). */
  setPaging(cr0: bigint, cr3: bigint, cr4: bigint, efer: bigint): void {
    const p = this.paging;
    p.cr0 = cr0;
    p.cr3 = cr3;
    p.cr4 = cr4;
    p.efer = efer;
  }

  /** Guest-physical address of the byte at `va`, if it is mapped and RAM; else -1. */
  private gpaOfPage(va: bigint, write: boolean): number {
    const gpa = translate(this.ram, this.paging, va, { write });
    if (gpa === NO_TRANSLATION || this.ram.offsetOf(gpa) < 0) return -1;
    return Number(gpa);
  }

  /** GPA of `va` if the `len` bytes from it are mapped, RAM and physically contiguous, else -1. */
  gpaOf(va: bigint, len: number): number {
    const first = this.gpaOfPage(va, true);
    if (first < 0) return -1;
    const last = this.gpaOfPage(BigInt.asUintN(64, va + BigInt(len - 1)), true);
    return last === first + len - 1 && this.ram.offsetOf(first, len) >= 0 ? first : -1;
  }

  /** Copies `len` bytes from guest-virtual `va`; null if any byte is unmapped. */
  read(va: bigint, len: number): Uint8Array | null {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const cur = BigInt.asUintN(64, va + BigInt(done));
      const gpa = this.gpaOfPage(cur, false);
      if (gpa < 0) return null;
      const chunk = Math.min(len - done, 4096 - (gpa % 4096));
      out.set(this.ram.bytes(this.ram.offsetOf(gpa, chunk), chunk), done);
      done += chunk;
    }
    return out;
  }

  /** Copies `bytes` to guest-virtual `va`; false (nothing partial is undone, as in Xen) on a hole. */
  write(va: bigint, bytes: Uint8Array): boolean {
    let done = 0;
    while (done < bytes.length) {
      const cur = BigInt.asUintN(64, va + BigInt(done));
      const gpa = this.gpaOfPage(cur, true);
      if (gpa < 0) return false;
      const chunk = Math.min(bytes.length - done, 4096 - (gpa % 4096));
      const at = this.ram.offsetOf(gpa, chunk);
      this.ram.bytes(at, chunk).set(bytes.subarray(done, done + chunk));
      this.tracker?.noteWrite(at);
      done += chunk;
    }
    return true;
  }
}
