// Model-specific registers: the ones KVM can save (KVM_GET_MSR_INDEX_LIST)
// and that KVM_GET_MSRS really returns for this vCPU's CPUID, as
// {index, data} pairs.  The list is chosen by the source; the destination
// writes exactly those and fails loudly on one it refuses.
import { struct, u32, u64, varArray } from '../../vmstate/index.js';
import { KvmError } from '../../errors.js';
import { ioctlBufRaw, strerror } from '../libc.js';
import { KVM } from '../ioctls.js';
import { kvm_msr_entry, kvm_msrs } from '../structs.js';
import { offsetOf } from '../layout.js';

/** More than KVM saves on any host we know (41 here, ~60 with every feature). */
export const MAX_SAVED_MSRS = 256;

export const MSR_IA32_TSC = 0x10;
export const MSR_IA32_TSC_DEADLINE = 0x6e0;

export const msrEntryFields = { index: u32(), data: u64() };
export const msrsFields = {
  msr_count: u32(),
  msrs: varArray(struct(msrEntryFields), { lengthField: 'msr_count', max: MAX_SAVED_MSRS }),
};

export type MsrEntry = { index: number; data: bigint };

export const MSR_BUF_SIZE = kvm_msrs.size + MAX_SAVED_MSRS * kvm_msr_entry.size;
const E_INDEX = offsetOf(kvm_msr_entry, 'index');
const E_DATA = offsetOf(kvm_msr_entry, 'data');
const entryAt = (i: number) => kvm_msrs.size + i * kvm_msr_entry.size;

/** Writes the kvm_msrs header and indices (data zero) for `indices` into `buf`. */
export function fillMsrIndices(v: DataView, indices: readonly number[]): void {
  new Uint8Array(v.buffer, v.byteOffset, entryAt(indices.length)).fill(0);
  v.setUint32(0, indices.length, true);
  indices.forEach((idx, i) => v.setUint32(entryAt(i) + E_INDEX, idx, true));
}

export function readMsrEntries(v: DataView, n: number): MsrEntry[] {
  const out = new Array<MsrEntry>(n);
  for (let i = 0; i < n; i++)
    out[i] = { index: v.getUint32(entryAt(i) + E_INDEX, true), data: v.getBigUint64(entryAt(i) + E_DATA, true) };
  return out;
}

/**
 * Restore order of MSR entries: IA32_TSC first and IA32_TSC_DEADLINE last.
 * KVM_SET_MSRS applies entries in order, and the deadline is an absolute TSC
 * value, so it must be written once the TSC is back (otherwise KVM compares
 * it with the fresh vCPU's TSC near 0 and the timer fires far too late).
 */
function restoreRank(index: number): number {
  return index === MSR_IA32_TSC ? 0 : index === MSR_IA32_TSC_DEADLINE ? 2 : 1;
}

/** Fills `v` (a kvm_msrs) with `entries` in restore order. */
export function fillMsrEntries(v: DataView, entries: readonly MsrEntry[]): void {
  const order = entries
    .map((_, i) => i)
    .sort((a, b) => restoreRank(entries[a]!.index) - restoreRank(entries[b]!.index) || a - b);
  new Uint8Array(v.buffer, v.byteOffset, entryAt(entries.length)).fill(0);
  v.setUint32(0, entries.length, true);
  order.forEach((from, i) => {
    v.setUint32(entryAt(i) + E_INDEX, entries[from]!.index, true);
    v.setBigUint64(entryAt(i) + E_DATA, entries[from]!.data, true);
  });
}

/** Index of entry `i` of the kvm_msrs in `v` (after fillMsrEntries, for error messages). */
export const msrIndexAt = (v: DataView, i: number): number => v.getUint32(entryAt(i) + E_INDEX, true);

/**
 * Which of `candidates` KVM_GET_MSRS returns on this vCPU.  KVM stops at the
 * first MSR it cannot read (one the vCPU's CPUID does not have) and returns
 * how many it read, so drop that one and ask again from there: at most one
 * ioctl per refused MSR.  `buf` must hold MSR_BUF_SIZE bytes.
 */
export function probeSaveableMsrs(vcpuFd: number, candidates: readonly number[], buf: Uint8Array): number[] {
  if (buf.length < MSR_BUF_SIZE) throw new RangeError(`MSR buffer of ${buf.length} bytes, need ${MSR_BUF_SIZE}`);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const ok: number[] = [];
  let rest = candidates.slice(0, MAX_SAVED_MSRS);
  while (rest.length > 0) {
    fillMsrIndices(v, rest);
    // Safe: buf holds the header and rest.length <= MAX_SAVED_MSRS entries, and the kernel writes only nmsrs entries.
    const r = ioctlBufRaw(vcpuFd, KVM.GET_MSRS, buf);
    if (r < 0) throw new KvmError(`KVM_GET_MSRS (probing ${rest.length} MSRs): ${strerror(-r)}`, -r);
    ok.push(...rest.slice(0, r));
    rest = rest.slice(r + 1);
  }
  return ok;
}
