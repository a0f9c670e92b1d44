// What a saved vCPU's KVM state must satisfy before KVM is handed it: the
// rules KVM would otherwise enforce with a bare errno, or not at all.
import { FormatError } from '../errors.js';
import type { CpuState } from '../kvm/state/index.js';
import type { MachineConfig } from './config.js';

/** A TSC frequency a host could have: 1 MHz to 100 GHz. */
const TSC_KHZ_RANGE = [1_000, 100_000_000] as const;

export function checkCpu(v: number, st: CpuState, config: MachineConfig): void {
  const at = `cpu[${v}]`;
  if (v >= config.vcpus) throw new FormatError(`${at}: the header describes ${config.vcpus} vCPU(s)`);
  if (st.tsc_khz < TSC_KHZ_RANGE[0] || st.tsc_khz > TSC_KHZ_RANGE[1])
    throw new FormatError(`${at}.tsc_khz: ${st.tsc_khz} kHz is not a TSC frequency`);
}
