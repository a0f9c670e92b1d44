// What a saved vCPU's KVM state must satisfy before KVM is handed it: the
// rules KVM would otherwise enforce with a bare errno, or not at all.
import { FormatError } from '../errors.js';
import type { CpuState } from '../kvm/state/index.js';
import type { MachineConfig } from './config.js';

/**
 * RFLAGS bits that are fixed on every x86 CPU: bit 1 reads as 1; bits 3, 5,
 * 15 and 22-63 are reserved zero.  A VM entry with them otherwise fails on
 * hardware; the development hosts' KVM lets it through and the guest dies.
 */
const RFLAGS_ONE = 0x2n;
const RFLAGS_ZERO = 0xffff_ffff_ffc0_8028n;

/** A TSC frequency a host could have: 1 MHz to 100 GHz. */
const TSC_KHZ_RANGE = [1_000, 100_000_000] as const;

export function checkCpu(v: number, st: CpuState, config: MachineConfig): void {
  const at = `cpu[${v}]`;
  if (v >= config.vcpus) throw new FormatError(`${at}: the header describes ${config.vcpus} vCPU(s)`);
  if (st.tsc_khz < TSC_KHZ_RANGE[0] || st.tsc_khz > TSC_KHZ_RANGE[1])
    throw new FormatError(`${at}.tsc_khz: ${st.tsc_khz} kHz is not a TSC frequency`);
  const fl = st.regs.rflags;
  if ((fl & RFLAGS_ONE) === 0n || (fl & RFLAGS_ZERO) !== 0n)
    throw new FormatError(`${at}.regs.rflags: 0x${fl.toString(16)} sets reserved bits or clears bit 1`);
}
