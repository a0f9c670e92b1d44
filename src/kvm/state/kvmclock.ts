// The `kvmclock` section: the VM's KVM clock (KVM_GET_CLOCK), the time base
// of kvmclock/pvclock.  `realtime` and `host_tsc` are the host's wall clock
// and TSC at the moment `clock` was read, present when `flags` says so
// (KVM_CLOCK_REALTIME, KVM_CLOCK_HOST_TSC) and 0 otherwise; they let a
// restore advance the guest clock by the real time that passed.
import { defineState, u32, u64 } from '../../vmstate/index.js';
import type { StateOf } from '../../vmstate/index.js';
import { kvm_clock_data } from '../structs.js';
import { bindStruct } from './bind.js';

export const KVM_CLOCK_FLAGS = { TSC_STABLE: 2, REALTIME: 1 << 2, HOST_TSC: 1 << 3 } as const;

export const kvmclockFields = { clock: u64(), flags: u32(), realtime: u64(), host_tsc: u64() };

export const kvmclockState = defineState({ name: 'kvmclock', version: 1, fields: kvmclockFields });
export type KvmclockState = StateOf<typeof kvmclockState>;

export const kvmclockBinding = bindStruct(kvmclockFields, kvm_clock_data);
