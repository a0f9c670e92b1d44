// Guest-virtual → guest-physical translation by walking the guest's own page
// tables in RAM, for hypercall pointer arguments (guest-access.ts: a bad
// pointer must be -EFAULT, never a host exception).  Supports the modes
// x86-64 guests use: paging off, 4-level long mode and 3-level PAE, with
// 4 KiB / 2 MiB / 1 GiB leaves.
import type { GuestPhys } from './memory/guest-phys.js';

const PTE_P = 1n;
const PTE_RW = 2n;
const PTE_US = 4n;
const PTE_PS = 0x80n;
const ADDR_MASK = 0x000ffffffffff000n;
const CR0_PG = 1n << 31n;
const CR4_PAE = 1n << 5n;
const EFER_LMA = 1n << 10n;

export interface PagingRegs {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

/** What the access needs; a missing right is a fault, as the MMU would raise. */
export interface Access {
  write?: boolean;
  user?: boolean;
}

export const NO_TRANSLATION = -1n;

/** A table entry at guest-physical `gpa`; outside RAM reads as not present. */
function readEntry(ram: GuestPhys, gpa: bigint): bigint {
  const at = ram.offsetOf(gpa, 8);
  return at < 0 ? 0n : ram.getU64(at);
}

/** Returns the guest-physical address of `va`, or NO_TRANSLATION. */
export function translate(ram: GuestPhys, regs: PagingRegs, va: bigint, access: Access = {}): bigint {
  if ((regs.cr0 & CR0_PG) === 0n) return va & 0xffffffffn;
  if ((regs.cr4 & CR4_PAE) === 0n) return NO_TRANSLATION; // 2-level 32-bit paging: not used by our guests
  const long = (regs.efer & EFER_LMA) !== 0n;
  let levels: number;
  let table: bigint;
  if (long) {
    // Canonical check: bits 63..47 must all equal bit 47.
    const top = va >> 47n;
    if (top !== 0n && top !== 0x1ffffn) return NO_TRANSLATION;
    levels = 4;
    table = regs.cr3 & ADDR_MASK;
  } else {
    const pdpte = readEntry(ram, (regs.cr3 & 0xffffffe0n) + ((va >> 30n) & 3n) * 8n);
    if ((pdpte & PTE_P) === 0n) return NO_TRANSLATION;
    levels = 2;
    table = pdpte & ADDR_MASK;
  }
  for (let level = levels; level >= 1; level--) {
    const shift = 12n + 9n * BigInt(level - 1);
    const entry = readEntry(ram, table + ((va >> shift) & 0x1ffn) * 8n);
    if ((entry & PTE_P) === 0n) return NO_TRANSLATION;
    if (access.write && (entry & PTE_RW) === 0n) return NO_TRANSLATION;
    if (access.user && (entry & PTE_US) === 0n) return NO_TRANSLATION;
    if (level === 1 || ((entry & PTE_PS) !== 0n && level <= 3)) {
      const pageMask = (1n << shift) - 1n;
      return (entry & ADDR_MASK & ~pageMask) | (va & pageMask);
    }
    table = entry & ADDR_MASK;
  }
  return NO_TRANSLATION;
}
