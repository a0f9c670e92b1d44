// The vCPU's CPUID table as KVM_GET_CPUID2 reports it: what the guest sees.
// Restored first, because KVM derives which MSRs, XSAVE components and
// LAPIC features are valid for the vCPU from it.
import { struct, u32, varArray } from '../../vmstate/index.js';
import { kvm_cpuid2, kvm_cpuid_entry2 } from '../structs.js';
import { bindStruct } from './bind.js';

/** KVM's own limit (KVM_MAX_CPUID_ENTRIES). */
export const MAX_CPUID_ENTRIES = 256;
export const CPUID_BUF_SIZE = kvm_cpuid2.size + MAX_CPUID_ENTRIES * kvm_cpuid_entry2.size;

export const cpuidEntryFields = {
  function: u32(),
  index: u32(),
  flags: u32(),
  eax: u32(),
  ebx: u32(),
  ecx: u32(),
  edx: u32(),
};
export const cpuidFields = {
  cpuid_count: u32(),
  cpuid: varArray(struct(cpuidEntryFields), { lengthField: 'cpuid_count', max: MAX_CPUID_ENTRIES }),
};

type CpuidEntry = {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
};
const entry = bindStruct(cpuidEntryFields, kvm_cpuid_entry2);
const at = (i: number) => kvm_cpuid2.size + i * kvm_cpuid_entry2.size;

export function readCpuid(v: DataView): { cpuid_count: number; cpuid: CpuidEntry[] } {
  const n = Math.min(v.getUint32(0, true), MAX_CPUID_ENTRIES);
  return { cpuid_count: n, cpuid: Array.from({ length: n }, (_, i) => entry.read(v, at(i))) };
}

/** Writes a kvm_cpuid2 of `entries`; returns its size in bytes. */
export function writeCpuid(v: DataView, entries: readonly CpuidEntry[]): number {
  const size = at(entries.length);
  new Uint8Array(v.buffer, v.byteOffset, size).fill(0);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => entry.write(v, at(i), e));
  return size;
}
