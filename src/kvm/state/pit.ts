// The `pit` section: the in-kernel i8254 (KVM_GET_PIT2).  Only a VM that ran
// KVM_CREATE_PIT2 has one; XenMachine does not create it today (PVH guests
// have no PIT), so getVmState writes this section only when the VM has a PIT.
import { array, defineState, i64, struct, u16, u32, u8 } from '../../vmstate/index.js';
import type { StateOf } from '../../vmstate/index.js';
import { kvm_pit_state2 } from '../structs.js';
import { bindStruct } from './bind.js';

export const pitChannelFields = {
  count: u32(),
  latched_count: u16(),
  count_latched: u8(),
  status_latched: u8(),
  status: u8(),
  read_state: u8(),
  write_state: u8(),
  write_latch: u8(),
  rw_mode: u8(),
  mode: u8(),
  bcd: u8(),
  gate: u8(),
  /** Host ktime (ns) of the last count load; KVM rebases it to "now" on set. */
  count_load_time: i64(),
};
export const pitFields = { channels: array(struct(pitChannelFields), 3), flags: u32() };

export const pitState = defineState({ name: 'pit', version: 1, fields: pitFields });
export type PitState = StateOf<typeof pitState>;

export const pitBinding = bindStruct(pitFields, kvm_pit_state2);
