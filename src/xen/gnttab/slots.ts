// Where a grant frame the guest mapped becomes visible to the guest's CPUs:
// one KVM memory slot per mapped frame, pointing at the frame's host page.
// Slots 0 and 1 are RAM and 2 the special pages (machine/machine.ts); the
// frames take GRANT_SLOT_BASE and up.  Changing a slot is a VM ioctl that any
// thread may issue while other vCPUs run (kvm.ts setMemorySlot), so a vCPU
// thread serving XENMEM_add_to_physmap does it in place.
import { setMemorySlot } from '../../kvm/kvm.js';
import { NR_SPECIAL_PAGES } from '../memory/layout.js';

export const GRANT_SLOT_BASE = 3;

/** What moves a grant frame in the guest's physical address space. */
export interface FrameSlots {
  /** Makes frame `frame` appear at guest frame `gpfn`; false if the hypervisor refused. */
  map(frame: number, gpfn: number): boolean;
  /** Removes frame `frame` from wherever it appears. */
  unmap(frame: number): void;
}

/** For domains without a VM (tests on plain memory): the offset table alone is the mapping. */
export const NO_FRAME_SLOTS: FrameSlots = { map: () => true, unmap: () => {} };

/** KVM slots on VM `vmFd` for frames whose pages start at host address `xenPagesAddr` (the "Xen pages"). */
export function kvmFrameSlots(vmFd: number, xenPagesAddr: bigint): FrameSlots {
  const host = (frame: number): bigint => xenPagesAddr + BigInt((NR_SPECIAL_PAGES + frame) * 4096);
  return {
    map(frame, gpfn) {
      try {
        setMemorySlot(vmFd, GRANT_SLOT_BASE + frame, gpfn * 4096, 4096, host(frame));
        return true;
      } catch {
        // KVM refuses a frame over one of its own pages (APIC access, TSS) or
        // beyond the addresses it can map: the guest gets an error, not a crash.
        return false;
      }
    },
    unmap(frame) {
      setMemorySlot(vmFd, GRANT_SLOT_BASE + frame, 0, 0, host(frame));
    },
  };
}
