// The Xen part of a vCPU's state: the `cpu/xen_vcpu` subsection of `cpu`.
//
// History (mirrors QEMU's Xen vCPU state):
//   v1  the guest's registrations: vcpu_info (current and default GPA),
//       vcpu_time_info, runstate area, and the per-vCPU upcall vector.
//   v2  VIRQ bindings (`xen_virq`) and the timers (`xen_singleshot_timer_ns`,
//       `xen_periodic_timer_period`).  A v1 stream predates them, so it
//       loads with no VIRQ bound and no timer armed.
// fixtures/vmstate/cpu-xen_vcpu-v1.msgpack is a golden v1 payload; it must
// keep loading for as long as minVersion is 1.

import { array, defineState, u16, u64, u8 } from '../../vmstate/index.js';
import type { StateOf } from '../../vmstate/index.js';

import { NR_VIRQS } from '../abi.js';
import { INVALID_GPA } from '../domain.js';
export { NR_VIRQS, INVALID_GPA };

export const xenVcpuState = defineState({
  name: 'cpu/xen_vcpu',
  version: 2,
  minVersion: 1,
  fields: {
    xen_vcpu_info_gpa: u64(),
    xen_vcpu_info_default_gpa: u64(),
    xen_vcpu_time_info_gpa: u64(),
    xen_vcpu_runstate_gpa: u64(),
    /** 0: no per-vCPU vector registered (the callback goes through the evtchn parameter). */
    xen_vcpu_callback_vector: u8(),
    /** Event channel port bound to each VIRQ on this vCPU; 0 = not bound. */
    xen_virq: array(u16(), NR_VIRQS, { since: 2, default: new Array<number>(NR_VIRQS).fill(0) }),
    /** Absolute guest time (ns) the single-shot timer fires at; 0 = not armed. */
    xen_singleshot_timer_ns: u64({ since: 2, default: 0n }),
    /** Period (ns) of the periodic timer; 0 = stopped. */
    xen_periodic_timer_period: u64({ since: 2, default: 0n }),
  },
});

export type XenVcpuState = StateOf<typeof xenVcpuState>;

/** State of a vCPU on which the guest has registered nothing yet. */
export function initialXenVcpuState(): XenVcpuState {
  return {
    xen_vcpu_info_gpa: INVALID_GPA,
    xen_vcpu_info_default_gpa: INVALID_GPA,
    xen_vcpu_time_info_gpa: INVALID_GPA,
    xen_vcpu_runstate_gpa: INVALID_GPA,
    xen_vcpu_callback_vector: 0,
    xen_virq: new Array<number>(NR_VIRQS).fill(0),
    xen_singleshot_timer_ns: 0n,
    xen_periodic_timer_period: 0n,
  };
}
